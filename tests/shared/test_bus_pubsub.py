"""The Pub/Sub publisher against a stand-in for google-cloud-pubsub's PublisherClient (Google
Cloud itself is the one thing we replace): topic path, data, attributes, and errors → 503."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future

import pytest

from shared.bus import UnknownTopic
from shared.bus.pubsub import PubsubPublisher
from shared.errors import TransientError
from shared.events import SyncCompleted
from shared.settings import Settings
from shared.topology import load_topology

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


class _Client:
    """Same call shapes as google.cloud.pubsub_v1.PublisherClient."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.fail = fail

    @staticmethod
    def topic_path(project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        future: Future[str] = Future()
        if self.fail:
            future.set_exception(self.fail)
        else:
            self.published.append((topic, data, attributes))
            future.set_result("1234567890")
        return future


def _event() -> SyncCompleted:
    return SyncCompleted(connection_id="gridsight_prod", sync_id="s-1", sync_ended_at=T0)


def test_publishes_to_the_project_topic_with_cloudevents_attributes(settings: Settings) -> None:
    client = _Client()
    publisher = PubsubPublisher(settings, client=client, source="gridsight/ingest")
    assert publisher.publish(_event(), correlation_id="s-1") == "1234567890"
    [(topic, data, attributes)] = client.published
    assert topic == f"projects/{settings.gcp_project}/topics/sync-completed"
    assert SyncCompleted.model_validate_json(data) == _event()
    assert attributes["type"] == SyncCompleted.TYPE
    assert attributes["source"] == "gridsight/ingest"
    assert attributes["correlation_id"] == "s-1"
    assert {"id", "time", "specversion"} <= set(attributes)
    assert topic.rsplit("/", 1)[1] in load_topology().topics


def test_a_failed_publish_is_a_transient_error(settings: Settings) -> None:
    publisher = PubsubPublisher(settings, client=_Client(fail=RuntimeError("503 unavailable")))
    with pytest.raises(TransientError, match="sync-completed"):
        publisher.publish(_event())


def test_an_undeclared_topic_is_refused_before_any_call(settings: Settings) -> None:
    client = _Client()
    publisher = PubsubPublisher(settings, client=client)

    class Renamed(SyncCompleted):
        TOPIC = "not-in-events-yaml"  # type: ignore[misc]

    with pytest.raises(UnknownTopic):
        publisher.publish(Renamed(**_event().model_dump()))
    assert client.published == []
