"""How many rows DuckDB's table scans read for one statement, from DuckDB's own JSON profile: the
warehouse tests' proof that a query skipped the row groups it should."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shared.warehouse.duckdb import DuckDBWarehouse

T = TypeVar("T")


def rows_scanned(
    wh: DuckDBWarehouse, profile: Path, run: Callable[[], T], table: str | None = None
) -> tuple[T, int]:
    """(what `run()` returned, rows read by the table scans it made; of `table` only, if given)."""
    conn = wh._conn  # the profile is DuckDB's own; the adapter does not expose it
    conn.execute("PRAGMA enable_profiling = 'json'")
    conn.execute(f"SET profiling_output = '{profile}'")
    try:
        result = run()
    finally:
        conn.execute("PRAGMA disable_profiling")
    scanned = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal scanned
        if node.get("operator_type") == "TABLE_SCAN" and (
            table is None or table in str(node.get("extra_info", {}).get("Table", ""))
        ):
            scanned += int(node["operator_rows_scanned"])
        for child in node.get("children", []):
            walk(child)

    walk(json.loads(profile.read_text()))
    return result, scanned
