"""Fixtures of the anomaly tests; the helpers live in anomaly_fleet.py."""

from __future__ import annotations

import pytest
from anomaly_fleet import FleetFactory, clean_fleet


@pytest.fixture
def fleet() -> FleetFactory:
    return clean_fleet
