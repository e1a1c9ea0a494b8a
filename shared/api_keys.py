"""API-key check for the chat API and the dashboard that the chat service serves: one check, one auth.

Keys come from `settings.chat_api_keys` (comma-separated; Secret Manager in the cloud, env locally).
A caller sends one as `X-API-Key: <key>` or `Authorization: Bearer <key>`. Behind Cloud Run IAM
(`chat_iam_protected`, set by Terraform) `Authorization` carries the caller's Google ID token for
IAM, so the key is read from `X-API-Key` only, unless the caller sent the ID token in
`X-Serverless-Authorization` (which Cloud Run checks instead of Authorization when present), which
leaves `Authorization: Bearer <key>` free. Comparison is constant time, and what callers get back is
a fingerprint, never the key, so logs and rate-limit buckets can name a caller without leaking it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import SignatureError, TransientError
from shared.settings import SECRET_PLACEHOLDER, Settings

__all__ = ["authenticate", "key_fingerprint"]


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def authenticate(headers: Mapping[str, str], settings: Settings) -> str:
    """Return the fingerprint of the presented key; SignatureError (401) if it is missing or unknown."""
    allowed = [k.strip() for k in settings.chat_api_keys.get_secret_value().split(",") if k.strip()]
    if allowed == [SECRET_PLACEHOLDER]:
        raise TransientError("chat API keys not configured yet: add a version to the chat-api-keys secret")
    presented = _presented_key(headers, iam_protected=settings.chat_iam_protected)
    if not presented:
        if settings.chat_iam_protected:
            raise SignatureError(
                "missing API key: send 'X-API-Key: <key>' (Authorization carries your Google ID token)"
            )
        raise SignatureError("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    # compare against every key so the time taken does not tell which one (or whether any) matched
    matched = False
    for key in allowed:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    if not matched:
        raise SignatureError("invalid API key")
    return key_fingerprint(presented)


def _presented_key(headers: Mapping[str, str], *, iam_protected: bool) -> str:
    explicit = headers.get("X-API-Key", "").strip()
    if explicit:
        return explicit
    if iam_protected and not headers.get("X-Serverless-Authorization"):
        return ""  # Authorization is the ID token Cloud Run checked, never our key
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return ""
