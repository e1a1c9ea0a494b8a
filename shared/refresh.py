"""Incremental refresh of the modelled tables from what the connector landed.

Only the hours touched since the last refresh are recomputed: rows whose `_fivetran_synced` is past
the stored watermark (late data for old hours included) give the changed hours, a changed or deleted
device gives all of its hours. Each model then runs over that window, widened by what it propagates
(a reading changes the next reading's interval energy; an hour changes the next 168 h of lags), and
is MERGEd on its contract key, deleting rows in the window the model no longer produces. So a re-run
is a no-op and the result always equals a full rebuild (`full=True`), which the tests check.

Crash safety: the models, the caller's run record (`record`, which carries the window and the
watermarks it covers) and the watermark advance run in that order, inside one transaction on DuckDB
(`atomic`). On BigQuery every statement commits on its own, and the order is what makes any crash
repairable by re-running: before the record, the watermarks have not moved, so the re-run recomputes
the same window (MERGE, so a no-op where it already ran); after it, the re-run finds the record,
advances any watermark still behind it (`finish_recorded`) and announces the recorded window.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import Warehouse, atomic, open_warehouse
from shared.warehouse.contracts import TableContract, contract_for, load_contracts
from shared.warehouse.dialect import transpile
from shared.warehouse.models import compile_sql, model_inputs, ordered_models
from shared.warehouse.statements import create_table_sql, merge_sql

__all__ = [
    "RAW_TABLES",
    "RefreshResult",
    "finish_recorded",
    "refresh_features",
    "run_refresh",
    "step_done",
    "warm_up",
]

RAW_TABLES = ("site", "device", "reading")
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
HOUR = timedelta(hours=1)
Progress = Callable[[str], None]
Record = Callable[[Warehouse, "RefreshResult"], None]

log = get_logger(__name__)

# What changed since the watermarks (GoogleSQL over the staging models).
_CHANGED_READINGS = (
    "SELECT device_id, MIN(TIMESTAMP_TRUNC(reading_at, HOUR)) AS first_hour,"
    " MAX(TIMESTAMP_TRUNC(reading_at, HOUR)) AS last_hour"
    " FROM staging.stg_reading WHERE synced_at > @mark GROUP BY device_id"
)
_CHANGED_DEVICES = "SELECT device_id FROM staging.stg_device WHERE synced_at > @mark"
_DEVICE_SPAN = (
    "SELECT MIN(TIMESTAMP_TRUNC(reading_at, HOUR)) AS first_hour,"
    " MAX(TIMESTAMP_TRUNC(reading_at, HOUR)) AS last_hour"
    " FROM staging.stg_reading WHERE device_id IN UNNEST(@devices)"
)
_WINDOW_QUERIES = (_CHANGED_READINGS, _CHANGED_DEVICES, _DEVICE_SPAN)


class RefreshResult(BaseModel):
    """What a refresh changed; the ingest service turns a non-empty one into FeaturesRefreshed."""

    refresh_id: str
    full: bool
    window_start: datetime | None = Field(default=None, description="First affected hour (UTC).")
    window_end: datetime | None = Field(default=None, description="Last affected hour + 1 h.")
    device_ids: list[str] = Field(default_factory=list)
    rows_changed: dict[str, int] = Field(default_factory=dict)
    watermark: datetime | None = Field(default=None, description="max(_fivetran_synced) now covered.")
    watermarks: dict[str, datetime] = Field(
        default_factory=dict, description="Per raw table, the _fivetran_synced this refresh covers."
    )
    durations_s: dict[str, float] = Field(default_factory=dict)
    skipped_reason: str | None = None

    @property
    def has_changes(self) -> bool:
        return any(self.rows_changed.values())


def refresh_features(
    settings: Settings, *, full: bool = False, progress: Progress | None = None
) -> RefreshResult:
    """Bring energy_analytics up to date with the raw tables, in one unit of work."""
    with open_warehouse(settings) as wh:
        result = run_refresh(wh, full=full, progress=progress)
    log.info(
        "refresh finished",
        extra={
            "refresh_id": result.refresh_id,
            "full": result.full,
            "rows_changed": result.rows_changed,
            "devices": len(result.device_ids),
            "window": [str(result.window_start), str(result.window_end)],
        },
    )
    return result


def run_refresh(
    wh: Warehouse, *, full: bool = False, progress: Progress | None = None, record: Record | None = None
) -> RefreshResult:
    """The refresh on an open warehouse, as one transaction (tests and the benchmark call this).

    `record(wh, result)` runs after the models and before the watermarks move, in the same
    transaction: the ingest handler stores the result there, so a redelivery finds it."""
    with atomic(wh):
        return _run_refresh(wh, full=full, progress=progress, record=record)


def step_done(step: str) -> None:
    """A step boundary of the refresh unit of work (crash tests inject a failure here)."""
    log.debug("refresh step done", extra={"step": step})


def finish_recorded(wh: Warehouse, result: RefreshResult) -> None:
    """Advance any watermark still behind a recorded refresh (a crash between record and watermarks
    on BigQuery); never moves one back, in case a later refresh already went past it."""
    stored = _stored_watermarks(wh)
    behind = {t: m for t, m in result.watermarks.items() if stored.get(t) is None or stored[t] < m}
    if behind:
        log.warning("recorded refresh left watermarks behind; advancing", extra={"tables": sorted(behind)})
        _store_watermarks(wh, dict(behind), result.refresh_id)


def _run_refresh(
    wh: Warehouse, *, full: bool, progress: Progress | None, record: Record | None
) -> RefreshResult:
    missing = [t for t in RAW_TABLES if not wh.table_exists(f"raw.{t}")]
    if missing:
        return RefreshResult(
            refresh_id=uuid.uuid4().hex,
            full=full,
            skipped_reason=f"no raw tables {missing} yet: nothing to refresh until a sync lands them",
        )
    previous = _stored_watermarks(wh)
    current = _current_watermarks(wh)
    full = full or any(previous.get(t) is None for t in RAW_TABLES)
    refresh_id = _refresh_id(previous, current, full=full)

    window: tuple[datetime, datetime] | None
    devices: list[str] | None
    if full:
        window, devices = ALL_TIME, None
    else:
        window, devices = _changed_window(wh, previous)

    result = RefreshResult(
        refresh_id=refresh_id,
        full=full,
        watermark=max(filter(None, current.values()), default=None),
        watermarks={t: m or ALL_TIME[0] for t, m in current.items()},
    )
    windows: dict[str, tuple[datetime, datetime]] = {}
    for contract in ordered_models():
        if progress:
            progress(contract.table)
        started = time.perf_counter()
        if contract.materialization == "full":
            changed = _merge_model(wh, contract, None)
        elif window is None:
            changed = 0  # nothing landed since the last refresh
        else:
            model_window = _model_window(contract, window, windows)
            windows[contract.table] = model_window
            changed = _merge_model(wh, contract, model_window)
        result.rows_changed[contract.table] = changed
        result.durations_s[contract.table] = round(time.perf_counter() - started, 4)
        step_done(f"model:{contract.table}")

    if window is not None:
        result.window_start, result.window_end = _reported_window(wh, window, windows)
        result.device_ids = devices if devices is not None else _all_devices(wh)
    if record is not None:
        record(wh, result)
        step_done("recorded")
    _store_watermarks(wh, result.watermarks, refresh_id)
    step_done("watermarks")
    return result


def warm_up(settings: Settings) -> float:
    """Transpile every statement a refresh runs, once per process; returns the seconds it took.

    Parsing and generating the models with sqlglot costs seconds on a busy machine, more than an
    incremental refresh itself; a long-running service pays it once at start, not per refresh.
    """
    started = time.perf_counter()
    if settings.warehouse_backend == "bigquery":
        from shared.warehouse.bigquery import table_map

        dialect, mapping = "bigquery", table_map(settings)
    else:
        from shared.warehouse.duckdb import TABLE_MAP

        dialect, mapping = "duckdb", TABLE_MAP
    statements = [_model_merge_sql(c.table) for c in ordered_models()]
    statements += [_compiled(sql) for sql in _WINDOW_QUERIES]
    statements += [create_table_sql(c, layout=False) for c in load_contracts().values()]
    for sql in statements:
        transpile(sql, dialect, mapping)
    return time.perf_counter() - started


# --- watermarks ------------------------------------------------------------------------------------
def _stored_watermarks(wh: Warehouse) -> dict[str, datetime | None]:
    rows = wh.query("SELECT source_table, watermark FROM energy_analytics.refresh_watermarks").to_pylist()
    return {r["source_table"]: r["watermark"] for r in rows}


def _current_watermarks(wh: Warehouse) -> dict[str, datetime | None]:
    marks: dict[str, datetime | None] = {}
    for table in RAW_TABLES:
        row = wh.query(f"SELECT MAX(_fivetran_synced) AS mark FROM raw.{table}").to_pylist()[0]
        marks[table] = row["mark"]
    return marks


def _store_watermarks(wh: Warehouse, marks: dict[str, datetime], refresh_id: str) -> None:
    now = datetime.now(UTC)
    rows = [
        # an empty raw table still gets a mark (ALL_TIME[0]), so the next refresh can be incremental
        {"source_table": t, "watermark": m, "refresh_id": refresh_id, "refreshed_at": now}
        for t, m in marks.items()
    ]
    wh.merge("refresh_watermarks", pa.Table.from_pylist(rows), key=["source_table"])


def _refresh_id(
    previous: dict[str, datetime | None], current: dict[str, datetime | None], *, full: bool
) -> str:
    """Derived from the watermark range, so the same change refreshed twice carries the same id."""
    text = repr(sorted(previous.items())) + repr(sorted(current.items())) + repr(full)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --- windows ---------------------------------------------------------------------------------------
def _changed_window(
    wh: Warehouse, previous: dict[str, datetime | None]
) -> tuple[tuple[datetime, datetime] | None, list[str]]:
    """Hours touched since the watermarks, and the devices they belong to."""
    readings = _query_compiled(wh, _CHANGED_READINGS, {"mark": previous["reading"]})
    changed_devices = [
        str(r["device_id"]) for r in _query_compiled(wh, _CHANGED_DEVICES, {"mark": previous["device"]})
    ]
    spans: list[tuple[datetime, datetime]] = [(r["first_hour"], r["last_hour"]) for r in readings]
    if changed_devices:
        spans += [
            (r["first_hour"], r["last_hour"])
            for r in _query_compiled(wh, _DEVICE_SPAN, {"devices": changed_devices})
            if r["first_hour"] is not None
        ]
    devices = sorted({str(r["device_id"]) for r in readings} | set(changed_devices))
    if not spans:
        return None, devices
    return (min(s[0] for s in spans), max(s[1] for s in spans) + HOUR), devices


def _model_window(
    contract: TableContract,
    changed: tuple[datetime, datetime],
    windows: dict[str, tuple[datetime, datetime]],
) -> tuple[datetime, datetime]:
    """The changed hours, widened by what this model and the models it reads propagate forward."""
    start, end = changed
    for upstream in model_inputs(contract):
        if upstream in windows:
            start, end = min(start, windows[upstream][0]), max(end, windows[upstream][1])
    end += timedelta(hours=contract.propagates_hours)
    if contract.time_column and contract.columns[contract.time_column] == "DATE":
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        if end.time() != datetime.min.time():
            end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return start, min(end, ALL_TIME[1])


def _reported_window(
    wh: Warehouse,
    changed: tuple[datetime, datetime],
    windows: dict[str, tuple[datetime, datetime]],
) -> tuple[datetime | None, datetime | None]:
    """The hours of hourly_consumption the refresh recomputed, clipped to hours that hold data."""
    start, end = windows.get("hourly_consumption", changed)
    bounds = wh.query(
        "SELECT MIN(hour) AS first_hour, MAX(hour) AS last_hour FROM energy_analytics.hourly_consumption"
        " WHERE hour >= @window_start AND hour < @window_end",
        {"window_start": start, "window_end": end},
    ).to_pylist()[0]
    if bounds["first_hour"] is None:
        return None, None
    return bounds["first_hour"], bounds["last_hour"] + HOUR


def _all_devices(wh: Warehouse) -> list[str]:
    rows = wh.query("SELECT device_id FROM energy_analytics.dim_device ORDER BY device_id").to_pylist()
    return [r["device_id"] for r in rows]


# --- running models --------------------------------------------------------------------------------
def _merge_model(wh: Warehouse, contract: TableContract, window: tuple[datetime, datetime] | None) -> int:
    """MERGE one model's output into its table; rows in scope it no longer produces are deleted."""
    if window is None:
        return wh.execute(_model_merge_sql(contract.table))
    return wh.execute(_model_merge_sql(contract.table), {"window_start": window[0], "window_end": window[1]})


@cache
def _model_merge_sql(table: str) -> str:
    """The MERGE a model runs under (GoogleSQL text, the same every refresh so adapters cache it)."""
    contract = contract_for(table)
    source = compile_sql(contract.model_sql()).sql(dialect="bigquery")
    if contract.materialization == "full":
        return merge_sql(contract, source, delete_scope="TRUE")
    column = contract.time_column or ""
    if contract.columns[column] == "DATE":
        scope = f"t.{column} >= DATE(@window_start) AND t.{column} < DATE(@window_end)"
    else:
        scope = f"t.{column} >= @window_start AND t.{column} < @window_end"
    return merge_sql(contract, source, delete_scope=scope)


@cache
def _compiled(sql: str) -> str:
    return compile_sql(sql).sql(dialect="bigquery")


def _query_compiled(wh: Warehouse, sql: str, params: dict[str, object]) -> list[dict[str, Any]]:
    return wh.query(_compiled(sql), params).to_pylist()
