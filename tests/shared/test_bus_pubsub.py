"""The Pub/Sub publisher against the official Pub/Sub emulator (google-cloud-pubsub, unchanged):
what lands on the topic, and how failures surface. Each test has a project of its own."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.bus import UnknownTopic, open_publisher
from shared.bus.pubsub import PubsubPublisher
from shared.bus.pubsub_admin import PubsubAdmin
from shared.errors import TransientError
from shared.events import SyncCompleted
from shared.settings import Settings

pytestmark = pytest.mark.pubsub

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def cloud(settings: Settings, pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    return settings.model_copy(update={"gcp_project": f"pub-{uuid.uuid4().hex[:8]}", "bus_backend": "pubsub"})


def _event() -> SyncCompleted:
    return SyncCompleted(connection_id="gridsight_prod", sync_id="s-1", sync_ended_at=T0)


def _pull_subscription(admin: PubsubAdmin, topic: str) -> str:
    path = admin.subscription_path(f"test-pull-{uuid.uuid4().hex[:6]}")
    admin.subscriber.create_subscription(request={"name": path, "topic": admin.topic_path(topic)})
    return path


def test_publishes_to_the_project_topic_with_cloudevents_attributes(cloud: Settings) -> None:
    admin = PubsubAdmin(cloud)
    admin.ensure_topology(dict.fromkeys(admin.topology.services, "http://127.0.0.1:9"))
    pull = _pull_subscription(admin, "sync-completed")
    publisher = open_publisher(cloud, source="gridsight/ingest")
    assert isinstance(publisher, PubsubPublisher)
    try:
        message_id = publisher.publish(_event(), correlation_id="s-1")
        got = admin.subscriber.pull(request={"subscription": pull, "max_messages": 10}, timeout=10)
    finally:
        publisher.close()
        admin.close()
    [received] = got.received_messages
    assert received.message.message_id == message_id
    assert SyncCompleted.model_validate_json(received.message.data) == _event()
    attributes = dict(received.message.attributes)
    assert attributes["type"] == SyncCompleted.TYPE
    assert attributes["source"] == "gridsight/ingest"
    assert attributes["correlation_id"] == "s-1"
    assert {"id", "time", "specversion"} <= set(attributes)


def test_publishing_to_a_topic_the_project_lacks_is_a_transient_error(cloud: Settings) -> None:
    """No topology created in this project: Pub/Sub answers NOT_FOUND; callers get a 503-class error."""
    publisher = PubsubPublisher(cloud)
    try:
        with pytest.raises(TransientError, match="sync-completed"):
            publisher.publish(_event())
    finally:
        publisher.close()


def test_an_undeclared_topic_is_refused_before_any_call(cloud: Settings) -> None:
    admin = PubsubAdmin(cloud)
    admin._ensure_topic("not-in-events-yaml")
    pull = _pull_subscription(admin, "not-in-events-yaml")

    class Renamed(SyncCompleted):
        TOPIC = "not-in-events-yaml"  # type: ignore[misc]

    publisher = PubsubPublisher(cloud)
    try:
        with pytest.raises(UnknownTopic):
            publisher.publish(Renamed(**_event().model_dump()))
        got = admin.subscriber.pull(
            request={"subscription": pull, "max_messages": 10, "return_immediately": True}, timeout=10
        )
    finally:
        publisher.close()
        admin.close()
    assert list(got.received_messages) == []
