"""API-key check for the chat API and the dashboard that the chat service serves: one check, one auth.

Keys come from `settings.chat_api_keys` (comma-separated; Secret Manager in the cloud, env locally).
A caller sends one as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Comparison is constant
time, and what callers get back is a fingerprint, never the key, so logs and rate-limit buckets can
name a caller without leaking its secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import SignatureError
from shared.settings import Settings

__all__ = ["authenticate", "key_fingerprint"]


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def authenticate(headers: Mapping[str, str], settings: Settings) -> str:
    """Return the fingerprint of the presented key; SignatureError (401) if it is missing or unknown."""
    presented = _presented_key(headers)
    if not presented:
        raise SignatureError("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    allowed = [k.strip() for k in settings.chat_api_keys.get_secret_value().split(",") if k.strip()]
    # compare against every key so the time taken does not tell which one (or whether any) matched
    matched = False
    for key in allowed:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    if not matched:
        raise SignatureError("invalid API key")
    return key_fingerprint(presented)


def _presented_key(headers: Mapping[str, str]) -> str:
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("X-API-Key", "").strip()
