"""The local dispatcher against real HTTP endpoints on loopback: Pub/Sub push semantics."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from typing import Any

import pytest
from loopback import Endpoint, dispatching, serving, settled, wait_until

from infra.local.dispatcher import backoff_seconds
from shared.bus import open_publisher
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed, SyncCompleted
from shared.push import local_push_token
from shared.settings import Settings
from shared.topology import load_topology

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _publish(settings: Settings, refresh_id: str = "r1") -> str:
    publisher = open_publisher(settings)
    try:
        event = FeaturesRefreshed(refresh_id=refresh_id, window_start=T0, window_end=T0, device_ids=["d1"])
        return publisher.publish(event, correlation_id="corr-7")
    finally:
        publisher.close()


def _states(settings: Settings) -> dict[str, tuple[str, int]]:
    store = QueueStore.open(settings)
    try:
        return {sub: (state, attempts) for sub, _, state, attempts in store.delivery_states()}
    finally:
        store.close()


def _retrying(settings: Settings, subscription: str) -> int:
    store = QueueStore.open(settings)
    try:
        return next(s.retrying for s in store.stats() if s.subscription == subscription)
    finally:
        store.close()


def _store(settings: Settings) -> QueueStore:
    return QueueStore.open(settings)


def test_fan_out_delivers_a_pubsub_push_envelope_to_every_subscriber(fast_settings: Settings) -> None:
    forecast, anomaly = Endpoint("forecast"), Endpoint("anomaly")
    message_id = _publish(fast_settings)
    with serving(forecast, anomaly) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings), what="both deliveries acked")
    assert _states(fast_settings) == {"forecast-features": ("acked", 1), "anomaly-features": ("acked", 1)}
    [body] = forecast.bodies
    assert len(anomaly.bodies) == 1
    assert body["subscription"] == f"projects/{fast_settings.gcp_project}/subscriptions/forecast-features"
    assert body["deliveryAttempt"] == 1
    # every push carries this home's token, which shared/push.py checks (push_auth=token)
    assert forecast.authorizations == [f"Bearer {local_push_token(fast_settings)}"]
    message = body["message"]
    assert message["messageId"] == message_id
    assert dt.datetime.fromisoformat(message["publishTime"]).tzinfo is not None
    assert message["attributes"]["type"] == FeaturesRefreshed.TYPE
    assert message["attributes"]["correlation_id"] == "corr-7"
    event = FeaturesRefreshed.model_validate_json(base64.b64decode(message["data"]))
    assert event.refresh_id == "r1"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_pubsub_success_codes_ack(fast_settings: Settings, status: int) -> None:
    endpoints = Endpoint("forecast", lambda b: status), Endpoint("anomaly")
    _publish(fast_settings)
    with serving(*endpoints) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings))
    assert _states(fast_settings)["forecast-features"] == ("acked", 1)


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
def test_other_codes_nack_and_are_redelivered_until_dead_lettered(
    fast_settings: Settings, status: int
) -> None:
    forecast = Endpoint("forecast", lambda b: status)
    _publish(fast_settings)
    with serving(forecast, Endpoint("anomaly")) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings))
    assert forecast.attempts == [1, 2, 3, 4, 5]
    assert _states(fast_settings) == {"forecast-features": ("dead", 5), "anomaly-features": ("acked", 1)}


def test_handler_failing_twice_is_retried_and_then_acked(fast_settings: Settings) -> None:
    forecast = Endpoint("forecast", lambda b: 503 if b["deliveryAttempt"] <= 2 else 204)
    _publish(fast_settings)
    with serving(forecast, Endpoint("anomaly")) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings))
    assert forecast.attempts == [1, 2, 3]
    assert _states(fast_settings)["forecast-features"] == ("acked", 3)


def test_backoff_doubles_from_minimum_up_to_maximum() -> None:
    sub = load_topology().subscriptions["forecast-features"]  # 10 s .. 600 s as in events.yaml
    assert [backoff_seconds(sub, n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]


def test_retry_waits_for_its_backoff_before_redelivering(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With events.yaml's 10 s minimum, a nacked delivery is scheduled, not retried at once."""
    monkeypatch.setenv("GRIDSIGHT_DISPATCHER_POLL_S", "0.01")
    forecast = Endpoint("forecast", lambda b: 503)
    _publish(settings)
    with serving(forecast, Endpoint("anomaly")) as urls, dispatching(Settings(), urls):
        wait_until(lambda: _states(settings)["anomaly-features"][0] == "acked")
        wait_until(lambda: len(forecast.bodies) == 1 and _retrying(settings, "forecast-features") == 1)
        store = _store(settings)
        due = store.next_due_at()
        store.close()
    assert len(forecast.bodies) == 1
    assert due is not None
    assert due > time.time() + 5  # events.yaml: 10 s before the second attempt


def test_timeout_is_a_nack(fast_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSIGHT_BUS_ACK_DEADLINE_S", "0.3")
    release = threading.Event()

    def slow_first(body: dict[str, Any]) -> int:
        if body["deliveryAttempt"] == 1:
            release.wait(timeout=10)
        return 204

    forecast = Endpoint("forecast", slow_first)
    _publish(fast_settings)
    with serving(forecast, Endpoint("anomaly")) as urls, dispatching(Settings(), urls):
        wait_until(lambda: _states(fast_settings)["forecast-features"][0] == "acked")
        release.set()
    assert (
        _states(fast_settings)["forecast-features"][1] >= 2
    )  # the held first attempt was not taken as an ack
    assert forecast.attempts[:2] == [1, 2]


def test_dead_letters_are_listed_and_replay_after_the_fix(fast_settings: Settings) -> None:
    broken = {"on": True}
    forecast = Endpoint("forecast", lambda b: 500 if broken["on"] else 204)
    _publish(fast_settings)
    with serving(forecast, Endpoint("anomaly")) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings))
        store = _store(fast_settings)
        [dead] = store.dead_letters()
        assert (dead.topic, dead.subscription, dead.last_status) == (
            "forecast-features-dead-letter",
            "forecast-features",
            500,
        )
        assert dead.event_type == FeaturesRefreshed.TYPE
        assert dead.correlation_id == "corr-7"
        assert {s.subscription: s.dead for s in store.stats()}["forecast-features"] == 1
        broken["on"] = False
        assert store.replay_dead_letters("forecast-features") == 1
        store.close()
        wait_until(settled(fast_settings))
    assert forecast.attempts == [1, 2, 3, 4, 5, 1]  # a replay starts a fresh attempt budget
    assert _states(fast_settings)["forecast-features"] == ("acked", 1)
    store = _store(fast_settings)
    assert store.dead_letters() == []
    store.close()


def test_messages_published_while_no_dispatcher_runs_are_delivered_later(fast_settings: Settings) -> None:
    publisher = open_publisher(fast_settings)
    for i in range(20):
        publisher.publish(SyncCompleted(connection_id="c", sync_id=f"s{i}", sync_ended_at=T0))
    publisher.close()
    ingest = Endpoint("ingest")
    with serving(ingest) as urls, dispatching(fast_settings, urls):
        wait_until(settled(fast_settings))
    assert sorted(
        SyncCompleted.model_validate_json(base64.b64decode(b["message"]["data"])).sync_id
        for b in ingest.bodies
    ) == sorted(f"s{i}" for i in range(20))
