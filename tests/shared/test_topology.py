from __future__ import annotations

import base64

import pytest

from shared.errors import InvalidEvent
from shared.events import (
    EVENT_TYPES,
    FeaturesRefreshed,
    SyncCompleted,
    decode_event,
    encode_event,
    parse_envelope,
)
from shared.topology import load_topology


def test_topology_file_validates_and_names_every_event_type():
    topology = load_topology()
    assert {t.event_type for t in topology.topics.values()} == set(EVENT_TYPES)
    for event_cls in EVENT_TYPES.values():
        assert topology.topics[event_cls.TOPIC].event_type == event_cls.TYPE


def test_every_push_subscription_dead_letters_and_backs_off():
    topology = load_topology()
    assert topology.subscriptions
    for sub in topology.subscriptions.values():
        assert 5 <= sub.max_delivery_attempts <= 100
        assert sub.min_backoff_seconds <= sub.max_backoff_seconds


def _envelope(data: bytes, attributes: dict[str, str]) -> dict:
    return {
        "message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m-1"},
        "subscription": "projects/p/subscriptions/s",
        "deliveryAttempt": 1,
    }


def test_event_round_trips_through_a_push_envelope():
    event = FeaturesRefreshed(
        refresh_id="r-1",
        window_start="2026-01-01T00:00:00Z",
        window_end="2026-01-01T05:00:00Z",
        device_ids=["dev-1"],
    )
    data, attributes = encode_event(event, correlation_id="c-1")
    envelope = parse_envelope(_envelope(data, attributes))
    assert envelope.delivery_attempt == 1
    assert attributes["correlation_id"] == "c-1"
    assert decode_event(envelope, FeaturesRefreshed) == event


def test_wrong_event_type_is_rejected_as_invalid():
    data, attributes = encode_event(
        SyncCompleted(connection_id="c", sync_id="s", sync_ended_at="2026-01-01T00:00:00Z")
    )
    with pytest.raises(InvalidEvent, match="expected event type"):
        decode_event(parse_envelope(_envelope(data, attributes)), FeaturesRefreshed)


def test_envelope_without_message_id_is_invalid():
    with pytest.raises(InvalidEvent, match="push envelope"):
        parse_envelope({"message": {"data": ""}, "subscription": "s"})
