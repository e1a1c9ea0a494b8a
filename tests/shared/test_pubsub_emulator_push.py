"""Topology, dead letters and duplicates on the official Pub/Sub emulator, pushing to `handle_push`.

The subscriptions are created by `PubsubAdmin.ensure_topology` from infra/events.yaml (the code path
the emulated-cloud stack uses); a Flask app served on a loopback port wraps the real push edge
(shared/push.py) around a handler whose failures the test controls. Retry backoff is shortened by
settings (0.1..0.5 s; the emulator rounds it up to about 1..3 s) and attempts set to Pub/Sub's
minimum, 5.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import flask
import pandas as pd
import pytest
from werkzeug.serving import make_server

from infra.local.emulated import push_token
from shared.bus import open_publisher
from shared.bus.local import effective_subscription
from shared.bus.pubsub_admin import PubsubAdmin, push_endpoint
from shared.errors import TransientError
from shared.events import FeaturesRefreshed, SyncCompleted
from shared.push import PushContext, handle_push
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse

pytestmark = pytest.mark.pubsub

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ATTEMPTS = 5


@pytest.fixture
def cloud(settings: Settings, pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    return settings.model_copy(
        update={
            "gcp_project": f"push-{uuid.uuid4().hex[:8]}",
            "bus_backend": "pubsub",
            "bus_min_backoff_s": 0.1,
            "bus_max_backoff_s": 0.5,
            "bus_max_delivery_attempts": ATTEMPTS,
        }
    )


class Handlers:
    """The push routes of the loopback app: sync-completed (ingest) and features-refreshed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failing = True
        self.pushes: list[str] = []
        self.work_calls: list[str] = []

    def ingest_work(self, event: SyncCompleted, ctx: PushContext) -> None:
        self.work_calls.append(ctx.message_id)
        if self.failing:
            raise TransientError("warehouse unavailable (test)")

    def forecast_work(self, event: FeaturesRefreshed, ctx: PushContext) -> int:
        self.work_calls.append(ctx.message_id)
        rows = pd.DataFrame(
            {
                "device_id": event.device_ids,
                "target_hour": [event.window_end] * len(event.device_ids),
                "p10": 1.0,
                "p50": 2.0,
                "p90": 3.0,
                "model_version": "v1",
                "made_at": event.window_start,
            }
        )
        with open_warehouse(ctx.settings) as wh:
            return wh.merge("forecasts", rows, key=["device_id", "target_hour"])


@contextmanager
def serving(handlers: Handlers) -> Iterator[str]:
    app = flask.Flask("push-under-test")
    routes: dict[str, tuple[type[Any], str, Callable[..., object]]] = {
        "sync-completed": (SyncCompleted, "ingest", handlers.ingest_work),
        "features-refreshed": (FeaturesRefreshed, "forecast", handlers.forecast_work),
    }

    @app.post("/<service>/pubsub/<topic>")
    def push(service: str, topic: str) -> flask.Response:
        handlers.pushes.append(f"{service}:{topic}")
        if service not in ("ingest", "forecast"):
            return flask.Response(status=204)  # the other subscribers of the topic are not under test
        expected, handler, work = routes[topic]
        return handle_push(
            flask.request, expected=expected, handler=handler, work=work, settings=handlers.settings
        )

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling emulator/handler state with a deadline


def _runs(settings: Settings, handler: str) -> list[str]:
    with open_warehouse(settings) as wh:
        rows = wh.query(
            "SELECT status FROM energy_analytics.pipeline_runs WHERE handler = @h ORDER BY started_at",
            {"h": handler},
        ).to_pylist()
    return [r["status"] for r in rows]


def _urls(admin: PubsubAdmin, url: str) -> dict[str, str]:
    """Each service under its own prefix of the one loopback app."""
    return {service: f"{url}/{service}" for service in admin.topology.services}


@pytest.fixture
def wired(cloud: Settings) -> Iterator[tuple[Settings, Handlers, PubsubAdmin, str]]:
    handlers = Handlers(cloud)
    with serving(handlers) as url:
        admin = PubsubAdmin(cloud)
        admin.ensure_topology(_urls(admin, url), token=push_token(cloud))
        try:
            yield cloud, handlers, admin, url
        finally:
            admin.close()


