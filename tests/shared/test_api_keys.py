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
