"""shared.events.check_event: what an event may ask of a service, checked before any work."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.errors import InvalidEvent
from shared.events import FeaturesRefreshed, SyncCompleted, check_event
from shared.settings import Settings

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
OURS = {"source": "gridsight/ingest"}


def _window(start: dt.datetime, end: dt.datetime, devices: int = 2) -> FeaturesRefreshed:
    ids = [f"d{i}" for i in range(devices)]
    return FeaturesRefreshed(refresh_id="r", window_start=start, window_end=end, device_ids=ids)


def test_a_window_within_the_limits_passes_unchanged(settings: Settings) -> None:
    event = _window(NOW - dt.timedelta(hours=6), NOW)
    assert check_event(event, OURS, settings, now=NOW) == event
    empty = _window(NOW, NOW)  # names a forecast origin and nothing else: allowed
    assert check_event(empty, {"source": "gridsight"}, settings, now=NOW) == empty


def test_a_long_window_is_clamped_to_its_most_recent_hours(settings: Settings) -> None:
    event = _window(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), NOW)
    clamped = check_event(event, OURS, settings, now=NOW)
    assert clamped.window_end == NOW
    assert clamped.window_start == NOW - dt.timedelta(hours=24 * 93)  # the documented default
    assert clamped.dedupe_key() == event.dedupe_key()


@pytest.mark.parametrize(
    ("event", "attributes", "words"),
    [
        (_window(NOW, NOW - dt.timedelta(hours=1)), OURS, "inverted window"),
        (_window(NOW, NOW + dt.timedelta(hours=25)), OURS, "in the future"),
        (_window(NOW - dt.timedelta(hours=1), NOW), {"source": "gridsightX"}, "not published by gridsight"),
        (_window(NOW - dt.timedelta(hours=1), NOW), {}, "not published by gridsight"),
        (_window(NOW - dt.timedelta(hours=1), NOW, devices=10_001), OURS, "10001 devices"),
        (SyncCompleted(connection_id="theirs", sync_id="s", sync_ended_at=NOW), OURS, "not ours"),
    ],
)
def test_refused_events_name_the_reason(settings: Settings, event, attributes, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvent, match=words):
        check_event(event, attributes, settings, now=NOW)


def test_a_window_ending_within_the_future_allowance_passes(settings: Settings) -> None:
    event = _window(NOW, NOW + dt.timedelta(hours=24))
    assert check_event(event, OURS, settings, now=NOW) == event
