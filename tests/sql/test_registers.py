"""Register semantics by hand: a reset, a rollover at the declared maximum, a small correction.

Declared in shared/sql/staging/stg_meter_type.sql: single_phase registers wrap at 1e9 Wh; a decrease
to at most 50,000 Wh is a reset. Expected energies are the register arithmetic in the comments.
"""

from __future__ import annotations

import pandas as pd
import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from tests.sql.landing import land_rows, utc

READINGS = [
    # reset: 200 Wh, then the meter restarts from zero and has counted 150 Wh, then 250 Wh
    ("reset", "2026-03-01 00:15", 5_000_000, 800),
    ("reset", "2026-03-01 00:30", 5_000_200, 800),
    ("reset", "2026-03-01 00:45", 150, 600),
    ("reset", "2026-03-01 01:00", 400, 1000),
    # rollover at 1e9: 50 Wh, then 50 Wh up to the maximum + 30 Wh after it = 80, then 100
    ("rollover", "2026-03-01 00:15", 999_999_900, 200),
    ("rollover", "2026-03-01 00:30", 999_999_950, 200),
    ("rollover", "2026-03-01 00:45", 30, 320),
    ("rollover", "2026-03-01 01:00", 130, 400),
    # correction: 300 Wh, then the vendor's register steps back 1 Wh (energy unknown), then
    # 201 Wh counted from the corrected value, then 100 Wh
    ("correction", "2026-03-01 00:15", 50_000_000, 1200),
    ("correction", "2026-03-01 00:30", 50_000_300, 1200),
    ("correction", "2026-03-01 00:45", 50_000_299, 1200),
    ("correction", "2026-03-01 01:00", 50_000_500, 800),
    ("correction", "2026-03-01 01:15", 50_000_600, 400),
]
H0, H1 = utc("2026-03-01 00:00"), utc("2026-03-01 01:00")


@pytest.fixture
def modelled(settings: Settings) -> dict[str, pd.DataFrame]:
    devices = [{"device_id": d} for d in ("reset", "rollover", "correction")]
    land_rows(settings, devices=devices, readings=READINGS)
    refresh_features(settings)
    with open_warehouse(settings) as wh:
        return {
            "hourly": wh.query_df(
                "SELECT device_id, hour, energy_kwh, coverage FROM energy_analytics.hourly_consumption"
                " ORDER BY device_id, hour"
            ),
            "quality": wh.query_df("SELECT * FROM energy_analytics.data_quality ORDER BY device_id"),
            "readings": wh.query_df(
                "SELECT device_id, reading_at, energy_wh, register_event FROM energy_analytics.fct_reading"
            ),
        }


def _energy(modelled: dict[str, pd.DataFrame], device_id: str) -> dict[object, float]:
    rows = modelled["hourly"].query(f"device_id == '{device_id}'")
    return {r.hour.to_pydatetime(): r.energy_kwh for r in rows.itertuples()}


def test_reset_counts_the_new_value_and_conserves_energy(modelled: dict[str, pd.DataFrame]) -> None:
    assert _energy(modelled, "reset") == pytest.approx({H0: (200 + 150 + 250) / 1000})


def test_rollover_counts_modulo_the_declared_maximum(modelled: dict[str, pd.DataFrame]) -> None:
    assert _energy(modelled, "rollover") == pytest.approx({H0: (50 + 80 + 100) / 1000})


def test_small_correction_is_unknown_energy_not_a_spike(modelled: dict[str, pd.DataFrame]) -> None:
    assert _energy(modelled, "correction") == pytest.approx({H0: (300 + 201) / 1000, H1: 100 / 1000})
    hour0 = modelled["hourly"].query("device_id == 'correction'").iloc[0]
    # known: (00:15, 00:30] and (00:45, 01:00]; (00:30, 00:45] is unknown, 00:00-00:15 unread
    assert hour0["coverage"] == pytest.approx(30 / 60)
    assert modelled["hourly"]["energy_kwh"].max() < 1.0  # no 50 MWh interval anywhere


def test_each_register_event_gets_one_data_quality_row(modelled: dict[str, pd.DataFrame]) -> None:
    quality = modelled["quality"]
    got = {
        r.device_id: (r.reading_at.to_pydatetime(), r.check_name, r.severity, r.value, r.previous_value)
        for r in quality.itertuples()
    }
    assert len(quality) == 3
    assert got == {
        "correction": (utc("2026-03-01 00:45"), "register_correction", "warning", 50_000_299, 50_000_300),
        "reset": (utc("2026-03-01 00:45"), "register_reset", "info", 150, 5_000_200),
        "rollover": (utc("2026-03-01 00:45"), "register_rollover", "info", 30, 999_999_950),
    }
    energy = dict(zip(quality["device_id"], quality["energy_wh"], strict=True))
    assert energy["reset"] == pytest.approx(150)
    assert energy["rollover"] == pytest.approx(80)
    assert pd.isna(energy["correction"])
    assert all(quality["reason"].str.len() > 0)
