"""A small, real warehouse for the dashboard: sites, devices, hourly load, forecasts and anomalies.

Rows go in through `open_warehouse` + `merge`, the same path the pipeline writes by, so the endpoints
read exactly what they would read in production. The data clock ends at LAST_HOUR; nine days of
history give "today" a "same day last week" to compare with.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import flask
import functions_framework
import pandas as pd
import pytest
from werkzeug.serving import make_server

from services.chat.dashboard import handle_dashboard
from shared.settings import REPO_ROOT, Settings
from tests.services.chat.fleet import write_fleet

LAST_HOUR = datetime(2026, 11, 20, 13, tzinfo=UTC)
HISTORY_HOURS = 9 * 24
API_KEY = "local-dev-chat-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclass(frozen=True)
class DemoFleet:
    sites: pd.DataFrame
    devices: pd.DataFrame
    hourly: pd.DataFrame
    forecasts: pd.DataFrame
    anomalies: pd.DataFrame


def _load_kwh(device_index: int, hour: datetime) -> float:
    """A day-shaped load: low at night, a peak in the evening, scaled per device."""
    daily = 0.6 + 0.5 * math.sin((hour.hour - 9) / 24 * 2 * math.pi)
    weekly = 1.0 + 0.05 * (hour.weekday() % 3)
    return round((1.0 + device_index) * daily * weekly, 4)


def build_demo_fleet() -> DemoFleet:
    sites = pd.DataFrame(
        [
            {
                "site_id": "site-a",
                "name": "Harbour Office",
                "site_type": "commercial",
                "timezone": "Europe/Dublin",
                "latitude": 53.34,
                "longitude": -6.26,
            },
            {
                "site_id": "site-b",
                "name": "Elm Street 12",
                "site_type": "residential",
                "timezone": "Europe/London",
                "latitude": 51.5,
                "longitude": -0.12,
            },
        ]
    )
    devices = pd.DataFrame(
        [
            {
                "device_id": "dev-001",
                "site_id": "site-a",
                "name": "Main incomer",
                "meter_type": "three_phase",
                "nominal_voltage": 400.0,
                "interval_minutes": 15,
                "site_type": "commercial",
                "timezone": "Europe/Dublin",
            },
            {
                "device_id": "dev-002",
                "site_id": "site-a",
                "name": "HVAC plant",
                "meter_type": "three_phase",
                "nominal_voltage": 400.0,
                "interval_minutes": 15,
                "site_type": "commercial",
                "timezone": "Europe/Dublin",
            },
            {
                "device_id": "dev-003",
                "site_id": "site-b",
                "name": "Home meter",
                "meter_type": "single_phase",
                "nominal_voltage": 230.0,
                "interval_minutes": 30,
                "site_type": "residential",
                "timezone": "Europe/London",
            },
        ]
    )
    hours = [LAST_HOUR - timedelta(hours=h) for h in range(HISTORY_HOURS)][::-1]
    hourly = pd.DataFrame(
        [
            {
                "device_id": d.device_id,
                "site_id": d.site_id,
                "hour": hour,
                "energy_kwh": _load_kwh(i, hour),
                "avg_power_w": _load_kwh(i, hour) * 1000.0,
                "max_power_w": _load_kwh(i, hour) * 1300.0,
                "reading_count": 4,
                "coverage": 1.0,
            }
            for i, d in enumerate(devices.itertuples())
            for hour in hours
            # dev-003 went quiet 5 hours before the end of the data
            if not (d.device_id == "dev-003" and hour > LAST_HOUR - timedelta(hours=5))
        ]
    )
    made_at = LAST_HOUR - timedelta(hours=48)
    forecast_hours = [LAST_HOUR - timedelta(hours=47) + timedelta(hours=h) for h in range(72)]
    forecasts = pd.DataFrame(
        [
            {
                "device_id": d.device_id,
                "target_hour": hour,
                "p10": round(0.8 * _load_kwh(i, hour), 4),
                "p50": _load_kwh(i, hour),
                "p90": round(1.25 * _load_kwh(i, hour), 4),
                "model_version": "lgbm-test-1",
                "made_at": made_at,
            }
            for i, d in enumerate(devices.itertuples())
            for hour in forecast_hours
        ]
    )
    anomalies = pd.DataFrame(
        [
            {
                "incident_id": "inc-open-spike",
                "device_id": "dev-001",
                "start_hour": LAST_HOUR - timedelta(hours=6),
                "end_hour": LAST_HOUR - timedelta(hours=3),
                "anomaly_type": "spike",
                "severity": "high",
                "score": 6.2,
                "expected": 1.1,
                "actual": 3.4,
                "explanation": "Energy 3.4 kWh/h against 1.1 expected for a Friday afternoon (6.2 sigma).",
            },
            {
                "incident_id": "inc-old-flat",
                "device_id": "dev-001",
                "start_hour": LAST_HOUR - timedelta(days=4),
                "end_hour": LAST_HOUR - timedelta(days=4) + timedelta(hours=5),
                "anomaly_type": "flatline",
                "severity": "medium",
                "score": 3.0,
                "expected": 0.9,
                "actual": 0.0,
                "explanation": "The register did not move for 5 hours while the site was occupied.",
            },
            {
                "incident_id": "inc-gone-device",
                "device_id": "dev-999",
                "start_hour": LAST_HOUR - timedelta(hours=2),
                "end_hour": LAST_HOUR,
                "anomaly_type": "spike",
                "severity": "high",
                "score": 9.0,
                "expected": 1.0,
                "actual": 9.0,
                "explanation": "A decommissioned meter; must not be listed.",
            },
        ]
    )
    for frame in (hourly, forecasts, anomalies):
        for column in ("hour", "target_hour", "made_at", "start_hour", "end_hour"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
    return DemoFleet(sites, devices, hourly, forecasts, anomalies)


# The chat tests' loader takes any fleet with these five frames; one MERGE sequence for both.
load_demo_fleet: Callable[[Settings, DemoFleet], None] = write_fleet  # type: ignore[assignment]


@pytest.fixture
def demo_fleet(settings: Settings) -> DemoFleet:
    fleet = build_demo_fleet()
    load_demo_fleet(settings, fleet)
    return fleet


@pytest.fixture
def load_fleet() -> Callable[[Settings, DemoFleet], None]:
    """Load the demo fleet into another warehouse (e.g. the BigQuery emulator) the same way."""
    return load_demo_fleet


@pytest.fixture
def dashboard_app(settings: Settings) -> flask.Flask:
    """The dashboard routes in a bare Flask app: what the chat service delegates to, and nothing else."""
    app = flask.Flask("dashboard-test")

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST"])
    def _all(path: str) -> flask.Response:
        response = handle_dashboard(flask.request, settings)
        return response if response is not None else flask.Response("not a dashboard path", status=418)

    return app


@pytest.fixture
def dashboard_client(dashboard_app: flask.Flask) -> flask.testing.FlaskClient:
    return dashboard_app.test_client()


@pytest.fixture
def chat_app(settings: Settings) -> flask.Flask:
    """The real chat service, loaded the way `functions-framework --source ... --target app` loads it.

    Each call loads main.py afresh, so its once-per-process dependencies see this test's settings."""
    return functions_framework.create_app(
        target="app", source=str(REPO_ROOT / "services" / "chat" / "main.py")
    )


@pytest.fixture
def auth_headers() -> dict[str, str]:
    """The default local chat key (settings.chat_api_keys) as a bearer token."""
    return dict(AUTH)


@pytest.fixture
def last_hour() -> datetime:
    return LAST_HOUR


@pytest.fixture(scope="module")
def demo_chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real chat app over the demo fleet on an ephemeral loopback port, in a thread, shared by a
    module's read-only browser tests: the chat service builds its dependencies once per process, and
    paying that once per module instead of once per test keeps the browser suite short."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("dashboard-browser")
        patch.setenv("GRIDSIGHT_HOME", str(home))
        load_demo_fleet(Settings(), build_demo_fleet())
        app = functions_framework.create_app(
            target="app", source=str(REPO_ROOT / "services" / "chat" / "main.py")
        )
        httpd = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            thread.join()
