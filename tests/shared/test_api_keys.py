"""The one API-key check shared by the chat API and the dashboard."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.api_keys import authenticate, key_fingerprint
from shared.errors import SignatureError


@pytest.fixture
def two_keys(settings):
    return settings.model_copy(update={"chat_api_keys": SecretStr("alpha-key, beta-key")})


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer beta-key"}, {"authorization": "bearer beta-key"}, {"X-API-Key": "beta-key"}],
)
def test_any_configured_key_in_either_header_is_accepted(two_keys, headers):
    from werkzeug.datastructures import Headers

    assert authenticate(Headers(headers), two_keys) == key_fingerprint("beta-key")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic YWxwaGEta2V5"}, "missing API key"),
        ({"Authorization": "Bearer gamma-key"}, "invalid API key"),
        ({"X-API-Key": "alpha"}, "invalid API key"),
    ],
)
def test_missing_or_unknown_keys_are_rejected(two_keys, headers, message):
    with pytest.raises(SignatureError, match=message):
        authenticate(headers, two_keys)


def test_the_fingerprint_does_not_reveal_the_key():
    assert "alpha-key" not in key_fingerprint("alpha-key")
    assert len(key_fingerprint("alpha-key")) == 12


# --- behind Cloud Run IAM (chat_iam_protected, set by Terraform) -----------------------------------
@pytest.fixture
def behind_iam(two_keys):
    return two_keys.model_copy(update={"chat_iam_protected": True})


ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFuYWx5c3RAZXhhbXBsZS5jb20ifQ.SIGNATURE_REMOVED_BY_GOOGLE"


def test_behind_iam_the_key_comes_from_x_api_key_next_to_the_callers_id_token(behind_iam):
    headers = {"Authorization": f"Bearer {ID_TOKEN}", "X-API-Key": "alpha-key"}
    assert authenticate(headers, behind_iam) == key_fingerprint("alpha-key")


def test_behind_iam_the_id_token_in_authorization_is_never_taken_for_a_key(behind_iam):
    with pytest.raises(SignatureError, match="send 'X-API-Key"):
        authenticate({"Authorization": f"Bearer {ID_TOKEN}"}, behind_iam)
    # even when the token happens to equal a configured key, it is the IAM credential, not ours
    with pytest.raises(SignatureError, match="missing API key"):
        authenticate({"Authorization": "Bearer alpha-key"}, behind_iam)


def test_with_the_id_token_in_x_serverless_authorization_the_key_may_use_authorization(behind_iam):
    headers = {"X-Serverless-Authorization": f"Bearer {ID_TOKEN}", "Authorization": "Bearer beta-key"}
    assert authenticate(headers, behind_iam) == key_fingerprint("beta-key")


def test_x_api_key_wins_over_authorization_locally_too(two_keys):
    headers = {"Authorization": "Bearer not-a-key", "X-API-Key": "beta-key"}
    assert authenticate(headers, two_keys) == key_fingerprint("beta-key")


def test_terraforms_placeholder_secret_accepts_no_key_and_says_so(settings):
    from shared.errors import TransientError
    from shared.settings import SECRET_PLACEHOLDER

    placeholder = settings.model_copy(update={"chat_api_keys": SecretStr(SECRET_PLACEHOLDER)})
    with pytest.raises(TransientError, match="not configured yet"):
        authenticate({"X-API-Key": SECRET_PLACEHOLDER}, placeholder)
