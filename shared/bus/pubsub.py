"""Publisher onto Google Cloud Pub/Sub (google-cloud-pubsub), used when bus_backend = pubsub."""

from __future__ import annotations

from typing import Any

from shared.bus.base import check_topic
from shared.errors import TransientError
from shared.events import Event, encode_event
from shared.settings import Settings
from shared.topology import Topology, load_topology

__all__ = ["PubsubPublisher"]

_PUBLISH_TIMEOUT_S = 30.0


class PubsubPublisher:
    def __init__(
        self,
        settings: Settings,
        topology: Topology | None = None,
        client: Any = None,
        source: str = "gridsight",
    ) -> None:
        if client is None:
            from google.cloud import pubsub_v1  # imported here: only cloud mode pays for it

            client = pubsub_v1.PublisherClient()
        self.client = client
        self.project = settings.gcp_project
        self.topology = topology or load_topology()
        self.source = source

    def publish(self, event: Event, *, correlation_id: str | None = None) -> str:
        topic = check_topic(self.topology, event)
        data, attributes = encode_event(event, correlation_id=correlation_id, source=self.source)
        future = self.client.publish(self.client.topic_path(self.project, topic), data, **attributes)
        try:
            return str(future.result(timeout=_PUBLISH_TIMEOUT_S))
        except Exception as exc:  # the client raises many google.api_core types; all mean "retry later"
            raise TransientError(f"publishing to {topic} failed: {exc}") from exc

    def close(self) -> None:
        stop = getattr(self.client, "stop", None)
        if callable(stop):
            stop()
