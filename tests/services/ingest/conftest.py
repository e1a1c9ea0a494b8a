"""Fixtures for the ingest tests (the raw-table writer lives in raw_landing.py)."""

from __future__ import annotations

import pytest
from raw_landing import LandRaw, land


@pytest.fixture
def land_raw() -> LandRaw:
    return land
