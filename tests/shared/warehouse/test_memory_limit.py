"""The embedded warehouse's memory is bounded by `duckdb_memory_mb`, not by the fleet (#15): every
connection a service opens, writer or snapshot reader, runs under it, and work larger than it
spills to disk and still gives the right answer."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.base import Warehouse

# DuckDB reads "200MB" as 200,000,000 bytes and shows the limit in MiB: 200e6 / 2**20 = 190.7.
LIMIT_MB, SHOWN = 200, "190.7 MiB"


def _limit(wh: Warehouse) -> str:
    return str(wh.query("SELECT current_setting('memory_limit') AS m").to_pylist()[0]["m"])


def test_the_writer_and_the_snapshot_readers_run_under_the_configured_memory_limit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, duckdb_memory_mb=LIMIT_MB)
    with open_warehouse(settings) as wh:
        assert _limit(wh) == SHOWN
    with open_warehouse(settings, read_only=True) as reader:
        assert _limit(reader) == SHOWN


def test_work_larger_than_the_limit_spills_to_disk_and_gives_the_right_answer(tmp_path: Path) -> None:
    """2,000,000 distinct 32-character strings sorted and counted under a 128 MB limit: with
    spilling off (`temp_directory = ''`) the same query raises OutOfMemoryException."""
    n = 2_000_000
    settings = Settings(home=tmp_path, duckdb_memory_mb=128)
    with open_warehouse(settings) as wh:
        row = wh.query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT s) AS d, SUM(k) AS total FROM ("
            "  SELECT s, MOD(i, 1000) AS k FROM ("
            f"   SELECT TO_HEX(MD5(CAST(i AS STRING))) AS s, i FROM UNNEST(GENERATE_ARRAY(0, {n - 1})) AS i)"
            "  ORDER BY s)"
        ).to_pylist()[0]
    # i mod 1000 runs 0..999 two thousand times: 2,000 x (999 x 1,000 / 2).
    assert row == {"n": n, "d": n, "total": 2_000 * 999 * 1_000 // 2}
