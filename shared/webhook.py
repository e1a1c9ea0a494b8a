"""Fivetran webhooks: the HMAC-SHA256 signature check and the payload model.

Fivetran signs the raw request body with the webhook secret and sends the hex digest in
`X-Fivetran-Signature-256`. The check runs on the raw bytes before anything parses them, and
compares in constant time, so neither a parser bug nor timing can be reached by an unsigned caller.
Both sides live here: the ingest service verifies, `infra/local/webhook_client.py` signs.

Payload (Fivetran docs; `test_event` has no sync_id, newer payloads may say connection_id):
    {"event": "sync_end", "created": "2026-01-01T00:00:00.000Z", "connector_type": "connector_sdk",
     "connector_id": "gridsight_local", "connector_name": "...", "sync_id": "<uuid>",
     "destination_group_id": "...", "data": {"status": "SUCCESSFUL"}}
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidEvent, SignatureError, TransientError
from shared.settings import SECRET_PLACEHOLDER

__all__ = ["SIGNATURE_HEADER", "FivetranWebhook", "parse_webhook", "sign_body", "verify_signature"]

SIGNATURE_HEADER = "X-Fivetran-Signature-256"
SUCCESSFUL = "SUCCESSFUL"


def sign_body(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Raise SignatureError unless `signature` is the HMAC-SHA256 hex of `body` (any letter case).

    Before a real secret version exists the secret is Terraform's public placeholder: nothing may
    be accepted with it, and 503 makes Fivetran retry (for 24 h) until the real one is added."""
    if secret == SECRET_PLACEHOLDER:
        raise TransientError("webhook secret not configured yet: add a version to the webhook-secret secret")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    given = signature.strip().lower()
    if not given.isascii():
        raise SignatureError("signature is not a hex digest")
    if not hmac.compare_digest(sign_body(body, secret).encode(), given.encode()):
        raise SignatureError("signature does not match the body")


class FivetranWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: str = Field(min_length=1)
    created: datetime
    connector_type: str | None = None
    connector_id: str | None = None
    connection_id: str | None = None
    connector_name: str | None = None
    sync_id: str | None = None
    group_id: str | None = None
    destination_group_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def connection(self) -> str | None:
        return self.connection_id or self.connector_id

    @property
    def status(self) -> str | None:
        status = self.data.get("status")
        return str(status) if status is not None else None

    def is_successful_sync_end(self) -> bool:
        return self.event == "sync_end" and self.status == SUCCESSFUL and bool(self.sync_id)


def parse_webhook(body: bytes) -> FivetranWebhook:
    try:
        return FivetranWebhook.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidEvent(f"not a Fivetran webhook payload: {exc.errors(include_url=False)}") from exc
