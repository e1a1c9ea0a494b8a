"""Incremental refresh: equals a full rebuild after new data, late data, deletions and re-runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings
from tests.sql.landing import (
    DAYS,
    N_DEVICES,
    START,
    SYNC_1,
    assert_same_tables,
    full_rebuild_elsewhere,
    land,
    snapshot,
)


def test_without_raw_tables_refresh_reports_nothing_to_do(settings: Settings) -> None:
    result = refresh_features(settings)
    assert not result.has_changes
    assert "no raw tables" in (result.skipped_reason or "")


def test_first_refresh_builds_every_model(landed: Settings) -> None:
    result = refresh_features(landed)
    assert result.full
    hours = DAYS * 24
    assert result.rows_changed["hourly_consumption"] == N_DEVICES * hours
    assert result.rows_changed["fct_reading"] == N_DEVICES * hours * 4
    assert result.rows_changed["ml_features"] == N_DEVICES * hours
    assert result.rows_changed["dim_device"] == N_DEVICES
    assert len(result.device_ids) == N_DEVICES
    assert result.window_start == START
    assert result.window_end == START + timedelta(days=DAYS)


def test_rerun_changes_nothing(landed: Settings) -> None:
    refresh_features(landed)
    before = snapshot(landed)
    again = refresh_features(landed)
    assert not again.full
    assert not again.has_changes, again.rows_changed
    assert again.window_start is None
    assert_same_tables(before, snapshot(landed))
    assert not refresh_features(landed, full=True).has_changes


def test_energy_is_conserved_per_device(landed: Settings) -> None:
    refresh_features(landed)
    with open_warehouse(landed) as wh:
        hourly = wh.query_df(
            "SELECT device_id, SUM(energy_kwh) AS kwh"
            " FROM energy_analytics.hourly_consumption GROUP BY device_id"
        ).set_index("device_id")["kwh"]
        register = wh.query_df(
            "SELECT device_id, (MAX_BY(energy_wh, timestamp) - MIN_BY(energy_wh, timestamp)) / 1000 AS kwh"
            " FROM raw.reading GROUP BY device_id"
        ).set_index("device_id")["kwh"]
    assert len(hourly) == N_DEVICES
    for device, kwh in register.items():
        assert abs(hourly[device] - kwh) < 1e-6 * max(1.0, kwh), device


def test_incremental_after_new_data_equals_full_rebuild(landed: Settings, tmp_path: Path) -> None:
    refresh_features(landed)
    end = START + timedelta(days=DAYS)

    def next_day(raw: RawStore) -> None:
        ids = [f"dev-{i:05d}" for i in range(N_DEVICES)]
        rows = make_readings(ids, end, end + timedelta(days=1), start_registers=raw.last_registers(), seed=1)
        raw.upsert("reading", rows, SYNC_1 + timedelta(days=1))

    land(landed, next_day)
    result = refresh_features(landed)
    assert not result.full
    # the new day's 24 hours, and the last old hour: the 00:00 reading closes its last quarter
    assert result.rows_changed["hourly_consumption"] == N_DEVICES * (24 + 1)
    # a reading can close an interval reaching 24 h back, so those hours were recomputed too
    assert result.window_start == end - timedelta(hours=24)
    assert result.window_end == end + timedelta(days=1)
    assert_same_tables(snapshot(landed), full_rebuild_elsewhere(landed, tmp_path))


def test_late_readings_for_old_hours_are_picked_up(settings: Settings, tmp_path: Path) -> None:
    ids = [f"dev-{i:05d}" for i in range(N_DEVICES)]
    readings = make_readings(ids, START, START + timedelta(days=DAYS))
    late_hour = START + timedelta(hours=30)
    is_late = pc.and_(
        pc.equal(readings["device_id"], "dev-00002"),
        pc.and_(
            pc.greater_equal(readings["timestamp"], pa.scalar(late_hour, pa.timestamp("us", tz="UTC"))),
            pc.less(
                readings["timestamp"], pa.scalar(late_hour + timedelta(hours=2), pa.timestamp("us", "UTC"))
            ),
        ),
    )
    sites, devices = make_fleet(N_DEVICES)

    def first_sync(raw: RawStore) -> None:
        raw.upsert("site", sites, SYNC_1)
        raw.upsert("device", devices, SYNC_1)
        raw.upsert("reading", readings.filter(pc.invert(is_late)), SYNC_1)

    land(settings, first_sync)
    refresh_features(settings)
    land(settings, lambda raw: raw.upsert("reading", readings.filter(is_late), SYNC_1 + timedelta(hours=1)))
    result = refresh_features(settings)
    assert result.device_ids == ["dev-00002"]
    assert result.window_start == late_hour - timedelta(hours=24)
    # the gap (29:45, 32:00] was spread pro rata over hours 29-31: those three hours now hold
    # measured quarters instead (hour 29 gains the 30:00 reading's quarter)
    assert result.rows_changed["hourly_consumption"] == 3
    assert result.rows_changed["fct_reading"] == 8 + 1  # 8 late readings + the next one's interval energy
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))


def test_deleted_device_and_reading_leave_the_models(landed: Settings, tmp_path: Path) -> None:
    refresh_features(landed)
    later = SYNC_1 + timedelta(hours=2)

    def deletes(raw: RawStore) -> None:
        raw.delete("device", [{"device_id": "dev-00001"}], later)
        raw.delete("reading", [{"device_id": "dev-00003", "timestamp": START + timedelta(hours=5)}], later)

    land(landed, deletes)
    result = refresh_features(landed)
    assert result.device_ids == ["dev-00001", "dev-00003"]
    with open_warehouse(landed) as wh:
        for table in ("dim_device", "fct_reading", "hourly_consumption", "ml_features"):
            left = wh.query(
                f"SELECT COUNT(*) AS n FROM energy_analytics.{table} WHERE device_id = 'dev-00001'"
            )
            assert left.to_pylist() == [{"n": 0}], table
        hour = wh.query_df(
            "SELECT reading_count FROM energy_analytics.hourly_consumption"
            " WHERE device_id = 'dev-00003' AND hour = @h",
            {"h": START + timedelta(hours=4)},
        )
    # the 05:00 reading closed (04:45, 05:00], so hour 04 lost it
    assert hour["reading_count"].tolist() == [3]
    assert_same_tables(snapshot(landed), full_rebuild_elsewhere(landed, tmp_path))


def test_register_reset_gives_no_negative_energy(landed: Settings) -> None:
    reset_at = START + timedelta(days=DAYS)
    rows = make_readings(
        ["dev-00000"], reset_at, reset_at + timedelta(hours=2), start_registers={"dev-00000": 0.0}
    )
    land(landed, lambda raw: raw.upsert("reading", rows, SYNC_1))
    refresh_features(landed)
    with open_warehouse(landed) as wh:
        first = wh.query_df(
            "SELECT energy_wh, is_register_reset FROM energy_analytics.fct_reading"
            " WHERE device_id = 'dev-00000' AND reading_at = @t",
            {"t": reset_at},
        )
        negatives = wh.query("SELECT COUNT(*) AS n FROM energy_analytics.fct_reading WHERE energy_wh < 0")
    assert first["is_register_reset"].tolist() == [True]
    assert first["energy_wh"].iloc[0] == rows["energy_wh"][0].as_py()
    assert negatives.to_pylist() == [{"n": 0}]


def test_a_reading_synced_again_with_new_values_replaces_the_modelled_one(
    landed: Settings, tmp_path: Path
) -> None:
    """The vendor corrects a reading already modelled: the same key comes again with a new register.

    An incremental refresh reads the unchanged readings around it from fct_reading, not from raw; the
    corrected row must win over its modelled copy, and the next reading's interval must count from it.
    """
    refresh_features(landed)
    at = START + timedelta(hours=10)
    with open_warehouse(landed) as wh:  # the register at 09:45, 10:00 and 10:15 as first synced
        registers = wh.query_df(
            "SELECT energy_wh FROM raw.reading WHERE device_id = 'dev-00004'"
            " AND timestamp BETWEEN @a AND @b ORDER BY timestamp",
            {"a": at - timedelta(minutes=15), "b": at + timedelta(minutes=15)},
        )["energy_wh"].tolist()
    corrected = registers[0] + 10.0  # 10 Wh in the quarter to 10:00 instead of the measured amount
    row = pa.table(
        {
            "device_id": ["dev-00004"],
            "timestamp": pa.array([at], pa.timestamp("us", tz="UTC")),
            "power_w": [40.0],
            "energy_wh": [corrected],
            "voltage": [230.0],
            "temp_c": [20.0],
            "occupancy": [True],
            "received_at": pa.array([SYNC_1 + timedelta(hours=3)], pa.timestamp("us", tz="UTC")),
        }
    )
    land(landed, lambda raw: raw.upsert("reading", row, SYNC_1 + timedelta(hours=3)))
    result = refresh_features(landed)
    assert not result.full
    assert result.device_ids == ["dev-00004"]
    with open_warehouse(landed) as wh:
        got = wh.query_df(
            "SELECT reading_at, power_w, energy_wh FROM energy_analytics.fct_reading"
            " WHERE device_id = 'dev-00004' AND reading_at IN (@a, @b) ORDER BY reading_at",
            {"a": at, "b": at + timedelta(minutes=15)},
        )
    assert got["power_w"].iloc[0] == 40.0
    assert got["energy_wh"].tolist() == pytest.approx([10.0, registers[2] - corrected])
    assert_same_tables(snapshot(landed), full_rebuild_elsewhere(landed, tmp_path))


def test_a_removed_device_that_comes_back_gets_its_readings_back(landed: Settings, tmp_path: Path) -> None:
    """Removal drops a device's modelled readings; its raw readings stay, synced long ago. When the
    vendor lists it again, the refresh must model them from raw, as a full rebuild does."""
    refresh_features(landed)
    _, fleet = make_fleet(N_DEVICES)
    land(landed, lambda raw: raw.delete("device", [{"device_id": "dev-00002"}], SYNC_1 + timedelta(hours=1)))
    refresh_features(landed)
    back = fleet.filter(pc.equal(fleet["device_id"], "dev-00002"))
    land(landed, lambda raw: raw.upsert("device", back, SYNC_1 + timedelta(hours=2)))
    result = refresh_features(landed)
    assert result.device_ids == ["dev-00002"]
    with open_warehouse(landed) as wh:
        n = wh.query(
            "SELECT COUNT(*) AS n FROM energy_analytics.fct_reading WHERE device_id = 'dev-00002'"
        ).to_pylist()[0]["n"]
    assert n == DAYS * 96  # every quarter-hour of the landed days
    assert_same_tables(snapshot(landed), full_rebuild_elsewhere(landed, tmp_path))
