"""`stage_by_device` on DuckDB: a range's rows once, sorted by device, so a reader going through
them a device chunk at a time (anomaly scoring) reads its chunk's row groups, not the fleet's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.duckdb import DuckDBWarehouse
from tests.shared.warehouse.duckdb_scans import rows_scanned

DEVICES = 100
HOURS = 200 * 24
START = datetime(2026, 1, 1, tzinfo=UTC)
RANGE = {"since": START + timedelta(days=20), "until": START + timedelta(days=170)}
RANGE_HOURS = 150 * 24  # 360,000 rows of the range: three row groups of 122,880
SQL = (
    "SELECT device_id, hour, energy_kwh FROM energy_analytics.hourly_consumption"
    " WHERE hour >= @since AND hour < @until"
)
CHUNK = [f"d{n:03d}" for n in range(40, 50)]
CHUNK_SQL = "SELECT * FROM {table} WHERE device_id BETWEEN @first AND @last AND device_id IN UNNEST(@ids)"


def _fill(wh: DuckDBWarehouse) -> None:
    """DEVICES x HOURS rows, energy = the device's number, laid out by hour as the refresh leaves it."""
    wh.execute(
        "INSERT INTO energy_analytics.hourly_consumption (device_id, site_id, hour, energy_kwh,"
        " reading_count, coverage)"
        " SELECT CONCAT('d', LPAD(CAST(d AS STRING), 3, '0')), 's1',"
        " TIMESTAMP_ADD(@start, INTERVAL h HOUR), d, 4, 1.0"
        f" FROM UNNEST(GENERATE_ARRAY(0, {HOURS - 1})) AS h"
        f" CROSS JOIN UNNEST(GENERATE_ARRAY(0, {DEVICES - 1})) AS d",
        {"start": START},
    )
    wh.cluster("hourly_consumption", ["hour", "device_id"])


def test_a_device_chunk_of_the_staged_range_has_its_rows_and_reads_only_its_row_groups(
    settings: Settings, tmp_path: Path
) -> None:
    with open_warehouse(settings) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        _fill(wh)
        table = wh.stage_by_device(SQL, RANGE)
        params = {"first": CHUNK[0], "last": CHUNK[-1], "ids": CHUNK}
        chunk_sql = CHUNK_SQL.format(table=table)
        rows, scanned = rows_scanned(wh, tmp_path / "p.json", lambda: wh.query(chunk_sql, params))
        count = f"SELECT COUNT(*) AS n, COUNT(DISTINCT device_id) AS d FROM {table}"
        everything = wh.query(count).to_pylist()
        direct_sql, direct_params = SQL + " AND device_id IN UNNEST(@ids)", {**RANGE, "ids": CHUNK}
        direct, direct_scanned = rows_scanned(
            wh, tmp_path / "q.json", lambda: wh.query(direct_sql, direct_params)
        )
    assert everything == [{"n": DEVICES * RANGE_HOURS, "d": DEVICES}]  # the whole range, once
    got = rows.to_pandas()
    assert len(got) == len(CHUNK) * RANGE_HOURS  # every hour of the range for each of the chunk's devices
    assert sorted(got["device_id"].unique()) == CHUNK
    assert (got["energy_kwh"] == got["device_id"].str[1:].astype(float)).all()
    assert (
        got.sort_values(["device_id", "hour"])
        .reset_index(drop=True)
        .equals(direct.to_pandas().sort_values(["device_id", "hour"]).reset_index(drop=True))
    )
    # 36,000 rows wanted: of the sorted copy's three row groups it reads at most two; of the table
    # laid out by hour, every row of the range (360,000 of 480,000) at least
    assert scanned <= 2 * 122_880
    assert direct_scanned >= DEVICES * RANGE_HOURS


def test_the_staging_cap_is_a_share_for_each_connection_open_to_the_file(settings: Settings) -> None:
    """Connections of one process to one file share one DuckDB instance and its memory limit, so
    a copy staged while three connections are open caps the instance at three shares."""
    with open_warehouse(settings) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        _fill(wh)
    path = settings.duckdb_path
    readers = [DuckDBWarehouse(path, settings.raw_duckdb_path, read_only=True) for _ in range(3)]
    try:
        readers[0].stage_by_device(SQL, RANGE, memory_mb=100)
        shown = readers[2].query("SELECT current_setting('memory_limit') AS m").to_pylist()[0]["m"]
    finally:
        for r in readers:
            r.close()
    probe = duckdb.connect()
    probe.execute("SET memory_limit = '300MB'")  # 3 x 100 MB, as DuckDB itself displays it
    assert shown == probe.execute("SELECT current_setting('memory_limit')").fetchone()[0]
