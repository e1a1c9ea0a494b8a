"""The functions-framework app end to end on the embedded stack: push in, incidents in the
warehouse, AnomaliesDetected on the local bus, redelivery a no-op, bad pushes a 400."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import functions_framework
import pandas as pd
import pytest
from anomaly_fleet import (
    FleetFactory,
    fault_hour,
    fleet_with_shift,
    load_hourly,
    published,
    read_anomalies,
    refresh_event,
)
from flask.testing import FlaskClient
from typer.testing import CliRunner

from infra.local.cli import build_app
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse
from tests.pushing import authorized, push_envelope


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    return authorized(app.test_client(), settings)


def _push(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/pubsub/features-refreshed", json=body)


def _envelope(message_id: str = "m1") -> dict[str, Any]:
    event = refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0))
    return push_envelope(event, message_id=message_id, subscription="anomaly-features", correlation_id="c1")


def test_push_scores_window_and_publishes_new_incident(
    client: FlaskClient, settings: Settings, fleet: FleetFactory
) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    response = _push(client, _envelope())
    assert response.status_code == 204, response.get_data(as_text=True)
    rows = read_anomalies(settings)
    (sent,) = published(settings)
    assert list(rows["incident_id"]) == [sent.incident_id]
    assert sent.anomaly_type == "level_shift"
    assert sent.device_id == "dev-2"


def test_redelivered_push_changes_nothing(
    client: FlaskClient, settings: Settings, fleet: FleetFactory
) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    assert _push(client, _envelope("m1")).status_code == 204
    before = read_anomalies(settings)
    assert _push(client, _envelope("m2")).status_code == 204  # same refresh, new delivery
    pd.testing.assert_frame_equal(read_anomalies(settings), before)
    assert len(published(settings)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"nope": 1},
        {"message": {"data": "!!", "attributes": {"type": "gridsight.features.refreshed.v1"},
                     "messageId": "x"}, "subscription": "s"},
        {"message": {"data": "", "attributes": {"type": "gridsight.sync.completed.v1"}, "messageId": "x"},
         "subscription": "s"},
    ],
)  # fmt: skip
def test_malformed_push_is_400_with_a_reason(
    client: FlaskClient, settings: Settings, body: dict[str, Any]
) -> None:
    response = _push(client, body)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert published(settings) == []


def test_health_and_unknown_routes(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"service": "anomaly", "ok": True}
    assert client.get("/pubsub/features-refreshed").status_code == 405
    assert client.post("/nowhere").status_code == 404


def test_plot_from_the_warehouse_shades_stored_incidents(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, tmp_path: Path
) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    assert _push(client, _envelope()).status_code == 204
    out = tmp_path / "dev2.png"
    args = [
        "anomaly",
        "plot",
        "--device",
        "dev-2",
        "--start",
        "2024-02-08",
        "--end",
        "2024-02-20",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "1 incidents" in result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    missing = CliRunner().invoke(build_app(), ["anomaly", "plot", "--device", "nope", "--out", str(out)])
    assert missing.exit_code == 1  # missing data is a failure (exit 1), not a usage error
    assert "no hourly consumption for device 'nope'" in missing.output


def test_run_is_recorded_with_the_incidents_it_wrote(
    client: FlaskClient, settings: Settings, fleet: FleetFactory
) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    assert _push(client, _envelope()).status_code == 204
    with open_warehouse(settings) as wh:
        runs = wh.query_df(
            "SELECT handler, status, rows_written, detail FROM energy_analytics.pipeline_runs"
            " WHERE handler = 'anomaly'"
        )
    assert list(runs["status"]) == ["succeeded"]
    assert list(runs["rows_written"]) == [1]
    assert '"new_incidents":["' in runs["detail"].iloc[0].replace(" ", "")
