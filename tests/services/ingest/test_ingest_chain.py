"""The chain on the local runtime: simulator → `fivetran debug` sync → signed webhook → ingest
service → refresh → features-refreshed pushed to every subscriber. Real simulator, connector,
ingest and dispatcher processes; loopback endpoints stand in for forecast and anomaly."""

from __future__ import annotations

import base64
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask
import pytest
from werkzeug.serving import make_server

from infra.local.ports import free_port
from infra.local.supervisor import ProcessSpec, Supervisor
from infra.local.sync import run_sync
from infra.local.webhook_client import send_sync_end
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed
from shared.runs import recent_runs
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse

pytestmark = pytest.mark.slow


@contextmanager
def _recorder(received: list[dict[str, Any]]) -> Iterator[int]:
    app = flask.Flask("subscriber")

    @app.post("/pubsub/features-refreshed")
    def push() -> flask.Response:
        received.append(flask.request.get_json())
        return flask.Response(status=204)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _wait(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _settled(settings: Settings) -> bool:
    store = QueueStore.open(settings)
    try:
        return store.unsettled() == 0 and len(store.delivery_states()) >= 3
    finally:
        store.close()


def test_sync_to_features_refreshed_at_every_subscriber(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    forecast_got: list[dict[str, Any]] = []
    anomaly_got: list[dict[str, Any]] = []
    with _recorder(forecast_got) as forecast_port, _recorder(anomaly_got) as anomaly_port:
        for name, value in {
            "GRIDSIGHT_INGEST_PORT": str(free_port()),
            "GRIDSIGHT_SIMULATOR_PORT": str(free_port()),
            "GRIDSIGHT_FORECAST_PORT": str(forecast_port),
            "GRIDSIGHT_ANOMALY_PORT": str(anomaly_port),
            "GRIDSIGHT_DISPATCHER_POLL_S": "0.01",
        }.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        fw = str(Path(sys.executable).with_name("functions-framework"))
        ingest = [fw, "--source", str(REPO_ROOT / "services/ingest/main.py"), "--target", "app"]
        simulator = [
            sys.executable,
            "-m",
            "infra.local.cli",
            "simulator",
            "serve",
            "--devices",
            "3",
            "--days",
            "1",
        ]
        specs = [
            ProcessSpec(
                name="simulator",
                argv=[*simulator, "--seed", "3", "--port", str(settings.simulator_port)],
                port=settings.simulator_port,
            ),
            ProcessSpec(
                name="ingest",
                argv=[*ingest, "--host", "127.0.0.1", "--port", str(settings.ingest_port)],
                port=settings.ingest_port,
            ),
            ProcessSpec(name="dispatcher", argv=[sys.executable, "-m", "infra.local.dispatcher"]),
        ]
        with Supervisor(settings, specs) as stack:
            stack.wait_healthy()
            synced = run_sync(settings)
            assert synced.ok, synced.error
            assert send_sync_end(settings, sync_id=synced.sync_id)["status"] == "published"
            assert send_sync_end(settings, sync_id=synced.sync_id)["status"] == "duplicate"
            _wait(lambda: _settled(settings))
    assert len(forecast_got) == len(anomaly_got) == 1
    with open_warehouse(settings) as wh:
        runs = {(r.handler, r.status) for r in recent_runs(wh)}
        hours = wh.query("SELECT COUNT(*) AS n FROM energy_analytics.hourly_consumption").to_pylist()[0]["n"]
        device_hours = wh.query(
            # a device's first reading closes no known interval, so it starts no hour
            "SELECT COUNT(*) AS n FROM (SELECT DISTINCT device_id, hour FROM energy_analytics.fct_reading"
            " WHERE previous_reading_at IS NOT NULL)"
        ).to_pylist()[0]["n"]
        devices = (
            wh.query("SELECT DISTINCT device_id FROM raw.reading ORDER BY 1").column("device_id").to_pylist()
        )
    for body in (forecast_got[0], anomaly_got[0]):
        event = FeaturesRefreshed.model_validate_json(base64.b64decode(body["message"]["data"]))
        assert event.device_ids == devices
        assert body["message"]["attributes"]["correlation_id"] == synced.sync_id  # carried end to end
    assert {("webhook", "succeeded"), ("ingest", "succeeded"), ("ingest.refresh", "succeeded")} <= runs
    assert hours == device_hours > 0
    ingest_log = (settings.home / "logs" / "ingest.log").read_text()
    assert f'"correlation_id": "{synced.sync_id}"' in ingest_log  # structured logs carry it too
