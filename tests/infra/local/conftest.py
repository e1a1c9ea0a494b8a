"""Fixtures for the local runtime tests (helpers live in loopback.py)."""

from __future__ import annotations

import pytest

from shared.settings import Settings


@pytest.fixture
def fast_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Backoff in milliseconds and few attempts, also for child processes (via the environment)."""
    for name, value in {
        "GRIDSIGHT_BUS_MIN_BACKOFF_S": "0.02",
        "GRIDSIGHT_BUS_MAX_BACKOFF_S": "0.1",
        "GRIDSIGHT_BUS_MAX_DELIVERY_ATTEMPTS": "5",
        "GRIDSIGHT_DISPATCHER_POLL_S": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()
