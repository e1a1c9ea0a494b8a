"""Fixtures for the model tests."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.sql.landing import land_fleet


@pytest.fixture
def landed(settings: Settings) -> Settings:
    land_fleet(settings)
    return settings