def test_subscriptions_on_the_emulator_are_those_of_events_yaml(
    wired: tuple[Settings, Handlers, PubsubAdmin, str],
) -> None:
    settings, _, admin, url = wired
    admin.ensure_topology(_urls(admin, url), token=push_token(settings))  # again: idempotent
    for name, declared in admin.topology.subscriptions.items():
        sub = effective_subscription(declared, settings)
        got = admin.describe(name)
        assert got.topic == admin.topic_path(declared.topic)
        expected = push_endpoint(f"{url}/{declared.service}", declared.path, push_token(settings))
        assert got.push_config.push_endpoint == expected
        assert got.ack_deadline_seconds == declared.ack_deadline_seconds
        assert got.retry_policy.minimum_backoff.total_seconds() == pytest.approx(0.1)
        assert got.retry_policy.maximum_backoff.total_seconds() == pytest.approx(0.5)
        assert got.dead_letter_policy.dead_letter_topic == admin.topic_path(f"{name}-dead-letter")
        assert got.dead_letter_policy.max_delivery_attempts == sub.max_delivery_attempts == ATTEMPTS
        dead = admin.describe(f"{name}-dead-letter-sub")
        assert dead.topic == admin.topic_path(f"{name}-dead-letter")


def test_the_subscription_attributes_are_those_topology_tf_sets_from_events_yaml() -> None:
    """Terraform and PubsubAdmin read the same events.yaml keys into the same subscription fields."""
    import hcl2

    tf = hcl2.load((REPO_ROOT / "infra/terraform/modules/gridsight/topology.tf").open())
    found = [
        body
        for resource in tf["resource"]
        for kind, named in resource.items()
        for name, body in named.items()
        if kind.strip('"') == "google_pubsub_subscription" and name.strip('"') == "push"
    ]
    [push] = found
    assert push["ack_deadline_seconds"] == "${each.value.ack_deadline_seconds}"
    [retry] = push["retry_policy"]
    assert "each.value.min_backoff_seconds" in retry["minimum_backoff"]
    assert "each.value.max_backoff_seconds" in retry["maximum_backoff"]
    [dead] = push["dead_letter_policy"]
    assert dead["max_delivery_attempts"] == "${each.value.max_delivery_attempts}"
    assert "each.value.dead_letter_topic" in dead["dead_letter_topic"]
    assert "each.value.path" in push["push_config"][0]["push_endpoint"]


def test_a_handler_failing_every_attempt_is_dead_lettered_and_replayed_once_fixed(
    wired: tuple[Settings, Handlers, PubsubAdmin, str],
) -> None:
    settings, handlers, admin, _ = wired
    publisher = open_publisher(settings, source="gridsight/ingest")
    event = SyncCompleted(connection_id=settings.fivetran_connection_id, sync_id="s-dead", sync_ended_at=T0)
    try:
        publisher.publish(event, correlation_id="s-dead")
    finally:
        publisher.close()
    _wait(lambda: len(admin.dead_letters("ingest-refresh")) == 1, "the dead letter", timeout_s=90)
    [dead] = admin.dead_letters("ingest-refresh")
    assert len(handlers.work_calls) == ATTEMPTS  # every attempt reached the handler, then Pub/Sub gave up
    assert dead.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(ATTEMPTS)
    assert dead.correlation_id == "s-dead"
    assert SyncCompleted.model_validate_json(dead.data) == event
    assert _runs(settings, "ingest") == ["failed"] * ATTEMPTS

    handlers.failing = False  # the cause is fixed; replay
    assert admin.replay_dead_letters("ingest-refresh") == 1
    _wait(lambda: "succeeded" in _runs(settings, "ingest"), "the replayed delivery")
    assert _runs(settings, "ingest") == ["failed"] * ATTEMPTS + ["succeeded"]
    assert admin.dead_letters("ingest-refresh") == []


def test_a_message_delivered_twice_changes_nothing(
    wired: tuple[Settings, Handlers, PubsubAdmin, str],
) -> None:
    settings, handlers, _, _ = wired
    event = FeaturesRefreshed(
        refresh_id="r-1",
        window_start=T0,
        window_end=T0 + dt.timedelta(hours=2),
        device_ids=["dev-00001", "dev-00002"],
    )
    publisher = open_publisher(settings, source="gridsight/ingest")
    try:
        publisher.publish(event, correlation_id="r-1")
        _wait(lambda: "succeeded" in _runs(settings, "forecast"), "the first delivery")
        with open_warehouse(settings) as wh:
            before = wh.query("SELECT * FROM energy_analytics.forecasts ORDER BY device_id").to_pylist()
        publisher.publish(event, correlation_id="r-1")  # the same event again, as a redelivery would
        _wait(lambda: handlers.pushes.count("forecast:features-refreshed") >= 2, "the second delivery")
    finally:
        publisher.close()
    with open_warehouse(settings) as wh:
        after = wh.query("SELECT * FROM energy_analytics.forecasts ORDER BY device_id").to_pylist()
    assert len(before) == 2
    assert after == before
    assert len(handlers.work_calls) == 1  # the second push was recognised (pipeline_runs) and acked
    assert _runs(settings, "forecast") == ["succeeded"]
