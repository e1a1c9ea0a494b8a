"""Fixtures of the anomaly tests; the helpers live in anomaly_fleet.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alert_receiver import Receiver
from anomaly_fleet import FleetFactory, clean_fleet


@pytest.fixture
def fleet() -> FleetFactory:
    return clean_fleet


@pytest.fixture
def live_receiver() -> Iterator[Receiver]:
    """A started local webhook receiver, stopped after the test (no settings point at it)."""
    r = Receiver()
    r.thread.start()
    yield r
    r.stop()
