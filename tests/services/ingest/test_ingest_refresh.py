"""POST /pubsub/sync-completed: refresh the models, publish features-refreshed, stay idempotent."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import flask
import functions_framework
import pytest
from flask.testing import FlaskClient
from raw_landing import START, LandRaw

from services.ingest.refresh import refresh_on_sync
from shared.bus import open_publisher
from shared.bus.local import QueueStore
from shared.errors import TransientError
from shared.events import Event, FeaturesRefreshed, SyncCompleted
from shared.push import handle_push
from shared.runs import recent_runs
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import contract_for, open_warehouse
from tests.pushing import authorized, push_envelope, push_headers

SNAPSHOT_TABLES = ("dim_device", "fct_reading", "hourly_consumption", "ml_features")


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    return authorized(app.test_client(), settings)


def _envelope(sync_id: str, message_id: str = "m1", attempt: int = 1) -> dict[str, Any]:
    event = SyncCompleted(connection_id="gridsight_local", sync_id=sync_id, sync_ended_at=START)
    return push_envelope(
        event, message_id=message_id, subscription="ingest-refresh", attempt=attempt, correlation_id=sync_id
    )


def _published(settings: Settings) -> list[FeaturesRefreshed]:
    """features-refreshed messages on the queue (one per message, not per subscription)."""
    store = QueueStore.open(settings)
    try:
        rows = store._conn.execute("SELECT data, attributes FROM messages WHERE topic = 'features-refreshed'")
        out = []
        for data, attrs in rows.fetchall():
            assert json.loads(attrs)["type"] == FeaturesRefreshed.TYPE
            out.append(FeaturesRefreshed.model_validate_json(data))
        subs = {s for s, _, _, _ in store.delivery_states() if s != "ingest-refresh"}
        assert subs <= {"forecast-features", "anomaly-features"}
        return out
    finally:
        store.close()


def _snapshot(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    with open_warehouse(settings) as wh:
        return {
            t: wh.query(
                f"SELECT * FROM energy_analytics.{t} ORDER BY {', '.join(contract_for(t).unique_key)}"
            ).to_pylist()
            for t in SNAPSHOT_TABLES
        }


def test_sync_completed_refreshes_and_publishes_the_window(
    client: FlaskClient, settings: Settings, land_raw: LandRaw
) -> None:
    land_raw(settings, devices=3, hours=24)
    response = client.post("/pubsub/sync-completed", json=_envelope("sync-1"))
    assert response.status_code == 204, response.get_data(as_text=True)
    [event] = _published(settings)
    assert event.device_ids == ["dev-000", "dev-001", "dev-002"]
    assert event.window_start == START
    assert event.window_end >= START + dt.timedelta(hours=24)
    assert event.rows_changed["hourly_consumption"] == 3 * 24
    snapshot = _snapshot(settings)
    assert len(snapshot["hourly_consumption"]) == 3 * 24


def test_delivering_twice_or_three_times_leaves_the_warehouse_as_once(
    client: FlaskClient, settings: Settings, land_raw: LandRaw
) -> None:
    land_raw(settings, devices=2, hours=12)
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1")).status_code == 204
    once = _snapshot(settings)
    for attempt, message_id in ((2, "m1"), (3, "m1"), (1, "m-republished")):
        assert (
            client.post("/pubsub/sync-completed", json=_envelope("sync-1", message_id, attempt)).status_code
            == 204
        )
    assert _snapshot(settings) == once
    assert len(_published(settings)) == 1


def test_next_sync_refreshes_only_the_new_day(
    client: FlaskClient, settings: Settings, land_raw: LandRaw
) -> None:
    land_raw(settings, devices=2, hours=24)
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1")).status_code == 204
    next_day = START + dt.timedelta(hours=24)
    land_raw(
        settings,
        devices=2,
        start=next_day,
        hours=24,
        synced_at=next_day + dt.timedelta(hours=25),
        dimensions=False,
    )
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-2", "m2")).status_code == 204
    first, second = _published(settings)
    assert first.refresh_id != second.refresh_id
    # the new day, plus what it propagates: a reading may close an interval reaching 24 h back
    assert second.window_start >= next_day - dt.timedelta(hours=24)
    assert second.rows_changed["hourly_consumption"] >= 2 * 24
    assert len(_snapshot(settings)["hourly_consumption"]) == 2 * 48


def test_sync_without_new_rows_publishes_nothing(
    client: FlaskClient, settings: Settings, land_raw: LandRaw
) -> None:
    land_raw(settings, devices=1, hours=6)
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1")).status_code == 204
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-2", "m2")).status_code == 204
    assert len(_published(settings)) == 1
    with open_warehouse(settings) as wh:
        ingest_runs = [r for r in recent_runs(wh) if r.handler == "ingest"]
    assert all(r.status == "succeeded" for r in ingest_runs)
    assert any(r.detail and "no rows changed" in r.detail for r in ingest_runs)


class _BusDownOnce:
    """The bus failing once, as when the dispatcher's disk is full or Pub/Sub is unavailable."""

    def __init__(self, settings: Settings, *, after: int = 0) -> None:
        self.inner = open_publisher(settings)
        self.failures = 1
        self.before_failing = after  # publishes that get through before the one failure

    def publish(self, event: Event, *, correlation_id: str | None = None) -> str:
        if self.before_failing:
            self.before_failing -= 1
        elif self.failures:
            self.failures -= 1
            raise TransientError("bus unavailable")
        return self.inner.publish(event, correlation_id=correlation_id)

    def close(self) -> None:
        self.inner.close()


