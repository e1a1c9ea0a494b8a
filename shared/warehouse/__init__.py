"""Warehouse adapters behind one interface (see base.py), opened per unit of work.

    with open_warehouse(settings) as wh:
        wh.merge("forecasts", forecasts_df, key=["device_id", "target_hour"])
    with open_warehouse(settings, read_only=True) as wh:
        df = wh.query_df("SELECT * FROM energy_analytics.hourly_consumption WHERE hour >= @since",
                         {"since": since})

On DuckDB a writing unit of work holds the one inter-process lock (`settings.lock_path`), because a
DuckDB file has one writer at a time and a process holding it for writing locks every other process
out, readers included. A full refresh holds it for minutes, so readers never take it: when a writing
unit of work ends, the file (checkpointed, closed) is published to `<home>/snapshot/warehouse.duckdb`
(`snapshot.py`: the previous copy patched to it, else a fresh copy, then renamed into place),
still under the lock; `read_only=True` opens the last such snapshot, read-only and without the
lock. Readers therefore see exactly what the last finished unit of work committed (never a
half-written refresh, which is one transaction), like BigQuery readers see committed data. A unit
of work that wrote nothing publishes nothing (the file's mtime and size are those of the
snapshot). On BigQuery `read_only` changes nothing.

Publishing still reads the whole file (1.7 GB at 10,000 meters x 30 days), and copies all of it
when a reader holds the previous copy, so small writes that no reader waits on (a run record, an
alert's stamps: three of them per alert) open with `publish=False`: they commit without
publishing, and what they wrote reaches readers with the next unit of work that publishes, or
with the next reader that finds the snapshot older than the file and the lock free (which
publishes it, as for a writer killed before publishing). Readers still see only committed
states; they may see one without the latest run records and stamps while other writers work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from shared.errors import TransientError
from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import snapshot
from shared.warehouse.base import Params, Warehouse
from shared.warehouse.contracts import TableContract, contract_for, load_contracts

if TYPE_CHECKING:
    from shared.warehouse.duckdb import DuckDBWarehouse

__all__ = [
    "Params",
    "TableContract",
    "Warehouse",
    "atomic",
    "contract_for",
    "load_contracts",
    "open_warehouse",
    "publish_snapshot",
    "snapshot_path",
]

log = get_logger(__name__)

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
    settings: Settings, *, ensure_schema: bool = True, read_only: bool = False, publish: bool = True
) -> Iterator[Warehouse]:
    """Open the configured warehouse, make sure every energy_analytics table exists, close on exit.

    `read_only` is for pure readers (chat, dashboard, forecast history, `gridsight query`): on DuckDB
    it opens the last published snapshot without waiting for the writer lock (see the module doc).
    `publish=False` skips the snapshot copy at the end of a DuckDB unit of work, for small writes
    no reader waits on; never for a write whose announcement a reader acts on (a refresh, the
    forecasts scoring reads), since a reader may get the snapshot without it (module doc).
    On BigQuery `ensure_schema` does nothing: Terraform owns the datasets and tables, and no service
    account of ours may create them.
    """
    if settings.warehouse_backend == "bigquery":
        from shared.warehouse.bigquery import BigQueryWarehouse

        bq = BigQueryWarehouse.from_settings(settings)
        try:
            yield bq
        finally:
            bq.close()
        return

    from shared.warehouse.duckdb import DuckDBWarehouse

    if read_only:
        _refresh_stale_snapshot(settings)
        with snapshot.reading(snapshot_path(settings)):
            reader = DuckDBWarehouse(
                snapshot_path(settings),
                settings.raw_duckdb_path,
                read_only=True,
                memory_mb=settings.duckdb_memory_mb,
            )
            try:
                yield reader
            finally:
                reader.close()
        return

    with _writer_lock(settings, timeout=settings.warehouse_lock_timeout_s):
        duck = _open_writer(settings, ensure_schema=ensure_schema)
        finished = False
        try:
            yield duck
            duck.checkpoint()
            finished = True
        finally:
            duck.close()  # rolls back an open transaction; checkpoints what was committed
            # publish=False: the next publishing writer, or a reader, copies it (module doc)
            if publish and finished:
                publish_snapshot(settings)
            elif publish:  # statements committed before the failure are committed: readers get them too
                _publish_quietly(settings)


def snapshot_path(settings: Settings) -> Path:
    """The last published copy readers open (same file name, so DuckDB's catalog name is the same)."""
    return settings.duckdb_path.parent / "snapshot" / settings.duckdb_path.name


def publish_snapshot(settings: Settings) -> bool:
    """Publish the closed writer file as the readers' snapshot (`snapshot.publish`: patched into
    the spare copy and renamed into place); the caller holds the writer lock. Returns False when
    the snapshot is already this file's state."""
    return snapshot.publish(settings.duckdb_path, snapshot_path(settings))


def _publish_quietly(settings: Settings) -> None:
    """On the error path: never hide the unit of work's own exception behind a publishing one."""
    try:
        publish_snapshot(settings)
    except Exception:
        log.exception("could not publish the warehouse snapshot after a failed unit of work")


def _refresh_stale_snapshot(settings: Settings) -> None:
    """Before a read: publish the writer file if it is newer than the snapshot and nobody writes.

    That happens when there is no snapshot yet (a new home, or one from before snapshots), or when a
    writer was killed after committing and before publishing. If a writer holds the lock, it will
    publish when it ends; meanwhile the current snapshot is the last committed state readers get. A
    missing snapshot is worth waiting for (there is nothing else to read).
    """
    target, source = snapshot_path(settings), settings.duckdb_path
    unlogged = not source.with_name(source.name + ".wal").exists()  # a killed writer leaves its log
    if target.exists() and (not source.exists() or (unlogged and snapshot.same_state(source, target))):
        return
    wait = settings.warehouse_lock_timeout_s if not target.exists() else 0.0
    try:
        with _writer_lock(settings, timeout=wait):
            duck = _open_writer(settings, ensure_schema=True)
            try:
                duck.checkpoint()
            finally:
                duck.close()
            publish_snapshot(settings)
    except TransientError:
        if not target.exists():
            raise


@contextmanager
def _writer_lock(settings: Settings, *, timeout: float) -> Iterator[None]:
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise TransientError(f"warehouse lock {settings.lock_path} not free after {timeout} s") from exc
    try:
        yield
    finally:
        lock.release()


def _open_writer(settings: Settings, *, ensure_schema: bool) -> DuckDBWarehouse:
    from shared.warehouse.duckdb import DuckDBWarehouse

    identity = _file_identity(settings.duckdb_path)
    needs_schema = ensure_schema and (identity is None or identity not in _SCHEMA_ENSURED)
    duck = DuckDBWarehouse(
        settings.duckdb_path, settings.raw_duckdb_path, memory_mb=settings.duckdb_memory_mb
    )
    try:
        if needs_schema:
            duck.ensure_schema()
            ensured = _file_identity(settings.duckdb_path)
            if ensured is not None:
                _SCHEMA_ENSURED.add(ensured)
    except BaseException:
        duck.close()
        raise
    return duck
