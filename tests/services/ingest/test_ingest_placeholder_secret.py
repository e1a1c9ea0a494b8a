"""Before the real webhook secret is added, Terraform's placeholder version accepts nothing (#20).

The placeholder is a public constant (it makes Cloud Run's `versions/latest` resolve on the first
apply); a webhook signed with it must not be published, and 503 makes Fivetran retry the delivery
until the real secret is in place, so no sync is lost.
"""

from __future__ import annotations

import json

import functions_framework
import pytest

from infra.local.webhook_client import sync_end_payload
from shared.bus.local import QueueStore
from shared.settings import REPO_ROOT, SECRET_PLACEHOLDER, Settings
from shared.webhook import SIGNATURE_HEADER, sign_body


def test_a_webhook_signed_with_the_placeholder_secret_is_503_and_publishes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIGHT_WEBHOOK_SECRET", SECRET_PLACEHOLDER)
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    body = json.dumps(sync_end_payload(settings, sync_id="sync-1")).encode()
    response = app.test_client().post(
        "/webhooks/fivetran",
        data=body,
        headers={SIGNATURE_HEADER: sign_body(body, SECRET_PLACEHOLDER)},
        content_type="application/json",
    )
    assert response.status_code == 503
    assert "not configured yet" in response.get_json()["error"]
    store = QueueStore.open(settings)
    try:
        assert store.delivery_states() == []
    finally:
        store.close()
