"""Pub/Sub topology from infra/events.yaml, and dead-letter replay, over the Pub/Sub admin API.

On Google Cloud, Terraform creates the topology (infra/terraform/modules/gridsight/topology.tf). On
the official emulator nothing does, so this module creates exactly what topology.tf declares, from
the same file: every topic; per subscription a dead-letter topic and its pull subscription; and the
push subscription with its endpoint, ack deadline, retry backoff, dead-letter topic and maximum
delivery attempts. It goes over gRPC (google-cloud-pubsub), because the emulator's REST API rejects
`retryPolicy`. A test reads the subscriptions back and compares them with events.yaml and with
topology.tf's attribute list, so the two cannot drift.

    admin = PubsubAdmin(settings)
    admin.ensure_topology({"ingest": "http://127.0.0.1:8701", ...}, token=...)
    admin.replay_dead_letters("forecast-features")
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2, field_mask_pb2
from pydantic import BaseModel

from shared.bus.local import effective_subscription
from shared.settings import Settings
from shared.topology import Subscription, Topology, load_topology

__all__ = ["DeadLetterMessage", "PubsubAdmin", "push_endpoint"]

_PULL_BATCH = 100


def push_endpoint(base_url: str, path: str, token: str | None) -> str:
    """Where a push subscription delivers. The emulator can set no header, so the per-installation
    push token (shared/push.py, #18) rides in the query string; in the cloud OIDC replaces it."""
    url = f"{base_url.rstrip('/')}{path}"
    return f"{url}?token={token}" if token else url


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


class DeadLetterMessage(BaseModel):
    """One message parked on a subscription's dead-letter topic."""

    subscription: str
    message_id: str
    event_type: str | None
    correlation_id: str | None
    data: bytes
    attributes: dict[str, str]


class PubsubAdmin:
    """Admin calls for one project; clients come from google-cloud-pubsub (PUBSUB_EMULATOR_HOST
    points them at the emulator)."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology | None = None,
        *,
        publisher: Any = None,
        subscriber: Any = None,
    ) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        self.settings = settings
        self.project = settings.gcp_project
        self.topology = topology or load_topology()
        self.publisher = publisher or pubsub_v1.PublisherClient()
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()

    # --- names ------------------------------------------------------------------------------------
    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def dead_letter_subscription(self, subscription: str) -> str:
        return f"{subscription}{self.topology.dead_letter.subscription_suffix}"

    # --- topology ---------------------------------------------------------------------------------
    def ensure_topology(self, service_urls: Mapping[str, str], *, token: str | None = None) -> list[str]:
        """Create (or bring up to date) every topic and subscription; returns the push subscriptions.

        Retry and attempt values are events.yaml's, with the same local overrides from settings the
        local dispatcher applies (`bus_min_backoff_s`, ...), so the demo need not wait 10..600 s.
        """
        for topic in self.topology.topics:
            self._ensure_topic(topic)
        for name, declared in self.topology.subscriptions.items():
            sub = effective_subscription(declared, self.settings)
            dead_letter = self.topology.dead_letter_topic(name)
            self._ensure_topic(dead_letter)
            self._ensure_subscription(
                {
                    "name": self.subscription_path(self.dead_letter_subscription(name)),
                    "topic": self.topic_path(dead_letter),
                    "ack_deadline_seconds": 60,
                    "message_retention_duration": _duration(self.topology.dead_letter.retention_seconds),
                }
            )
            self._ensure_subscription(self._push_subscription(name, sub, service_urls, token))
        return list(self.topology.subscriptions)

    def _push_subscription(
        self, name: str, sub: Subscription, service_urls: Mapping[str, str], token: str | None
    ) -> dict[str, Any]:
        """The same attributes as topology.tf's google_pubsub_subscription.push (OIDC aside: the
        emulator sends no token, see infra/README.md "Emulator and Pub/Sub differences")."""
        return {
            "name": self.subscription_path(name),
            "topic": self.topic_path(sub.topic),
            "ack_deadline_seconds": int(sub.ack_deadline_seconds),
            "push_config": {"push_endpoint": push_endpoint(service_urls[sub.service], sub.path, token)},
            "retry_policy": {
                "minimum_backoff": _duration(sub.min_backoff_seconds),
                "maximum_backoff": _duration(sub.max_backoff_seconds),
            },
            "dead_letter_policy": {
                "dead_letter_topic": self.topic_path(self.topology.dead_letter_topic(name)),
                "max_delivery_attempts": int(sub.max_delivery_attempts),
            },
        }

    def _ensure_topic(self, topic: str) -> None:
        with contextlib.suppress(gexc.AlreadyExists):
            self.publisher.create_topic(request={"name": self.topic_path(topic)})

    def _ensure_subscription(self, request: dict[str, Any]) -> None:
        try:
            self.subscriber.create_subscription(request=request)
        except gexc.AlreadyExists:
            fields = [k for k in request if k not in ("name", "topic")]
            self.subscriber.update_subscription(
                request={"subscription": request, "update_mask": field_mask_pb2.FieldMask(paths=fields)}
            )

    def describe(self, subscription: str) -> Any:
        """The subscription as the server holds it (tests compare it with events.yaml)."""
        return self.subscriber.get_subscription(
            request={"subscription": self.subscription_path(subscription)}
        )

    # --- dead letters -----------------------------------------------------------------------------
    def _pull(self, subscription: str) -> list[Any]:
        response = self.subscriber.pull(
            request={
                "subscription": self.subscription_path(self.dead_letter_subscription(subscription)),
                "max_messages": _PULL_BATCH,
            },
            timeout=10.0,
        )
        return list(response.received_messages)

    def dead_letters(self, subscription: str | None = None) -> list[DeadLetterMessage]:
        """What waits on the dead-letter topics (pulled, then handed back at once, so still there)."""
        found: list[DeadLetterMessage] = []
        for name in [subscription] if subscription else list(self.topology.subscriptions):
            received = self._pull(name)
            if received:
                self.subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.subscription_path(self.dead_letter_subscription(name)),
                        "ack_ids": [r.ack_id for r in received],
                        "ack_deadline_seconds": 0,
                    }
                )
            found += [self._as_dead_letter(name, r.message) for r in received]
        return found

    def replay_dead_letters(self, subscription: str) -> int:
        """Publish each dead-lettered message of `subscription` to its topic again, then ack it.

        Republishing reaches every subscription of the topic (Pub/Sub has no per-subscription
        redelivery); the others see a duplicate and skip it (pipeline_runs dedupe), so it is safe.
        """
        topic = self.topology.subscriptions[subscription].topic
        replayed = 0
        while received := self._pull(subscription):
            for r in received:
                attributes = {
                    k: v for k, v in r.message.attributes.items() if not k.startswith("CloudPubSubDeadLetter")
                }
                self.publisher.publish(self.topic_path(topic), r.message.data, **attributes).result(
                    timeout=30
                )
            self.subscriber.acknowledge(
                request={
                    "subscription": self.subscription_path(self.dead_letter_subscription(subscription)),
                    "ack_ids": [r.ack_id for r in received],
                }
            )
            replayed += len(received)
        return replayed

    @staticmethod
    def _as_dead_letter(subscription: str, message: Any) -> DeadLetterMessage:
        attributes = dict(message.attributes)
        return DeadLetterMessage(
            subscription=subscription,
            message_id=message.message_id,
            event_type=attributes.get("type"),
            correlation_id=attributes.get("correlation_id"),
            data=bytes(message.data),
            attributes=attributes,
        )

    def close(self) -> None:
        stop = getattr(self.publisher, "stop", None)
        if callable(stop):
            stop()
        self.subscriber.close()
