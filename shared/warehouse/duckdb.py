"""The embedded warehouse: modelled tables in one DuckDB file, the connector's raw file attached read-only.

Opened per unit of work under the inter-process lock (see `open_warehouse`) and closed after it,
because DuckDB lets one process at a time hold a file for writing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from shared.errors import NotFound, TransientError
from shared.warehouse import _rows
from shared.warehouse.base import Params
from shared.warehouse.contracts import contract_for, load_contracts
from shared.warehouse.dialect import TableMap, transpile
from shared.warehouse.statements import create_table_sql, merge_sql

__all__ = ["RAW_SCHEMA", "DuckDBWarehouse"]

RAW_SCHEMA = "tester"  # where `fivetran debug` writes the connector's tables
# One staged copy at a time per process, and the open connections per file, which share one
# DuckDB instance and its memory limit (`DuckDBWarehouse.stage_by_device`).
_STAGING = threading.Lock()
_OPEN: Counter[str] = Counter()
_OPEN_GUARD = threading.Lock()
_RAW_CATALOG = "raw_src"
_MERGE_SOURCE = "_gridsight_merge_source"
TABLE_MAP = TableMap.of(
    {
        "raw": (_RAW_CATALOG, RAW_SCHEMA),
        "energy_analytics": (None, "energy_analytics"),
    }
)


class DuckDBWarehouse:
    backend = "duckdb"

    def __init__(
        self, path: Path, raw_path: Path, *, read_only: bool = False, memory_mb: int | None = None
    ) -> None:
        """`memory_mb`: the memory limit of the file's DuckDB instance in this process, set by the
        connection that opens it (later ones share it; `stage_by_device` sets its own while it
        copies, `memory_mb` there per open connection, and leaves it so). None
        leaves DuckDB's default, 80 % of RAM, under which the full refresh of 10,000 meters x 7 days
        peaked at 2.6 GB (docs/scaling.md, finding 21)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            raise TransientError(f"warehouse file {path} is busy: {exc}") from exc
        # Timestamps are UTC everywhere; DuckDB would otherwise truncate hours in the host's zone.
        self._conn.execute("SET TimeZone = 'UTC'")
        self._raw_path = raw_path
        self._raw_attached = False
        self._read_only = read_only
        self._staged = 0  # temporary tables made by stage_by_device
        self._file = str(path.resolve())
        self._open = True
        with _OPEN_GUARD:
            first = _OPEN[self._file] == 0
            _OPEN[self._file] += 1
            if first and memory_mb is not None:
                self._set_memory_limit(memory_mb)

    # --- the Warehouse protocol ---------------------------------------------------------------
    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        return self._run(sql, params).to_arrow_table()

    def query_df(self, sql: str, params: Params | None = None) -> pd.DataFrame:
        return self.query(sql, params).to_pandas()

    def execute(self, sql: str, params: Params | None = None) -> int:
        rows = self._run(sql, params).fetchall()
        return int(rows[0][0]) if rows and rows[0] and isinstance(rows[0][0], int) else 0

    def merge(self, table: str, rows: pa.Table | pd.DataFrame, key: Sequence[str]) -> int:
        contract = contract_for(table)
        arrow = _rows.to_arrow(rows)
        columns = _rows.merge_columns(contract, arrow, key)
        if arrow.num_rows == 0:
            return 0
        casts = ", ".join(f"CAST({c} AS {contract.columns[c]}) AS {c}" for c in columns)
        source = f"SELECT {casts} FROM {_MERGE_SOURCE}"
        self._conn.register(_MERGE_SOURCE, arrow)
        try:
            return self.execute(merge_sql(contract, source, columns=columns, key=key))
        finally:
            self._conn.unregister(_MERGE_SOURCE)

    def table_exists(self, table: str) -> bool:
        dataset, _, name = table.rpartition(".")
        if dataset == "raw":
            if not self._attach_raw(required=False):
                return False
            catalog, schema = _RAW_CATALOG, RAW_SCHEMA
        elif dataset == "energy_analytics":
            catalog, schema = self._main_catalog(), "energy_analytics"
        else:
            raise ValueError(f"table must be raw.<name> or energy_analytics.<name>, got {table!r}")
        found = self._conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
            [catalog, schema, name],
        ).fetchone()
        return bool(found and found[0])

    def close(self) -> None:
        self._conn.close()
        if self._open:
            self._open = False
            with _OPEN_GUARD:
                _OPEN[self._file] -= 1
                if _OPEN[self._file] <= 0:
                    del _OPEN[self._file]

    def limit_threads(self, threads: int) -> None:
        """Cap this connection's worker threads (a long refresh leaves a core to the readers)."""
        self._conn.execute(f"SET threads = {max(1, int(threads))}")

    def cluster(self, table: str, columns: Sequence[str]) -> None:
        """Rewrite an energy_analytics table sorted by `columns`, so range predicates on the first
        skip row groups by their min/max (the refresh does this after a full rebuild)."""
        contract = contract_for(table)
        unknown = [c for c in columns if c not in contract.columns]
        if unknown:
            raise ValueError(f"cannot cluster {table} by unknown columns {unknown}")
        name = f"energy_analytics.{contract.table}"
        # the table has no constraints or defaults (create_table_sql), so the copy is the same table
        self._conn.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name} ORDER BY {', '.join(columns)}"
        )

    def stage_by_device(self, sql: str, params: Params | None = None, *, memory_mb: int = 256) -> str:
        """Run a GoogleSQL SELECT (with `device_id` and `hour` columns) once into a temporary
        table of this connection, sorted by device and hour, and return its name.

        For a reader that goes through the result a device range at a time: the modelled tables
        are laid out by hour (the stand-in for BigQuery's day partitions), so each device-chunk
        query of a range scans the whole fleet's rows (0.8 s per chunk of 100 at 10,000 meters,
        O(fleet^2) over a fleet), while on the sorted copy a device range skips the row groups
        outside it (15 ms). BigQuery has no need: the tables are clustered by device_id.

        The copy grows with the fleet (7 million rows, 1.3 GB of memory at 10,000 meters x 30 days),
        so the connection's database is capped at `memory_mb` and DuckDB spills the rest to its
        temporary directory beside the file (measured at 10,000 x 30: 365 MB peak instead of
        1,358, chunk reads 15 ms either way).

        Connections of one process to one file share one DuckDB instance, and so the cap: copies
        made side by side (shards scored in threads) ran out of it, and so did another shard's
        plain query beside one copy (30,000 meters, six shards: `OutOfMemoryException`). So this
        process makes one copy at a time, and the cap is `memory_mb` for each connection open to
        the file: bounded by the work in flight, not by the fleet."""
        text, bound = self._bind(sql, params)
        self._staged += 1
        name = f"_gridsight_staged_{self._staged}"
        with _STAGING:
            with _OPEN_GUARD:
                limit = int(memory_mb) * max(1, _OPEN[self._file])
            self._set_memory_limit(limit)
            self._conn.execute(
                f"CREATE TEMP TABLE {name} AS SELECT * FROM ({text}) ORDER BY device_id, hour", bound or None
            )
        return name

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file, so a copy of the closed file is complete."""
        if not self._read_only:
            self._conn.execute("CHECKPOINT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all (a killed process leaves no trace of it:
        DuckDB writes a transaction to its WAL only at commit)."""
        self._conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- schema ---------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create every energy_analytics table that is missing and add contract columns that are."""
        self._conn.execute("CREATE SCHEMA IF NOT EXISTS energy_analytics")
        existing = self._existing_columns()
        for contract in load_contracts().values():
            have = existing.get(contract.table)
            if have is None:
                self.execute(create_table_sql(contract, layout=False))
                continue
            for name, kind in contract.columns.items():
                if name not in have:
                    self.execute(f"ALTER TABLE energy_analytics.{contract.table} ADD COLUMN {name} {kind}")

    def columns(self, table: str) -> list[str]:
        """Column names of an energy_analytics table, in table order."""
        return self._existing_columns().get(table.removeprefix("energy_analytics."), [])

    # --- internals ------------------------------------------------------------------------------
    def _set_memory_limit(self, mb: int) -> None:
        """For the whole DuckDB instance, i.e. every connection of this process to this file."""
        self._conn.execute(f"SET memory_limit = '{int(mb)}MB'")

    def _run(self, sql: str, params: Params | None) -> duckdb.DuckDBPyConnection:
        text, bound = self._bind(sql, params)
        return self._conn.execute(text, bound or None)

    def _bind(self, sql: str, params: Params | None) -> tuple[str, dict[str, object]]:
        """The DuckDB text of GoogleSQL `sql` and the parameters it uses (the raw file attached
        when it reads raw tables)."""
        statement = transpile(sql, "duckdb", TABLE_MAP)
        if any(t.startswith("raw.") for t in statement.tables):
            self._attach_raw(required=True)
        given = dict(params or {})
        missing = sorted(statement.parameters - given.keys())
        if missing:
            raise ValueError(f"query parameters not given: {missing}")
        return statement.text, {name: given[name] for name in statement.parameters}

    def _attach_raw(self, *, required: bool) -> bool:
        if self._raw_attached:
            return True
        if not self._raw_path.exists():
            if required:
                raise NotFound(f"no raw data yet: {self._raw_path} does not exist (run a sync first)")
            return False
        try:
            self._conn.execute(f"ATTACH '{_sql_string(self._raw_path)}' AS {_RAW_CATALOG} (READ_ONLY)")
        except duckdb.IOException as exc:
            raise TransientError(f"raw file {self._raw_path} is being written: {exc}") from exc
        self._raw_attached = True
        return True

    def _main_catalog(self) -> str:
        row = self._conn.execute("SELECT current_database()").fetchone()
        return str(row[0]) if row else "memory"

    def _existing_columns(self) -> dict[str, list[str]]:
        rows = self._conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_catalog = ? AND table_schema = 'energy_analytics' ORDER BY ordinal_position",
            [self._main_catalog()],
        ).fetchall()
        found: dict[str, list[str]] = {}
        for table, column in rows:
            found.setdefault(table, []).append(column)
        return found


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")
