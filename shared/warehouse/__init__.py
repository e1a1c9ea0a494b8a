"""Warehouse adapters behind one interface (see base.py), opened per unit of work.

    with open_warehouse(settings) as wh:
        df = wh.query_df("SELECT * FROM energy_analytics.hourly_consumption WHERE hour >= @since",
                         {"since": since})
        wh.merge("forecasts", forecasts_df, key=["device_id", "target_hour"])

On DuckDB the whole unit of work holds the one inter-process lock (`settings.lock_path`), because a
DuckDB file has one writer at a time; keep units of work short and never nest them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from filelock import FileLock, Timeout

from shared.errors import TransientError
from shared.settings import Settings
from shared.warehouse.base import Params, Warehouse
from shared.warehouse.contracts import TableContract, contract_for, load_contracts

__all__ = [
    "Params",
    "TableContract",
    "Warehouse",
    "atomic",
    "contract_for",
    "load_contracts",
    "open_warehouse",
]

# Files this process has already brought up to the table contracts, by (path, device, inode):
# checking the schema costs ~100 ms, which dominated every short read (chat, dashboard). A file
# replaced by a new one has a new inode and is checked again.
_SCHEMA_ENSURED: set[tuple[str, int, int]] = set()


def _file_identity(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (str(path.resolve()), stat.st_dev, stat.st_ino)


def atomic(wh: Warehouse) -> AbstractContextManager[None]:
    """One transaction on DuckDB; on BigQuery each statement commits on its own.

    BigQuery's multi-statement transactions need a session or a single script job, and the emulator
    has neither, so a caller that must survive a crash between statements orders its writes so that
    a re-run repairs any prefix (see `shared.refresh.run_refresh`), and uses this as well so the
    embedded warehouse never shows the intermediate states at all.
    """
    begin = getattr(wh, "transaction", None)
    return begin() if callable(begin) else nullcontext()


@contextmanager
def open_warehouse(
    settings: Settings, *, ensure_schema: bool = True, read_only: bool = False
) -> Iterator[Warehouse]:
    """Open the configured warehouse, make sure every energy_analytics table exists, close on exit.

    `read_only` opens the DuckDB file read-only (defence in depth for ad-hoc queries); the schema
    is still created first if the file is new.
    """
    if settings.warehouse_backend == "bigquery":
        from shared.warehouse.bigquery import BigQueryWarehouse

        bq = BigQueryWarehouse.from_settings(settings)
        try:
            if ensure_schema:
                bq.ensure_schema()
            yield bq
        finally:
            bq.close()
        return

    from shared.warehouse.duckdb import DuckDBWarehouse

    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.lock_path), timeout=settings.warehouse_lock_timeout_s)
    try:
        lock.acquire()
    except Timeout as exc:
        raise TransientError(
            f"warehouse lock {settings.lock_path} not free after {settings.warehouse_lock_timeout_s} s"
        ) from exc
    try:
        identity = _file_identity(settings.duckdb_path)
        needs_schema = ensure_schema and (identity is None or identity not in _SCHEMA_ENSURED)
        if read_only and needs_schema:
            writer = DuckDBWarehouse(settings.duckdb_path, settings.raw_duckdb_path)
            try:
                writer.ensure_schema()
            finally:
                writer.close()
        duck = DuckDBWarehouse(settings.duckdb_path, settings.raw_duckdb_path, read_only=read_only)
        try:
            if needs_schema and not read_only:
                duck.ensure_schema()
            if needs_schema:
                ensured = _file_identity(settings.duckdb_path)
                if ensured is not None:
                    _SCHEMA_ENSURED.add(ensured)
            yield duck
        finally:
            duck.close()
    finally:
        lock.release()
