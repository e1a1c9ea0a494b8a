"""Bounded refresh windows: per-device windows, a plausible time range and a maximum span, with
incremental still equal to a full rebuild wherever the bounds do not deliberately leave data out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from shared.refresh import MAX_PASSES, RefreshResult, refresh_features
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

IDS = [f"dev-{i:05d}" for i in range(N_DEVICES)]
END = START + timedelta(days=DAYS)
TS = pa.timestamp("us", tz="UTC")


def _between(rows: pa.Table, device: str, start: datetime, end: datetime) -> pa.ChunkedArray:
    return pc.and_(
        pc.equal(rows["device_id"], device),
        pc.and_(
            pc.greater_equal(rows["timestamp"], pa.scalar(start, TS)),
            pc.less(rows["timestamp"], pa.scalar(end, TS)),
        ),
    )


def _first_sync(settings: Settings, readings: pa.Table) -> None:
    sites, devices = make_fleet(N_DEVICES)

    def write(raw: RawStore) -> None:
        raw.upsert("site", sites, SYNC_1)
        raw.upsert("device", devices, SYNC_1)
        raw.upsert("reading", readings, SYNC_1)

    land(settings, write)


def _energy(settings: Settings, device: str, hour: datetime) -> float | None:
    with open_warehouse(settings, read_only=True) as wh:
        rows = wh.query(
            "SELECT energy_kwh FROM energy_analytics.hourly_consumption WHERE device_id = @d AND hour = @h",
            {"d": device, "h": hour},
        ).to_pylist()
    return rows[0]["energy_kwh"] if rows else None


def _set_energy(settings: Settings, device: str, hour: datetime, kwh: float) -> None:
    with open_warehouse(settings) as wh:
        wh.execute(
            "UPDATE energy_analytics.hourly_consumption SET energy_kwh = @kwh"
            " WHERE device_id = @d AND hour = @h",
            {"kwh": kwh, "d": device, "h": hour},
        )


def _late_data_for_one_device(settings: Settings, *, marker: tuple[str, datetime] | None) -> RefreshResult:
    """Three days for every device but two hours of dev-00002; then those two hours and a new day.

    `marker`: an old hour of another device overwritten in between (-1 kWh): recomputing it would
    restore it. It spreads into that device's aggregates, so the equality check runs without it."""
    readings = make_readings(IDS, START, END)
    late_hour = START + timedelta(hours=30)
    is_late = _between(readings, "dev-00002", late_hour, late_hour + timedelta(hours=2))
    _first_sync(settings, readings.filter(pc.invert(is_late)))
    refresh_features(settings)
    if marker is not None:
        assert _energy(settings, *marker) is not None
        _set_energy(settings, *marker, -1.0)

    def second_sync(raw: RawStore) -> None:
        new_day = make_readings(
            IDS, END, END + timedelta(days=1), start_registers=raw.last_registers(), seed=3
        )
        raw.upsert(
            "reading", pa.concat_tables([readings.filter(is_late), new_day]), SYNC_1 + timedelta(days=1)
        )

    land(settings, second_sync)
    return refresh_features(settings)


def test_late_data_for_one_device_does_not_recompute_the_others(settings: Settings) -> None:
    late_hour = START + timedelta(hours=30)
    marker = "dev-00004", late_hour  # another site's device, same hour
    result = _late_data_for_one_device(settings, marker=marker)
    assert not result.full
    assert _energy(settings, *marker) == -1.0, "another device's old hours were recomputed"
    assert result.device_ids == IDS
    # the announcement is the hull of the device windows, and hourly_consumption's window reaches
    # 24 h back (propagates_back_hours: a late reading may close an interval that began up to 24 h before)
    assert result.window_start == late_hour - timedelta(hours=24)
    assert result.window_end == END + timedelta(days=1)
    # dev-00002: the 2 late hours + the hour before them (the first late reading closes the interval
    # that ends its missing quarter); every device: the new day + the old last hour, whose final
    # quarter-hour the new day's first reading closes
    assert result.rows_changed["hourly_consumption"] == 3 + N_DEVICES * 24 + N_DEVICES
    assert result.passes == 2


def test_late_data_for_one_device_still_equals_a_full_rebuild(settings: Settings, tmp_path: Path) -> None:
    _late_data_for_one_device(settings, marker=None)
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))


