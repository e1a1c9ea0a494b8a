"""Build the body Pub/Sub POSTs to a push endpoint, for tests that drive a service's edge directly."""

from __future__ import annotations

import base64
from typing import Any

from flask.testing import FlaskClient

from shared.events import Event, encode_event
from shared.push import local_push_token
from shared.settings import Settings


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


def push_headers(settings: Settings | None = None) -> dict[str, str]:
    """What the local dispatcher presents on every push: this home's push token."""
    return {"Authorization": f"Bearer {local_push_token(settings or Settings())}"}


def authorized(client: FlaskClient, settings: Settings | None = None) -> FlaskClient:
    """A test client that presents the push token on every request, as the dispatcher does."""
    client.environ_base["HTTP_AUTHORIZATION"] = push_headers(settings)["Authorization"]
    return client
