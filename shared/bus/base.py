"""The one publishing interface every service codes against; Pub/Sub and the local queue implement it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shared.events import Event
from shared.topology import Topology

__all__ = ["Publisher", "UnknownTopic", "check_topic"]


class UnknownTopic(ValueError):
    """Publishing to a topic missing from infra/events.yaml would be lost in the cloud: refuse it."""


@runtime_checkable
class Publisher(Protocol):
    def publish(self, event: Event, *, correlation_id: str | None = None) -> str:
        """Publish `event` on `event.TOPIC`; returns the message id once the message is durable."""
        ...

    def close(self) -> None: ...


def check_topic(topology: Topology, event: Event) -> str:
    if event.TOPIC not in topology.topics:
        raise UnknownTopic(f"topic {event.TOPIC!r} of {type(event).__name__} is not in infra/events.yaml")
    declared = topology.topics[event.TOPIC].event_type
    if declared != event.TYPE:
        raise UnknownTopic(f"topic {event.TOPIC!r} carries {declared!r}, not {event.TYPE!r}")
    return event.TOPIC
