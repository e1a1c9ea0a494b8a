"""Send the `sync_end` webhook the way Fivetran does after a sync: JSON body, HMAC-SHA256 signature.

`gridsight sync` calls this after `fivetran debug` finishes, so the local stack is driven by the same
signed request the cloud ingest service receives. Fivetran retries a webhook whose delivery fails;
so do we (briefly), and the ingest service dedupes on the sync id.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.settings import Settings
from shared.webhook import SIGNATURE_HEADER, sign_body

__all__ = ["WebhookDeliveryError", "send_signed", "send_sync_end", "sync_end_payload", "webhook_url"]


class WebhookDeliveryError(RuntimeError):
    """The ingest service did not accept the webhook (not running, or it answered an error)."""


def webhook_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.ingest_port}/webhooks/fivetran"


def sync_end_payload(
    settings: Settings, *, sync_id: str | None = None, status: str = "SUCCESSFUL", event: str = "sync_end"
) -> dict[str, Any]:
    """The payload Fivetran sends for a connector SDK connection (see shared/webhook.py)."""
    payload: dict[str, Any] = {
        "event": event,
        "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "connector_type": "connector_sdk",
        "connector_id": settings.fivetran_connection_id,
        "connector_name": "gridsight",
        "sync_id": sync_id or str(uuid.uuid4()),
        "destination_group_id": "local",
        "data": {"status": status},
    }
    if event == "test_event":
        payload.pop("sync_id")
    return payload


def send_signed(
    url: str, payload: dict[str, Any], secret: str, *, timeout_s: float = 30.0
) -> requests.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(body, secret)}
    return requests.post(url, data=body, headers=headers, timeout=timeout_s)


@retry(
    retry=retry_if_exception_type(requests.ConnectionError),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.5, max=5),
    reraise=True,
)
def _post(url: str, payload: dict[str, Any], secret: str) -> requests.Response:
    return send_signed(url, payload, secret)


def send_sync_end(
    settings: Settings, *, sync_id: str | None = None, status: str = "SUCCESSFUL"
) -> dict[str, Any]:
    """Sign and send one sync_end; returns the ingest service's answer (published/duplicate/ignored)."""
    payload = sync_end_payload(settings, sync_id=sync_id, status=status)
    url = webhook_url(settings)
    try:
        response = _post(url, payload, settings.webhook_secret.get_secret_value())
    except requests.ConnectionError as exc:
        raise WebhookDeliveryError(
            f"ingest service not reachable at {url}: start it with `gridsight up`"
        ) from exc
    if response.status_code != 200:
        raise WebhookDeliveryError(f"ingest answered {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer
