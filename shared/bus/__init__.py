"""Event publishing behind one interface: Pub/Sub on Google Cloud, the local dispatcher otherwise.

    publisher = open_publisher(settings)
    message_id = publisher.publish(FeaturesRefreshed(...), correlation_id=ctx.correlation_id)

`publish` returns once the message is durable (acknowledged by Pub/Sub, or committed to the local
queue), and refuses a topic that infra/events.yaml does not declare.
"""

from __future__ import annotations

from shared.bus.base import Publisher, UnknownTopic, check_topic
from shared.settings import Settings
from shared.topology import Topology

__all__ = ["Publisher", "UnknownTopic", "check_topic", "open_publisher"]


def open_publisher(
    settings: Settings, topology: Topology | None = None, source: str = "gridsight"
) -> Publisher:
    if settings.bus_backend == "pubsub":
        from shared.bus.pubsub import PubsubPublisher

        return PubsubPublisher(settings, topology, source=source)
    from shared.bus.local import LocalPublisher

    return LocalPublisher(settings, topology, source=source)