def test_readings_dated_1970_and_2099_cannot_widen_the_window(settings: Settings, tmp_path: Path) -> None:
    _first_sync(settings, make_readings(IDS, START, END))
    refresh_features(settings)

    def buggy_vendor(raw: RawStore) -> None:
        new_day = make_readings(
            IDS, END, END + timedelta(days=1), start_registers=raw.last_registers(), seed=3
        )
        outliers = make_readings(
            ["dev-00000"], datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 15, tzinfo=UTC)
        )
        future = make_readings(
            ["dev-00000"], datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, 0, 15, tzinfo=UTC)
        )
        raw.upsert("reading", pa.concat_tables([new_day, outliers, future]), SYNC_1 + timedelta(days=1))

    land(settings, buggy_vendor)
    result = refresh_features(settings)
    assert result.implausible_readings == 2
    # the new day, and hourly_consumption's 24 h look-back (its first reading closes the old last hour)
    assert result.window_start == END - timedelta(hours=24)
    assert result.window_end == END + timedelta(days=1)
    with open_warehouse(settings, read_only=True) as wh:
        span = wh.query(
            "SELECT MIN(reading_at) AS first, MAX(reading_at) AS last FROM energy_analytics.fct_reading"
        ).to_pylist()[0]
    assert span["first"] == START
    assert span["last"] == END + timedelta(days=1) - timedelta(minutes=15)
    # a full rebuild leaves them out too, so the two paths still agree
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))


def test_changes_older_than_the_maximum_window_are_reported_not_recomputed(settings: Settings) -> None:
    readings = make_readings(IDS, START, END)
    late_hour = START + timedelta(hours=5)
    is_late = _between(readings, "dev-00002", late_hour, late_hour + timedelta(hours=1))
    _first_sync(settings, readings.filter(pc.invert(is_late)))
    short = settings.model_copy(update={"refresh_max_window_days": 1.5})
    refresh_features(short)
    # the missing hour holds its share of the interval spanning the gap, spread pro rata
    spread = _energy(short, "dev-00002", late_hour)

    def second_sync(raw: RawStore) -> None:
        new_day = make_readings(
            IDS, END, END + timedelta(days=1), start_registers=raw.last_registers(), seed=3
        )
        raw.upsert(
            "reading", pa.concat_tables([readings.filter(is_late), new_day]), SYNC_1 + timedelta(days=1)
        )

    land(short, second_sync)
    result = refresh_features(short)
    assert result.too_old_devices == ["dev-00002"]
    # the newest changed hour ends at 03-05 00:00, so the window reaches back 36 h to 03-03 12:00
    assert result.window_start == datetime(2026, 3, 3, 12, tzinfo=UTC)
    assert result.window_end == END + timedelta(days=1)
    assert _energy(short, "dev-00002", late_hour) == spread  # not recomputed ...
    refresh_features(short, full=True)
    assert _energy(short, "dev-00002", late_hour) != spread  # ... until a full rebuild


def test_re_sent_unchanged_devices_do_not_recompute_their_history(settings: Settings, tmp_path: Path) -> None:
    """The connector upserts every device on every sync; only a dim_device change counts."""
    _first_sync(settings, make_readings(IDS, START, END))
    refresh_features(settings)
    _, devices = make_fleet(N_DEVICES)

    def next_sync(raw: RawStore) -> None:
        raw.upsert("device", devices, SYNC_1 + timedelta(days=1))
        new_day = make_readings(
            IDS, END, END + timedelta(days=1), start_registers=raw.last_registers(), seed=3
        )
        raw.upsert("reading", new_day, SYNC_1 + timedelta(days=1))

    land(settings, next_sync)
    result = refresh_features(settings)
    assert result.window_start == END - timedelta(hours=24)  # the new day and its 24 h look-back
    renamed = devices.set_column(
        devices.schema.get_field_index("name"),
        "name",
        pa.array([f"Meter {i}" if i else "Renamed" for i in range(N_DEVICES)]),
    )
    land(settings, lambda raw: raw.upsert("device", renamed, SYNC_1 + timedelta(days=2)))
    result = refresh_features(settings)
    assert result.device_ids == ["dev-00000"]  # a real change: that device's whole history
    assert result.window_start == START
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))


def test_many_distinct_device_windows_share_a_bounded_number_of_passes(
    settings: Settings, tmp_path: Path
) -> None:
    readings = make_readings(IDS, START, END)
    late = [
        _between(readings, d, START + timedelta(hours=6 + 7 * i), START + timedelta(hours=7 + 7 * i))
        for i, d in enumerate(IDS)
    ]
    any_late = late[0]
    for mask in late[1:]:
        any_late = pc.or_(any_late, mask)
    _first_sync(settings, readings.filter(pc.invert(any_late)))
    refresh_features(settings)
    land(settings, lambda raw: raw.upsert("reading", readings.filter(any_late), SYNC_1 + timedelta(hours=1)))
    assert N_DEVICES > MAX_PASSES  # more distinct windows than passes: some are merged
    result = refresh_features(settings)
    assert result.device_ids == IDS
    assert result.passes == MAX_PASSES
    assert_same_tables(snapshot(settings), full_rebuild_elsewhere(settings, tmp_path))
