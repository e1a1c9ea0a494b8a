"""Property-based, end to end on small fleets: a hostile vendor feed through the connector's real
validation, landed as the runner lands it, refreshed, and the refresh's event pushed to the anomaly
service. Invariants: the refresh window and every modelled hour lie inside the accepted readings'
span (no 1970 or 2099 hour); the modelled tables are what the accepted readings alone give
(quarantined records change nothing); the push is acknowledged within the memory bound.
A few cases in CI (each lands and refreshes twice); bench/bench_fuzz.py runs more."""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings

from infra.local.sync import CONNECTOR_SOURCE
from services.anomaly.scoring import score_window
from shared.events import FeaturesRefreshed
from shared.push import handle_push
from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import contract_for, open_warehouse
from shared.warehouse.rawfixture import RawStore
from tests.connector.fakes import FeedClient, Recorder
from tests.connector.vendor_strategies import CLOCK, DEVICES, feeds
from tests.pushing import push_envelope, push_headers

EXAMPLES = int(os.environ.get("GRIDSIGHT_PIPELINE_FUZZ_EXAMPLES", "2"))
MEMORY_BOUND_MB = 256  # Python/numpy allocations of one anomaly push on this two-device fleet
DEVICE_BODIES = [
    {"device_id": "dev-1", "site_id": "s1", "name": "one", "meter_type": "single_phase",
     "nominal_voltage": 230.0, "interval_minutes": 15, "installed_at": "2026-01-01T00:00:00Z"},
    {"device_id": "dev-3", "site_id": "s1", "name": "three", "meter_type": "three_phase",
     "nominal_voltage": 400.0, "interval_minutes": 15, "installed_at": "2025-06-01T00:00:00Z"},
]  # fmt: skip
READING_SCHEMA = pa.schema([("device_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
                            ("power_w", pa.float64()), ("energy_wh", pa.float64()), ("voltage", pa.float64()),
                            ("temp_c", pa.float64()), ("occupancy", pa.bool_()),
                            ("received_at", pa.timestamp("us", tz="UTC"))])  # fmt: skip
MODELLED = ("fct_reading", "hourly_consumption")


@pytest.fixture(scope="module")
def connector() -> Iterator[ModuleType]:
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector as module

        module.log.LOG_LEVEL = module.log.Level.SEVERE
        yield module
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)


def _accepted(connector: ModuleType, feed: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(connector, "op", recorder)
    known = {d["device_id"]: connector._profile(d) for d in DEVICE_BODIES}
    config = {"start_date": CLOCK - timedelta(days=60), "lookback": timedelta(hours=3), "page_size": 25,
              "checkpoint_rows": 1000, "clock": CLOCK}  # fmt: skip
    connector.sync_readings(FeedClient(feed), config, {"cursors": {}}, known)
    return recorder


def _land_and_refresh(home: Path, readings: list[dict], invalid: list[dict]) -> Settings:
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    sites = pa.table({"site_id": ["s1"], "name": ["Site"], "site_type": ["residential"],
                      "timezone": ["Europe/Amsterdam"], "latitude": [52.0], "longitude": [4.9]})  # fmt: skip
    utc = pa.timestamp("us", tz="UTC")
    devices = pa.Table.from_pylist(
        [{**d, "installed_at": CLOCK - timedelta(days=400), "status": "active", "decommissioned_at": None}
         for d in DEVICE_BODIES],
        schema=pa.schema([("device_id", pa.string()), ("site_id", pa.string()), ("name", pa.string()),
                          ("meter_type", pa.string()), ("nominal_voltage", pa.float64()),
                          ("interval_minutes", pa.int32()), ("installed_at", utc), ("status", pa.string()),
                          ("decommissioned_at", utc)]),
    )  # fmt: skip
    latest: dict[tuple, dict] = {}
    for row in readings:  # the runner upserts on the primary key: the last write wins
        latest[(row["device_id"], row["timestamp"])] = row
    with RawStore(settings.raw_duckdb_path) as raw:
        raw.upsert("site", sites, CLOCK)
        raw.upsert("device", devices, CLOCK)
        raw.upsert("reading", pa.Table.from_pylist(list(latest.values()), schema=READING_SCHEMA), CLOCK)
        if invalid:  # as the runner writes it; nothing modelled may read it into energy figures
            raw._conn.execute("CREATE TABLE tester.invalid_reading (record_id VARCHAR, reason VARCHAR)")
            raw._conn.executemany("INSERT INTO tester.invalid_reading VALUES (?, ?)",
                                  [(r["record_id"], r["reason"]) for r in invalid])  # fmt: skip
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def _snapshot(settings: Settings) -> dict[str, list[dict]]:
    with open_warehouse(settings) as wh:
        return {
            t: wh.query(
                f"SELECT * FROM energy_analytics.{t} ORDER BY {', '.join(contract_for(t).unique_key)}"
            ).to_pylist()
            for t in MODELLED
        }


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(feed=feeds)
def test_hostile_feed_through_refresh_and_anomaly_push_stays_bounded(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
    feed: dict,
) -> None:  # fmt: skip
    recorder = _accepted(connector, feed, monkeypatch)
    readings, invalid = recorder.table("reading"), recorder.table("invalid_reading")
    with_quarantine = _land_and_refresh(tmp_path_factory.mktemp("a") / "home", readings, invalid)
    accepted_only = _land_and_refresh(tmp_path_factory.mktemp("b") / "home", readings, [])
    monkeypatch.setenv("GRIDSIGHT_HOME", str(with_quarantine.home))
    result = refresh_features(with_quarantine, full=True)
    refresh_features(accepted_only, full=True)
    assert _snapshot(with_quarantine) == _snapshot(accepted_only)  # quarantined records change nothing
    if not readings or result.window_start is None or result.window_end is None:
        event("nothing accepted: no refresh window")
        return
    event("refreshed and pushed")
    first = min(r["timestamp"] for r in readings)
    last = max(r["timestamp"] for r in readings)
    # a reading closes the interval before it, so its energy may fall in the hours just before it
    assert first - timedelta(days=2) <= result.window_start
    assert result.window_end <= last + timedelta(hours=2)
    refreshed = FeaturesRefreshed(refresh_id=result.refresh_id, window_start=result.window_start,
                              window_end=result.window_end, device_ids=result.device_ids)  # fmt: skip
    app = flask.Flask("pipeline-fuzz")
    tracemalloc.start()
    try:
        with app.test_request_context("/pubsub/features-refreshed", method="POST",
                                      json=push_envelope(refreshed, subscription="anomaly-features"),
                                      headers=push_headers(with_quarantine)):  # fmt: skip
            response = handle_push(flask.request, expected=FeaturesRefreshed, handler="anomaly",
                                   work=score_window, settings=with_quarantine)  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 204, response.get_data(as_text=True)
    assert peak < MEMORY_BOUND_MB * 2**20
    assert set(DEVICES) >= set(result.device_ids)
