"""The chain on the local runtime: signed webhook → ingest service → refresh → features-refreshed
pushed to every subscriber, with the real ingest process, the dispatcher process and loopback
endpoints standing in for forecast and anomaly."""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask
import pytest
from conftest import LandRaw
from werkzeug.serving import make_server

from infra.local.supervisor import ProcessSpec, Supervisor
from infra.local.webhook_client import send_sync_end
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed
from shared.runs import recent_runs
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def test_webhook_to_features_refreshed_at_every_subscriber(
    settings: Settings, land_raw: LandRaw, monkeypatch: pytest.MonkeyPatch
) -> None:
    forecast_got: list[dict[str, Any]] = []
    anomaly_got: list[dict[str, Any]] = []
    land_raw(settings, devices=3, hours=24)
    with _recorder(forecast_got) as forecast_port, _recorder(anomaly_got) as anomaly_port:
        for name, value in {
            "GRIDSIGHT_INGEST_PORT": str(_free_port()),
            "GRIDSIGHT_FORECAST_PORT": str(forecast_port),
            "GRIDSIGHT_ANOMALY_PORT": str(anomaly_port),
            "GRIDSIGHT_DISPATCHER_POLL_S": "0.01",
        }.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        fw = str(Path(sys.executable).with_name("functions-framework"))
        ingest = [fw, "--source", str(REPO_ROOT / "services/ingest/main.py"), "--target", "app"]
        specs = [
            ProcessSpec(
                name="ingest",
                argv=[*ingest, "--host", "127.0.0.1", "--port", str(settings.ingest_port)],
                port=settings.ingest_port,
            ),
            ProcessSpec(name="dispatcher", argv=[sys.executable, "-m", "infra.local.dispatcher"]),
        ]
        with Supervisor(settings, specs) as stack:
            stack.wait_healthy()
            answer = send_sync_end(settings, sync_id="sync-1")
            assert answer["status"] == "published"
            assert send_sync_end(settings, sync_id="sync-1")["status"] == "duplicate"
            _wait(lambda: _settled(settings))
    assert len(forecast_got) == len(anomaly_got) == 1
    for body in (forecast_got[0], anomaly_got[0]):
        event = FeaturesRefreshed.model_validate_json(base64.b64decode(body["message"]["data"]))
        assert event.device_ids == ["dev-000", "dev-001", "dev-002"]
        assert body["message"]["attributes"]["correlation_id"] == "sync-1"  # carried end to end
    with open_warehouse(settings) as wh:
        runs = {(r.handler, r.status) for r in recent_runs(wh)}
        hours = wh.query("SELECT COUNT(*) AS n FROM energy_analytics.hourly_consumption").to_pylist()[0]["n"]
    assert {("webhook", "succeeded"), ("ingest", "succeeded"), ("ingest.refresh", "succeeded")} <= runs
    assert hours == 3 * 24
    ingest_log = (settings.home / "logs" / "ingest.log").read_text()
    assert '"correlation_id": "sync-1"' in ingest_log  # structured logs carry it too
