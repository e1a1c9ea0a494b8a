"""POST /webhooks/fivetran on the real functions-framework app: signatures, payloads, dedupe."""

from __future__ import annotations

import json
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from infra.local.webhook_client import sync_end_payload
from shared.bus.local import QueueStore
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse, snapshot_path
from shared.webhook import SIGNATURE_HEADER, sign_body


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    return app.test_client()


def _queued(settings: Settings) -> list[tuple[str, str, str, int]]:
    store = QueueStore.open(settings)
    try:
        return store.delivery_states()
    finally:
        store.close()


def _post(client: FlaskClient, body: bytes, signature: str | None) -> Any:
    headers = {SIGNATURE_HEADER: signature} if signature is not None else {}
    return client.post("/webhooks/fivetran", data=body, headers=headers, content_type="application/json")


def _signed(settings: Settings, payload: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    return body, sign_body(body, settings.webhook_secret.get_secret_value())


def test_signed_sync_end_publishes_one_sync_completed(client: FlaskClient, settings: Settings) -> None:
    body, signature = _signed(settings, sync_end_payload(settings, sync_id="sync-1"))
    response = _post(client, body, signature)
    assert response.status_code == 200
    assert response.get_json()["status"] == "published"
    assert [(sub, state) for sub, _, state, _ in _queued(settings)] == [("ingest-refresh", "pending")]


def test_replayed_webhook_is_acknowledged_but_published_once(client: FlaskClient, settings: Settings) -> None:
    body, signature = _signed(settings, sync_end_payload(settings, sync_id="sync-1"))
    answers = [_post(client, body, signature).get_json()["status"] for _ in range(3)]
    # Fivetran's retry of the same sync carries a new body (new `created`) but the same sync_id
    body2, signature2 = _signed(settings, sync_end_payload(settings, sync_id="sync-1"))
    answers.append(_post(client, body2, signature2).get_json()["status"])
    assert answers == ["published", "duplicate", "duplicate", "duplicate"]
    assert len(_queued(settings)) == 1


def test_signature_hex_is_compared_case_insensitively(client: FlaskClient, settings: Settings) -> None:
    body, signature = _signed(settings, sync_end_payload(settings))
    assert _post(client, body, signature.upper()).status_code == 200


@pytest.mark.parametrize("case", ["missing", "empty", "wrong-secret", "other-body", "garbage", "non-ascii"])
def test_bad_signature_is_401_and_nothing_is_published(
    client: FlaskClient, settings: Settings, case: str
) -> None:
    body, good = _signed(settings, sync_end_payload(settings, sync_id="sync-1"))
    _, other_sig = _signed(settings, sync_end_payload(settings, sync_id="sync-2"))
    signature = {
        "missing": None,
        "empty": "",
        "wrong-secret": sign_body(body, "not-the-secret"),
        "other-body": other_sig,
        "garbage": "zz" + good[2:],
        "non-ascii": "é" * 64,
    }[case]
    response = _post(client, body, signature)
    assert response.status_code == 401
    assert "signature" in response.get_json()["error"].lower()
    assert _queued(settings) == []


def test_malformed_json_with_valid_signature_is_400(client: FlaskClient, settings: Settings) -> None:
    for body in (b"{not json", b'{"event": "sync_end"}', b"[]"):
        response = _post(client, body, sign_body(body, settings.webhook_secret.get_secret_value()))
        assert response.status_code == 400, body
        assert "not a Fivetran webhook payload" in response.get_json()["error"]
    assert _queued(settings) == []


@pytest.mark.parametrize(
    "payload_change",
    [
        {"event": "test_event"},
        {"event": "sync_start"},
        {"data": {"status": "FAILURE_WITH_TASK", "reason": "source unreachable"}},
        {"connector_id": "someone_elses_connection"},
    ],
)
def test_other_events_are_acknowledged_and_ignored(
    client: FlaskClient, settings: Settings, payload_change: dict[str, Any]
) -> None:
    payload = {**sync_end_payload(settings), **payload_change}
    if payload["event"] == "test_event":
        payload.pop("sync_id")  # Fivetran's test payload has none
    body, signature = _signed(settings, payload)
    response = _post(client, body, signature)
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert _queued(settings) == []


def test_unknown_route_and_method_are_4xx(client: FlaskClient) -> None:
    assert client.post("/nope").status_code == 404
    assert client.get("/webhooks/fivetran").status_code == 405
    assert client.get("/healthz").status_code == 200


def test_a_webhook_copies_no_snapshot_and_a_reader_still_sees_its_run(
    client: FlaskClient, settings: Settings
) -> None:
    """Its dedupe check and run record are no writes a reader acts on, and every snapshot publish
    reads the whole warehouse file (docs/scaling.md, finding 22): the snapshot file stays the one
    published before, and the next reader, finding it stale, catches up."""
    with open_warehouse(settings) as wh:  # a publishing unit of work: the snapshot exists
        wh.query("SELECT 1 AS one")
    before = snapshot_path(settings).stat()
    body, signature = _signed(settings, sync_end_payload(settings, sync_id="sync-1"))
    assert _post(client, body, signature).get_json()["status"] == "published"
    after = snapshot_path(settings).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    with open_warehouse(settings, read_only=True) as reader:
        runs = reader.query_df(
            "SELECT handler, status FROM energy_analytics.pipeline_runs WHERE handler = 'webhook'"
        )
    assert runs.to_dict("records") == [{"handler": "webhook", "status": "succeeded"}]
