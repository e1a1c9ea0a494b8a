"""SIGKILL the dispatcher or a service mid-flight: after a restart every event is processed once."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import Endpoint, serving, settled, wait_until

from infra.local.ports import free_port
from infra.local.supervisor import ProcessSpec, Supervisor
from shared.bus import open_publisher
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed
from shared.runs import recent_runs
from shared.settings import Settings
from shared.warehouse import open_warehouse

pytestmark = pytest.mark.slow
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PUSH_APP = Path(__file__).with_name("push_app.py")


@pytest.fixture
def crash_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A forecast push service as a real process and an in-test anomaly endpoint."""
    anomaly = Endpoint("anomaly")
    with serving(anomaly):
        for name, value in {
            "GRIDSIGHT_BUS_MIN_BACKOFF_S": "0.05",
            "GRIDSIGHT_BUS_MAX_BACKOFF_S": "0.5",
            "GRIDSIGHT_BUS_MAX_DELIVERY_ATTEMPTS": "100",
            "GRIDSIGHT_DISPATCHER_POLL_S": "0.01",
            "GRIDSIGHT_FORECAST_PORT": str(free_port()),
            "GRIDSIGHT_ANOMALY_PORT": anomaly.url.rsplit(":", 1)[1],
        }.items():
            monkeypatch.setenv(name, value)
        yield Settings()


def _stack(settings: Settings) -> Supervisor:
    fw = str(Path(sys.executable).with_name("functions-framework"))
    argv = [fw, "--source", str(PUSH_APP), "--target", "app", "--host", "127.0.0.1", "--port"]
    return Supervisor(
        settings,
        [
            ProcessSpec(
                name="forecast", argv=[*argv, str(settings.forecast_port)], port=settings.forecast_port
            ),
            ProcessSpec(name="dispatcher", argv=[sys.executable, "-m", "infra.local.dispatcher"]),
        ],
    )


def _publish(settings: Settings) -> None:
    publisher = open_publisher(settings)
    event = FeaturesRefreshed(refresh_id="r1", window_start=T0, window_end=T0, device_ids=["d1", "d2"])
    publisher.publish(event)
    publisher.close()


def _forecast_state(settings: Settings) -> tuple[int, list[str]]:
    with open_warehouse(settings) as wh:
        rows = wh.query("SELECT COUNT(*) AS n FROM energy_analytics.forecasts").to_pylist()[0]["n"]
        runs = [r.status for r in recent_runs(wh) if r.handler == "forecast"]
    return rows, runs


def _delivery(settings: Settings) -> tuple[str, int]:
    store = QueueStore.open(settings)
    try:
        return {s: (st, a) for s, _, st, a in store.delivery_states()}["forecast-features"]
    finally:
        store.close()


def _settle_restarting(stack: Supervisor, settings: Settings) -> None:
    def done() -> bool:
        stack.check()
        return settled(settings)()

    wait_until(done, timeout_s=60, what="queue settled")


def test_worker_killed_after_its_write_is_redelivered_and_counted_once(crash_settings: Settings) -> None:
    (crash_settings.home / "crash-after-write").touch()
    _publish(crash_settings)
    with _stack(crash_settings) as stack:
        stack.wait_healthy(timeout_s=60)
        wait_until(lambda: not (crash_settings.home / "crash-after-write").exists(), what="worker crash")
        _settle_restarting(stack, crash_settings)
    state, attempts = _delivery(crash_settings)
    assert state == "acked"
    assert attempts >= 2
    rows, runs = _forecast_state(crash_settings)
    assert rows == 2
    assert runs == ["succeeded"]  # the killed attempt never recorded; the redelivery did, once


def test_service_process_killed_mid_request_is_restarted_and_the_event_counts_once(
    crash_settings: Settings,
) -> None:
    home = crash_settings.home
    (home / "block").touch()
    _publish(crash_settings)
    with _stack(crash_settings) as stack:
        stack.wait_healthy(timeout_s=60)
        wait_until(lambda: (home / "entered").exists(), what="handler entered")
        stack.kill("forecast")  # the whole service (gunicorn master and worker), mid-request
        (home / "block").unlink()
        _settle_restarting(stack, crash_settings)
        assert stack.children["forecast"].restarts == 1
    state, attempts = _delivery(crash_settings)
    assert state == "acked"
    assert attempts >= 2
    rows, runs = _forecast_state(crash_settings)
    assert rows == 2
    assert runs == ["succeeded"]


def test_dispatcher_killed_mid_delivery_resumes_and_the_event_counts_once(crash_settings: Settings) -> None:
    home = crash_settings.home
    (home / "block").touch()
    _publish(crash_settings)
    with _stack(crash_settings) as stack:
        stack.wait_healthy(timeout_s=60)
        wait_until(lambda: (home / "entered").exists(), what="handler entered")
        stack.kill("dispatcher")
        (home / "block").unlink()  # the handler finishes and records success; its 204 goes nowhere
        wait_until(lambda: _forecast_state(crash_settings)[1] == ["succeeded"], what="run recorded")
        assert _delivery(crash_settings)[0] == "pending"  # never acknowledged
        _settle_restarting(stack, crash_settings)
        assert stack.children["dispatcher"].restarts == 1
    assert _delivery(crash_settings)[0] == "acked"
    rows, runs = _forecast_state(crash_settings)
    assert rows == 2
    assert runs == ["succeeded"]  # the redelivery was recognised as a duplicate
