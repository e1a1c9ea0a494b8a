"""The forecast service end to end on one machine: a push of features-refreshed through the
functions-framework app, the warehouse (DuckDB), and the real model server over loopback HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pandas as pd
import pytest
from werkzeug.serving import make_server

from services.forecast.model_server import ModelStore, ServerConfig, create_app
from shared.events import FeaturesRefreshed
from shared.runs import find_run
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse
from tests.pushing import authorized, push_envelope
from tests.services.forecast.conftest import ORIGIN


@pytest.fixture
def model_server(settings: Settings, model_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The model server app on a free loopback port, in a thread; the service finds it via settings."""
    server = make_server("127.0.0.1", 0, create_app(ModelStore(model_root), ServerConfig()), threaded=True)
    monkeypatch.setenv("GRIDSIGHT_MODEL_SERVER_PORT", str(server.server_port))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join()


def _service():
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/forecast/main.py"))
    return authorized(app.test_client())


def _envelope(event: FeaturesRefreshed, message_id: str, attempt: int = 1) -> dict[str, Any]:
    return push_envelope(event, message_id=message_id, attempt=attempt)


def _event(devices: list[str], refresh_id: str = "refresh-1", origin: datetime = ORIGIN) -> FeaturesRefreshed:
    return FeaturesRefreshed(
        refresh_id=refresh_id, window_start=origin - timedelta(hours=6), window_end=origin, device_ids=devices
    )


def _forecasts(settings: Settings) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        return wh.query_df("SELECT * FROM energy_analytics.forecasts ORDER BY device_id, target_hour")


def test_features_refreshed_writes_24_forecasts_per_installed_device_and_publishes(
    settings: Settings, fleet: list[str], model_server: int
) -> None:
    response = _service().post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m1"))
    assert response.status_code == 204, response.get_data(as_text=True)
    rows = _forecasts(settings)
    installed = [d for d in fleet if d != "decommissioned"]
    assert sorted(rows["device_id"].unique()) == sorted(installed)
    assert len(rows) == 24 * len(installed)
    assert pd.Timestamp(rows["target_hour"].min()) == pd.Timestamp(ORIGIN)
    assert (rows["p10"] <= rows["p50"]).all()
    assert (rows["p50"] <= rows["p90"]).all()
    with open_warehouse(settings) as wh:
        run = find_run(wh, "forecast", "refresh-1")
    assert run is not None
    result = json.loads(run.detail or "{}")
    assert result["devices_forecast"] == len(installed)
    assert result["devices_skipped"] == 1
    assert result["message_id"]  # ForecastsWritten was published


def test_redelivered_features_refreshed_leaves_forecasts_unchanged(
    settings: Settings, fleet: list[str], model_server: int
) -> None:
    from services.forecast.forecast import forecast_window
    from shared.bus import open_publisher
    from shared.push import PushContext

    client = _service()
    assert client.post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m1")).status_code == 204
    first = _forecasts(settings)
    assert (
        client.post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m2", 2)).status_code == 204
    )
    pd.testing.assert_frame_equal(first, _forecasts(settings))
    # and the work itself is idempotent, for a crash between MERGE and recording the run
    publisher = open_publisher(Settings())
    try:
        ctx = PushContext(Settings(), publisher, "m3", "s", 3, "c")
        forecast_window(_event(fleet), ctx)
    finally:
        publisher.close()
    pd.testing.assert_frame_equal(first, _forecasts(settings))


def test_an_older_event_delivered_late_does_not_overwrite_newer_forecasts(
    settings: Settings, fleet: list[str], model_server: int
) -> None:
    client = _service()
    assert client.post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m1")).status_code == 204
    newer = _forecasts(settings)
    older = _event(fleet, refresh_id="refresh-0", origin=ORIGIN - timedelta(hours=6))
    assert client.post("/pubsub/features-refreshed", json=_envelope(older, "m0")).status_code == 204
    after = _forecasts(settings)
    kept = after[pd.to_datetime(after["target_hour"], utc=True) >= pd.Timestamp(ORIGIN)].reset_index(
        drop=True
    )
    pd.testing.assert_frame_equal(newer, kept)
    assert len(after) > len(newer)  # the older event still fills the 6 hours before ORIGIN


def test_endpoint_down_is_503_then_the_redelivery_succeeds(
    settings: Settings, fleet: list[str], model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = make_server("127.0.0.1", 0, create_app(ModelStore(model_root), ServerConfig()))
    port = probe.server_port
    probe.server_close()  # nothing listens on `port` now
    monkeypatch.setenv("GRIDSIGHT_MODEL_SERVER_PORT", str(port))
    monkeypatch.setenv("GRIDSIGHT_FORECAST_ENDPOINT_ATTEMPTS", "2")
    client = _service()
    down = client.post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m1"))
    assert down.status_code == 503
    assert "unreachable" in down.get_json()["error"]
    assert _forecasts(settings).empty

    server = make_server("127.0.0.1", port, create_app(ModelStore(model_root), ServerConfig()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        retry = client.post("/pubsub/features-refreshed", json=_envelope(_event(fleet), "m1", attempt=2))
        assert retry.status_code == 204
        assert len(_forecasts(settings)) == 24 * (len(fleet) - 1)
    finally:
        server.shutdown()
        thread.join()


def test_instances_carry_each_devices_site_time_zone_from_dim_device(
    settings: Settings, fleet: list[str]
) -> None:
    """The service sends the site's zone, so the model server uses the site's local calendar."""
    from services.forecast.features import HISTORY_HOURS
    from services.forecast.forecast import build_instances, load_history

    berlin = fleet[0]
    with open_warehouse(settings) as wh:
        wh.merge(
            "dim_device",
            pd.DataFrame(
                {"device_id": [berlin], "site_id": "s1", "name": berlin, "timezone": "Europe/Berlin"}
            ),
            key=["device_id"],
        )
        history = load_history(wh, fleet, ORIGIN)
    instances = {i.device_id: i for i in build_instances(history, fleet, ORIGIN)}
    assert instances[berlin].timezone == "Europe/Berlin"
    assert instances[berlin].calendar().country == "DE"
    assert {i.timezone for name, i in instances.items() if name != berlin} == {None}
    assert all(len(i.kwh) == HISTORY_HOURS for i in instances.values())
