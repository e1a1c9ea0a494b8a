"""The staged model write on DuckDB: the same result as a MERGE with a delete scope, reading only the
window of a table laid out by `cluster`, never the whole history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.settings import Settings
from shared.warehouse import contract_for, open_warehouse
from shared.warehouse.duckdb import DuckDBWarehouse
from shared.warehouse.statements import staged_merge_sql
from tests.shared.warehouse.duckdb_scans import rows_scanned

DEVICES = 100
HOURS = 200 * 24
START = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = (START + timedelta(days=100, hours=10), START + timedelta(days=100, hours=13))
SCOPE = "t.hour >= @window_start AND t.hour < @window_end"
# The window's model output, derived from the table itself: in the first hour every device's
# energy becomes 2.0 (an update), in the second only devices 0-24 are still produced (the other 75
# rows must be deleted), the third is unchanged.
SOURCE = (
    "SELECT device_id, site_id, hour, avg_power_w, max_power_w,"
    " CASE WHEN hour = @window_start THEN 2.0 ELSE energy_kwh END AS energy_kwh,"
    " avg_temp_c, max_temp_c, occupancy_share, reading_count, coverage"
    " FROM energy_analytics.hourly_consumption"
    " WHERE hour >= @window_start AND hour < @window_end"
    " AND NOT (hour = TIMESTAMP_ADD(@window_start, INTERVAL 1 HOUR)"
    " AND CAST(SUBSTR(device_id, 2) AS INT64) >= 25)"
)


def _fill(wh: DuckDBWarehouse) -> None:
    """DEVICES x HOURS rows of energy 1.0, inserted newest hour first (the layout cluster repairs)."""
    wh.execute(
        "INSERT INTO energy_analytics.hourly_consumption (device_id, site_id, hour, energy_kwh,"
        " reading_count, coverage)"
        " SELECT CONCAT('d', CAST(d AS STRING)), 's1', TIMESTAMP_ADD(@start, INTERVAL h HOUR), 1.0, 4, 1.0"
        f" FROM UNNEST(GENERATE_ARRAY({HOURS - 1}, 0, -1)) AS h"
        f" CROSS JOIN UNNEST(GENERATE_ARRAY(0, {DEVICES - 1})) AS d",
        {"start": START},
    )


def _scanned(wh: DuckDBWarehouse, profile: Path, sql: str, params: dict[str, Any]) -> tuple[int, int]:
    """(affected rows, rows DuckDB's scans of hourly_consumption read) for one statement."""
    return rows_scanned(wh, profile, lambda: wh.execute(sql, params), "hourly_consumption")


def test_cluster_lays_rows_out_in_column_order(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        _fill(wh)
        wh.cluster("hourly_consumption", ["hour", "device_id"])
        conn = wh._conn
        out_of_order = conn.execute(
            "SELECT COUNT(*) FROM (SELECT hour, device_id, LAG(hour) OVER (ORDER BY rowid) AS ph,"
            " LAG(device_id) OVER (ORDER BY rowid) AS pd FROM energy_analytics.hourly_consumption)"
            " WHERE ph > hour OR (ph = hour AND pd > device_id)"
        ).fetchone()
        total = conn.execute("SELECT COUNT(*) FROM energy_analytics.hourly_consumption").fetchone()
    assert out_of_order == (0,)
    assert total == (DEVICES * HOURS,)


def test_staged_write_updates_deletes_in_scope_and_reads_only_the_window(
    settings: Settings, tmp_path: Path
) -> None:
    contract = contract_for("hourly_consumption")
    stage, upsert, delete, drop = staged_merge_sql(contract, SOURCE, SCOPE, match_scope=SCOPE)
    params = {"window_start": WINDOW[0], "window_end": WINDOW[1]}
    with open_warehouse(settings) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        _fill(wh)
        wh.cluster("hourly_consumption", ["hour", "device_id"])
        for run in range(2):
            wh.execute(stage, params)
            updated, upsert_read = _scanned(wh, tmp_path / "upsert.json", upsert, params)
            deleted, delete_read = _scanned(wh, tmp_path / "delete.json", delete, params)
            wh.execute(drop)
            if run == 0:  # 100 devices get energy 2.0 in the first hour; 75 rows of the second go
                assert (updated, deleted) == (DEVICES, DEVICES - 25)
            else:  # the same model output again changes nothing
                assert (updated, deleted) == (0, 0)
            # the window is 300 rows; a full scan would read all 480,000 (a row group is 122,880)
            assert upsert_read <= 2 * 122_880, upsert_read
            assert delete_read <= 2 * 122_880, delete_read
        rows = wh.query(
            "SELECT COUNT(*) AS n, SUM(energy_kwh) AS kwh FROM energy_analytics.hourly_consumption"
        ).to_pylist()[0]
    assert rows["n"] == DEVICES * HOURS - (DEVICES - 25)
    # every row 1.0 kWh, except the first window hour's 100 rows at 2.0
    assert rows["kwh"] == (DEVICES * HOURS - (DEVICES - 25)) * 1.0 + DEVICES * 1.0
