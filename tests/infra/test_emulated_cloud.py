"""The whole chain on Google's emulators, as `gridsight demo --emulated-cloud` runs it: simulator →
`fivetran debug` → raw tables landed in bqemulator → signed webhook → ingest publishes to the Pub/Sub
emulator → push → refresh on BigQuery → features-refreshed pushed to the real forecast and anomaly
services → forecasts (model trained into, and served from, the Cloud Storage emulator) and anomalies.
The local chain test's assertions (tests/services/ingest/test_ingest_chain.py), plus the cloud parts:
then every message is published again and nothing changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.local.demo import demo_settings
from infra.local.emulated import emulated_settings, emulated_stack, model_root, run_chain
from infra.local.emulators import missing_emulators
from infra.local.ports import free_port
from infra.local.supervisor import StackOptions
from services.forecast.artefact import latest_version
from shared.bus.pubsub_admin import PubsubAdmin
from shared.events import FeaturesRefreshed
from shared.runs import recent_runs
from shared.settings import Settings
from shared.warehouse import open_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.pubsub, pytest.mark.emulator]

DEVICES, DAYS = 3, 7


@pytest.fixture
def cloud(settings: Settings) -> Settings:
    missing = missing_emulators()
    if missing:
        pytest.skip("!!! emulated-cloud chain NOT run: " + "; ".join(missing))
    ports = {
        name: free_port()
        for name in (
            "simulator_port", "ingest_port", "forecast_port", "anomaly_port", "chat_port",
            "model_server_port", "pubsub_emulator_port", "bigquery_emulator_port",
            "bigquery_emulator_grpc_port", "storage_emulator_port",
        )
    }  # fmt: skip
    return emulated_settings(demo_settings(settings.model_copy(update=ports)))


def _capture(admin: PubsubAdmin, topic: str) -> str:
    path = admin.subscription_path(f"test-capture-{topic}-{uuid.uuid4().hex[:6]}")
    admin.subscriber.create_subscription(request={"name": path, "topic": admin.topic_path(topic)})
    return path


def _pull_one(admin: PubsubAdmin, path: str) -> Any:
    [received] = admin.subscriber.pull(
        request={"subscription": path, "max_messages": 10}, timeout=10
    ).received_messages
    return received.message


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # polling logs with a deadline


def _snapshot(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    with open_warehouse(settings) as wh:
        return {
            table: wh.query(f"SELECT * FROM energy_analytics.{table} ORDER BY {order}").to_pylist()
            for table, order in {
                "hourly_consumption": "device_id, hour",
                "forecasts": "device_id, target_hour",
                "anomalies": "incident_id",
            }.items()
        }


def _count(wh: Any, sql: str) -> int:
    return int(wh.query(f"SELECT COUNT(*) AS n FROM ({sql})").to_pylist()[0]["n"])


def _skipped(log: Path) -> int:
    return log.read_text().count("duplicate delivery skipped") if log.exists() else 0


def test_sync_to_forecasts_and_anomalies_on_the_emulators_and_a_replay_changes_nothing(
    cloud: Settings,
) -> None:
    logs = cloud.home / "logs"
    with emulated_stack(cloud, StackOptions(devices=DEVICES, days=DAYS, seed=3)) as stack:
        admin = PubsubAdmin(cloud)
        try:
            captures = {topic: _capture(admin, topic) for topic in ("sync-completed", "features-refreshed")}
            chain = run_chain(cloud, stack, lambda _: None, lambda _: None, timeout_s=600)
            sync_msg = _pull_one(admin, captures["sync-completed"])
            refreshed_msg = _pull_one(admin, captures["features-refreshed"])
            before = _snapshot(cloud)
            with open_warehouse(cloud) as wh:
                runs_before = sorted((r.handler, r.status) for r in recent_runs(wh, 100))
            # the same two messages again (as Pub/Sub's at-least-once delivery may do): nothing changes
            for topic, message in (("sync-completed", sync_msg), ("features-refreshed", refreshed_msg)):
                admin.publisher.publish(
                    admin.topic_path(topic), message.data, **dict(message.attributes)
                ).result(30)
            for service in ("ingest", "forecast", "anomaly"):
                _wait(lambda s=service: _skipped(logs / f"{s}.log") >= 1, f"{service} to skip the duplicate")
            after = _snapshot(cloud)
        finally:
            admin.close()
        with open_warehouse(cloud) as wh:  # while the BigQuery emulator still runs
            runs = recent_runs(wh, 100)
            hours = _count(wh, "SELECT * FROM energy_analytics.hourly_consumption")
            device_hours = _count(  # a device's first reading closes no known interval, so it starts no hour
                wh,
                "SELECT DISTINCT device_id, hour FROM energy_analytics.fct_reading"
                " WHERE previous_reading_at IS NOT NULL",
            )
            devices = (
                wh.query("SELECT DISTINCT device_id FROM raw.reading ORDER BY 1")
                .column("device_id")
                .to_pylist()
            )
            forecasts = wh.query("SELECT * FROM energy_analytics.forecasts").to_pylist()
        newest_model = latest_version(model_root(cloud))
    # the local chain test's assertions
    event = FeaturesRefreshed.model_validate_json(refreshed_msg.data)
    assert event.device_ids == devices
    assert len(devices) == DEVICES
    assert refreshed_msg.attributes["correlation_id"] == chain.sync_id  # carried end to end
    assert {("webhook", "succeeded"), ("ingest", "succeeded"), ("ingest.refresh", "succeeded")} <= {
        (r.handler, r.status) for r in runs
    }
    assert hours == device_hours > 0
    assert f'"correlation_id": "{chain.sync_id}"' in (logs / "ingest.log").read_text()
    # the cloud parts: pushed by the emulator, forecasts from the model the server loaded from gs://
    pushed = {r.handler: r for r in runs if r.status == "succeeded" and r.handler in ("forecast", "anomaly")}
    assert set(pushed) == {"forecast", "anomaly"}
    for handler, run in pushed.items():
        assert run.subscription == f"projects/{cloud.gcp_project}/subscriptions/{handler}-features"
        assert run.correlation_id == chain.sync_id
        assert run.delivery_attempt is None  # the emulator sends no deliveryAttempt (infra/README.md)
    assert {f["device_id"] for f in forecasts} == set(devices)
    assert {f["model_version"] for f in forecasts} == {newest_model}
    assert all(f["p10"] <= f["p50"] <= f["p90"] for f in forecasts)
    # the replayed messages changed nothing and ran no work
    assert after == before
    assert sorted((r.handler, r.status) for r in runs) == runs_before
