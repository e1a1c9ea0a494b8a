"""Build the body Pub/Sub POSTs to a push endpoint, for tests that drive a service's edge directly."""

from __future__ import annotations

import base64
from typing import Any

from shared.events import Event, encode_event


def push_envelope(
    event: Event,
    *,
    message_id: str = "m1",
    subscription: str = "forecast-features",
    attempt: int = 1,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    data, attributes = encode_event(event, correlation_id=correlation_id)
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id,
        },
        "subscription": f"projects/p/subscriptions/{subscription}",
        "deliveryAttempt": attempt,
    }