def _deliverer(settings: Settings, publisher: _BusDownOnce) -> Any:
    app = flask.Flask("test")

    def deliver(attempt: int) -> int:
        with app.test_request_context(
            "/pubsub/sync-completed",
            method="POST",
            json=_envelope("sync-1", "m1", attempt),
            headers=push_headers(settings),
        ):
            response = handle_push(
                flask.request,
                expected=SyncCompleted,
                handler="ingest",
                work=refresh_on_sync,
                settings=settings,
                publisher=publisher,
            )
            return response.status_code

    return deliver


def test_crash_between_refresh_and_publish_is_recovered_by_redelivery(
    settings: Settings, land_raw: LandRaw
) -> None:
    land_raw(settings, devices=2, hours=12)
    publisher = _BusDownOnce(settings)
    deliver = _deliverer(settings, publisher)
    assert deliver(1) == 503
    assert _published(settings) == []  # refreshed (watermark advanced) but not announced yet
    refreshed = _snapshot(settings)
    assert deliver(2) == 204
    [event] = _published(settings)
    assert event.device_ids == ["dev-000", "dev-001"]  # the recorded refresh, not an empty re-run
    assert _snapshot(settings) == refreshed
    with open_warehouse(settings) as wh:
        details = [
            r.detail or "" for r in recent_runs(wh) if r.handler == "ingest" and r.status == "succeeded"
        ]
    assert '"reused_recorded_refresh":true' in details[0]
    publisher.close()


def test_a_large_refresh_is_announced_in_shards_that_cover_every_device_once(
    settings: Settings, land_raw: LandRaw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 devices, shards of 2: ranges [0, 1], [2, 3], [4], each its own refresh_id, same window."""
    monkeypatch.setenv("GRIDSIGHT_EVENT_SHARD_DEVICES", "2")
    land_raw(settings, devices=5, hours=6)
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    client = authorized(app.test_client(), Settings())
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1")).status_code == 204
    events = sorted(_published(settings), key=lambda e: e.refresh_id)
    assert [e.device_ids for e in events] == [["dev-000", "dev-001"], ["dev-002", "dev-003"], ["dev-004"]]
    base = events[0].refresh_id.removesuffix("-1of3")
    assert [e.refresh_id for e in events] == [f"{base}-1of3", f"{base}-2of3", f"{base}-3of3"]
    assert len({(e.window_start, e.window_end) for e in events}) == 1
    assert {e.rows_changed["hourly_consumption"] for e in events} == {5 * 6}  # the refresh's, on each


def test_a_crash_between_shards_republishes_the_same_shards(
    settings: Settings, land_raw: LandRaw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 1 got out, shard 2 hit a bus failure: the redelivery announces all three again under the
    same refresh_ids, so downstream (deduping on refresh_id) handles each shard once."""
    monkeypatch.setenv("GRIDSIGHT_EVENT_SHARD_DEVICES", "2")
    settings = Settings()
    land_raw(settings, devices=5, hours=6)
    publisher = _BusDownOnce(settings, after=1)
    deliver = _deliverer(settings, publisher)
    assert deliver(1) == 503
    [first] = _published(settings)
    assert deliver(2) == 204
    events = _published(settings)
    assert len(events) == 4
    by_id = {e.refresh_id: e.device_ids for e in events}
    assert len(by_id) == 3
    assert first.refresh_id in by_id
    assert sorted(d for ids in by_id.values() for d in ids) == [f"dev-00{i}" for i in range(5)]
    publisher.close()
