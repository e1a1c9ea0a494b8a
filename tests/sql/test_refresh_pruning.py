"""What keeps a refresh's cost with the new data, not the history: restricted passes read only their
devices, and a full rebuild leaves the incremental models laid out by time (DuckDB's zone maps)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from shared.refresh import (
    RAW_RESTRICT_COLUMNS,
    _model_source,
    _model_staged_sql,
    _restrict_column,
    refresh_features,
)
from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.dialect import parse_one_statement
from shared.warehouse.duckdb import DuckDBWarehouse
from shared.warehouse.rawfixture import RawStore, make_readings
from tests.googlesql import connector_schema
from tests.sql.landing import DAYS, N_DEVICES, START, SYNC_1, land

INCREMENTAL = [c.table for c in load_contracts().values() if c.is_model and c.materialization != "full"]


def test_raw_restrict_columns_are_the_connectors_columns() -> None:
    schema = connector_schema()
    for table, columns in RAW_RESTRICT_COLUMNS.items():
        assert set(columns) <= set(schema[table]), table


@pytest.mark.parametrize("table", INCREMENTAL)
def test_a_restricted_pass_reads_only_its_devices(table: str) -> None:
    contract = load_contracts()[table]
    column = _restrict_column(contract)
    assert column is not None
    source, scope = _model_source(table, column)
    assert scope is not None
    assert f"t.{column} IN UNNEST(@restrict)" in scope
    reads = [
        t for t in parse_one_statement(source).find_all(exp.Table) if t.db in ("raw", "energy_analytics")
    ]
    restricted = 0
    for read in reads:
        has_column = (
            column in RAW_RESTRICT_COLUMNS.get(read.name, ())
            if read.db == "raw"
            else column in load_contracts()[read.name].columns
        )
        if not has_column:
            continue
        where = read.find_ancestor(exp.Select).args.get("where")
        params = {p.name for p in where.find_all(exp.Parameter)} if where else set()
        assert "restrict" in params, f"{table} reads {read.db}.{read.name} for every {column}"
        restricted += 1
    assert restricted >= 1
    if table == "fct_reading":  # the reading table itself, the one that grows with history
        assert any(r.db == "raw" and r.name == "reading" for r in reads)


@pytest.mark.parametrize("shuffled", [False, True])
def test_full_rebuild_lays_the_incremental_models_out_by_time(landed: Settings, shuffled: bool) -> None:
    """Into empty tables a full rebuild inserts sorted; into filled ones it rewrites them sorted."""
    refresh_features(landed, full=True)
    if shuffled:  # tables in no useful order, as a MERGE or years of late data leave them
        with open_warehouse(landed) as wh:
            assert isinstance(wh, DuckDBWarehouse)
            for table in INCREMENTAL:
                name = f"energy_analytics.{table}"
                wh._conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name} ORDER BY random()")
        refresh_features(landed, full=True)
    with open_warehouse(landed) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        conn = wh._conn  # physical row order is DuckDB's own (rowid), not part of the adapter
        for table in INCREMENTAL:
            contract = load_contracts()[table]
            time, *cluster = [contract.time_column, *contract.cluster_by]
            later = f"previous_time > {time}"
            if cluster:
                later += f" OR (previous_time = {time} AND previous_key > {cluster[0]})"
            key = cluster[0] if cluster else time
            rows, out_of_order = conn.execute(
                f"SELECT COUNT(*), COUNT(*) FILTER (WHERE {later}) FROM ("
                f"SELECT {time}, {key}, LAG({time}) OVER (ORDER BY rowid) AS previous_time,"
                f" LAG({key}) OVER (ORDER BY rowid) AS previous_key FROM energy_analytics.{table})"
            ).fetchone()
            assert out_of_order == 0, table
            assert rows > 0 or table == "data_quality", table


def test_an_incremental_refresh_reads_from_raw_only_the_readings_synced_since_the_last(
    landed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fct_reading's stage, profiled inside a real refresh: raw reading rows leave the scan only if
    synced after the last refresh. Raw is laid out in sync order, so its `timestamp` alone prunes
    nothing; reading the window's older readings from raw made every refresh read all of it.

    The fleet: 6 meters, 3 days at 15 minutes; one more day lands (6 x 96 = 576 readings). The
    model reads the new day and the 24 hours before it (each reading's previous one): 1,152
    readings, of which raw supplies the 576 new ones and fct_reading the 576 of the day before.
    """
    refresh_features(landed)
    end = START + timedelta(days=DAYS)
    ids = [f"dev-{i:05d}" for i in range(N_DEVICES)]

    def next_day(raw: RawStore) -> None:
        rows = make_readings(ids, end, end + timedelta(days=1), start_registers=raw.last_registers(), seed=1)
        raw.upsert("reading", rows, SYNC_1 + timedelta(days=1))

    land(landed, next_day)
    stage = _model_staged_sql("fct_reading", "device_id")[0]
    profile = tmp_path / "stage.json"
    profiled: list[dict[str, int]] = []
    execute = DuckDBWarehouse.execute

    def profiling_execute(self: DuckDBWarehouse, sql: str, params: object = None) -> int:
        if sql != stage:
            return execute(self, sql, params)  # type: ignore[arg-type]
        self._conn.execute("PRAGMA enable_profiling = 'json'")
        self._conn.execute(f"SET profiling_output = '{profile}'")
        try:
            return execute(self, sql, params)  # type: ignore[arg-type]
        finally:
            self._conn.execute("PRAGMA disable_profiling")
            profiled.append(_rows_out_of_scans(json.loads(profile.read_text())))

    monkeypatch.setattr(DuckDBWarehouse, "execute", profiling_execute)
    result = refresh_features(landed)
    assert not result.full
    assert result.rows_changed["fct_reading"] == 576  # the day before stays as it was
    assert len(profiled) == 1
    assert profiled[0]["reading"] == 576
    assert profiled[0]["fct_reading"] == 6 * 96


def _rows_out_of_scans(node: dict[str, Any]) -> dict[str, int]:
    """Rows each table scan passed on (after the filters DuckDB pushes into the scan)."""
    out: dict[str, int] = {}
    table = node.get("extra_info", {}).get("Table")
    if node.get("operator_type") == "TABLE_SCAN" and table:
        name = str(table).rsplit(".", 1)[-1]
        out[name] = out.get(name, 0) + int(node.get("operator_cardinality", 0))
    for child in node.get("children", []):
        for name, n in _rows_out_of_scans(child).items():
            out[name] = out.get(name, 0) + n
    return out
