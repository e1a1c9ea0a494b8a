"""Raw fixtures for the model tests: a small fleet landed the way `fivetran debug` lands it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

START = datetime(2026, 3, 1, tzinfo=UTC)
SYNC_1 = datetime(2026, 3, 4, 0, 5, tzinfo=UTC)
N_DEVICES = 6
DAYS = 3


def land(settings: Settings, write: Callable[[RawStore], None]) -> None:
    """One 'sync': open the raw file, write, close (the connector never overlaps a refresh)."""
    with RawStore(settings.raw_duckdb_path) as raw:
        write(raw)


def land_fleet(settings: Settings, *, days: int = DAYS, synced_at: datetime = SYNC_1) -> None:
    sites, devices = make_fleet(N_DEVICES)
    readings = make_readings(devices["device_id"].to_pylist(), START, START + timedelta(days=days))

    def write(raw: RawStore) -> None:
        raw.upsert("site", sites, synced_at)
        raw.upsert("device", devices, synced_at)
        raw.upsert("reading", readings, synced_at)

    land(settings, write)


def snapshot(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every model table, sorted by its key, for comparisons."""
    frames = {}
    with open_warehouse(settings) as wh:
        for name, contract in load_contracts().items():
            if not contract.is_model:
                continue
            key = ", ".join(contract.unique_key)
            frames[name] = wh.query_df(f"SELECT * FROM energy_analytics.{name} ORDER BY {key}")
    return frames


def assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        a = left[name].drop(columns=["synced_at"], errors="ignore").reset_index(drop=True)
        b = right[name].drop(columns=["synced_at"], errors="ignore").reset_index(drop=True)
        assert len(a) == len(b), f"{name}: {len(a)} rows vs {len(b)}"
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)


def full_rebuild_elsewhere(settings: Settings, tmp_path: Path) -> dict[str, pd.DataFrame]:
    """The same raw file, modelled from scratch in a fresh home with a full refresh."""
    from shared.refresh import refresh_features

    other = Settings(home=tmp_path / "rebuild-home")
    other.raw_duckdb_path.parent.mkdir(parents=True)
    shutil.copy(settings.raw_duckdb_path, other.raw_duckdb_path)
    refresh_features(other, full=True)
    return snapshot(other)


@pytest.fixture
def landed(settings: Settings) -> Settings:
    land_fleet(settings)
    return settings
