"""What keeps a refresh's cost with the new data, not the history: restricted passes read only their
devices, and a full rebuild leaves the incremental models laid out by time (DuckDB's zone maps)."""

from __future__ import annotations

import pytest
from sqlglot import exp

from shared.refresh import RAW_RESTRICT_COLUMNS, _model_source, _restrict_column, refresh_features
from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.dialect import parse_one_statement
from shared.warehouse.duckdb import DuckDBWarehouse
from tests.googlesql import connector_schema

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
