"""Fixtures every test area shares: settings pointed at a temporary home, the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT, Settings

os.environ.setdefault("DO_NOT_TRACK", "1")

# bqemulator (`bqemu_endpoint`), Pub/Sub and Cloud Storage emulators as session fixtures
pytest_plugins = ["tests.emulator", "tests.cloud_emulators"]

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose state folder is private to the test; child processes inherit it via env."""
    home = tmp_path / "gridsight-home"
    home.mkdir()
    monkeypatch.setenv("GRIDSIGHT_HOME", str(home))
    return Settings()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA}")
    return SHARED_DATA
