"""#18 "events must come from us" and "bounded work", through the real service apps on the embedded
stack: a forged or oversized event is refused (400, dead-lettered, nothing written) or clamped
before any work; an event with nothing to do is acknowledged (204) instead of retried (500)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from shared.events import FeaturesRefreshed, SyncCompleted
from shared.runs import recent_runs
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse
from tests.pushing import authorized, push_envelope
from tests.services.ingest.raw_landing import START, land


def _client(service: str, settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / f"services/{service}/main.py"))
    return authorized(app.test_client(), settings)


def _refreshed(
    start: dt.datetime, end: dt.datetime, devices: list[str], rid: str = "r1"
) -> FeaturesRefreshed:
    return FeaturesRefreshed(refresh_id=rid, window_start=start, window_end=end, device_ids=devices)


def _push(client: FlaskClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body)


def _table_count(settings: Settings, table: str) -> int:
    with open_warehouse(settings) as wh:
        return int(wh.query(f"SELECT COUNT(*) AS n FROM energy_analytics.{table}").to_pylist()[0]["n"])


@pytest.fixture
def landed(settings: Settings) -> Settings:
    """Three meters with a day of readings, refreshed into the modelled tables by the ingest service."""
    land(settings, devices=3, hours=24)
    event = SyncCompleted(connection_id=settings.fivetran_connection_id, sync_id="s0", sync_ended_at=START)
    response = _push(_client("ingest", settings), "/pubsub/sync-completed",
                     push_envelope(event, subscription="ingest-refresh"))  # fmt: skip
    assert response.status_code == 204, response.get_data(as_text=True)
    return settings


def test_sync_completed_of_another_connection_is_400_and_refreshes_nothing(settings: Settings) -> None:
    land(settings, devices=2, hours=6)
    forged = SyncCompleted(connection_id="someone_elses", sync_id="s1", sync_ended_at=START)
    response = _push(_client("ingest", settings), "/pubsub/sync-completed",
                     push_envelope(forged, subscription="ingest-refresh"))  # fmt: skip
    assert response.status_code == 400
    assert "someone_elses" in response.get_json()["error"]
    with open_warehouse(settings) as wh:
        assert recent_runs(wh) == []  # refused before any work: no refresh ran


def test_event_from_a_foreign_source_is_400(landed: Settings) -> None:
    body = push_envelope(_refreshed(START, START + dt.timedelta(hours=6), ["dev-000"]),
                         subscription="forecast-features")  # fmt: skip
    body["message"]["attributes"]["source"] = "evil/forger"
    for service in ("forecast", "anomaly"):
        response = _push(_client(service, landed), "/pubsub/features-refreshed", body)
        assert response.status_code == 400, service
        assert "source" in response.get_json()["error"]


@pytest.mark.parametrize("service", ["forecast", "anomaly"])
def test_event_naming_no_device_with_data_is_acknowledged_not_retried(landed: Settings, service: str) -> None:
    event = _refreshed(START, START + dt.timedelta(hours=6), ["ghost-1", "ghost-2"])
    response = _push(_client(service, landed), "/pubsub/features-refreshed", push_envelope(event))
    assert response.status_code == 204, response.get_data(as_text=True)


@pytest.mark.parametrize("service", ["forecast", "anomaly"])
def test_1970_to_2099_window_is_refused_before_any_work(landed: Settings, service: str) -> None:
    """The issue's memory bomb: 3.2 GB and 40 s for 3 devices before; now a 400 in milliseconds."""
    event = _refreshed(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
                       ["dev-000", "dev-001", "dev-002"])  # fmt: skip
    before = {t: _table_count(landed, t) for t in ("forecasts", "anomalies")}
    response = _push(_client(service, landed), "/pubsub/features-refreshed", push_envelope(event))
    assert response.status_code == 400
    assert "future" in response.get_json()["error"]
    assert {t: _table_count(landed, t) for t in ("forecasts", "anomalies")} == before


def test_too_many_devices_is_400(landed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSIGHT_EVENT_MAX_DEVICES", "2")
    event = _refreshed(START, START + dt.timedelta(hours=6), ["dev-000", "dev-001", "dev-002"])
    response = _push(_client("anomaly", Settings()), "/pubsub/features-refreshed", push_envelope(event))
    assert response.status_code == 400
    assert "3 devices" in response.get_json()["error"]


def test_window_longer_than_the_limit_is_clamped_to_its_most_recent_hours(
    landed: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A window 1970 -> (data end) is scored as its last `event_max_window_hours` hours only."""
    monkeypatch.setenv("GRIDSIGHT_EVENT_MAX_WINDOW_HOURS", "12")
    end = START + dt.timedelta(hours=24)
    event = _refreshed(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), end, ["dev-000", "dev-001", "dev-002"])
    response = _push(_client("anomaly", Settings()), "/pubsub/features-refreshed", push_envelope(event))
    assert response.status_code == 204, response.get_data(as_text=True)
    with open_warehouse(landed) as wh:
        [run] = [r for r in recent_runs(wh) if r.handler == "anomaly"]
    assert run.status == "succeeded"
    assert '"hours_scored":36' in (run.detail or "")  # 3 devices x 12 h, not 3 x 491,000 h
