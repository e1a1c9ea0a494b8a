"""Incremental refresh of the modelled tables from what the connector landed.

Only the hours touched since the last refresh are recomputed: rows whose `_fivetran_synced` is past
the stored watermark (late data for old hours included) give the changed hours, a changed or deleted
device gives all of its hours. Each model then runs over that window, widened by what it propagates
(a reading changes the next reading's interval energy; an hour changes the next 168 h of lags), and
is MERGEd on its contract key, deleting rows in the window the model no longer produces. So a re-run
is a no-op and the result always equals a full rebuild (`full=True`), which the tests check.

Bounded work: each device gets its own window (the hours of its changed readings; all of its hours
when its dim_device row changes or it is deleted), devices with the same window share one pass of
the models, restricted to them (at most MAX_PASSES passes: further windows are merged, which only
recomputes more). Reading times outside a plausible range (`WindowLimits`: not before
`refresh_earliest_reading`, not after the later of now and the newest `_fivetran_synced`, plus
`refresh_future_skew_hours`)
never widen a window and are left out of the models on every path, full rebuild included, so one
reading dated 1970 or 2099 costs nothing and incremental still equals full. Changed readings older
than `refresh_max_window_days` before the newest changed hour are not recomputed incrementally (reported in
`RefreshResult.too_old_devices`, logged; `gridsight refresh --full` brings them in), so the announced
window never spans more than the maximum.

Cost with the new data, not the history (issue #15, `bench/bench_refresh.py --history-growth`):
every per-cycle statement reads only its window, and raw `reading` only what was synced since the
last refresh (fct_reading reads the window's older readings back from itself: raw is laid out in
sync order, so a reading-time predicate prunes none of it). BigQuery: the window is in each MERGE's ON clause
(partition pruning) and a restricted pass reads its devices only (cluster pruning). DuckDB: the
incremental models are laid out sorted by time after a full rebuild, so window predicates skip the
history by zone maps, and each model is written as staged upsert + delete (`staged_merge_sql`),
because DuckDB's MERGE with WHEN NOT MATCHED BY SOURCE reads the whole target.

Crash safety: the models, the caller's run record (`record`, which carries the window and the
watermarks it covers) and the watermark advance run in that order, inside one transaction on DuckDB
(`atomic`). On BigQuery every statement commits on its own, and the order is what makes any crash
repairable by re-running: before the record, the watermarks have not moved, so the re-run recomputes
the same window (MERGE, so a no-op where it already ran); after it, the re-run finds the record,
advances any watermark still behind it (`finish_recorded`) and announces the recorded window.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field
from sqlglot import exp

from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import Warehouse, atomic, open_warehouse
from shared.warehouse.contracts import TableContract, contract_for, load_contracts
from shared.warehouse.dialect import transpile
from shared.warehouse.models import compile_sql, model_inputs, ordered_models
from shared.warehouse.statements import changed_condition, create_table_sql, merge_sql, staged_merge_sql

__all__ = [
    "RAW_TABLES",
    "RefreshResult",
    "WindowLimits",
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

MAX_PASSES = 4  # model passes per refresh at most (one per distinct device window)

# What changed since the watermarks (GoogleSQL over the staging models), inside the plausible range.
_PLAUSIBLE = "reading_at >= @earliest AND reading_at < @latest"
_CHANGED_READINGS = (
    "SELECT device_id, MIN(TIMESTAMP_TRUNC(reading_at, HOUR)) AS first_hour,"
    " MAX(TIMESTAMP_TRUNC(reading_at, HOUR)) AS last_hour"
    f" FROM staging.stg_reading WHERE synced_at > @mark AND {_PLAUSIBLE} GROUP BY device_id"
)
_IMPLAUSIBLE_READINGS = (
    "SELECT COUNT(*) AS n FROM staging.stg_reading"
    " WHERE synced_at > @mark AND (reading_at < @earliest OR reading_at >= @latest)"
)
_CHANGED_DEVICES = "SELECT device_id FROM staging.stg_device WHERE synced_at > @mark"
_DEVICE_SPAN = (
    "SELECT device_id, MIN(TIMESTAMP_TRUNC(reading_at, HOUR)) AS first_hour,"
    " MAX(TIMESTAMP_TRUNC(reading_at, HOUR)) AS last_hour"
    f" FROM staging.stg_reading WHERE device_id IN UNNEST(@devices) AND {_PLAUSIBLE} GROUP BY device_id"
)
_DEVICE_SITES = "SELECT DISTINCT site_id FROM staging.stg_device WHERE device_id IN UNNEST(@devices)"
_WINDOW_QUERIES = (_CHANGED_READINGS, _IMPLAUSIBLE_READINGS, _CHANGED_DEVICES, _DEVICE_SPAN, _DEVICE_SITES)
Window = tuple[datetime, datetime]


class WindowLimits(BaseModel):
    """How far a refresh window may reach (settings `refresh_*`; see the module doc)."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    future_skew: timedelta = timedelta(hours=24)
    max_span: timedelta = timedelta(days=92)

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowLimits:
        return cls(
            earliest=settings.refresh_earliest_reading,
            future_skew=timedelta(hours=settings.refresh_future_skew_hours),
            max_span=timedelta(days=settings.refresh_max_window_days),
        )

    def plausible(self, newest_synced: datetime | None, now: datetime | None = None) -> Window:
        """[earliest, clock + skew): no reading can be dated after the refresh's own clock, the later
        of now and the newest sync (plus skew; the connector already quarantines such readings).

        The bound is rounded up to a whole hour: windows are hours, and a microsecond timestamp
        parameter is one bqemulator cannot even cast (BigQuery can)."""
        if newest_synced is None:
            return self.earliest, self.earliest
        latest = max(newest_synced, now or datetime.now(UTC)) + self.future_skew
        whole = latest.replace(minute=0, second=0, microsecond=0)
        latest = whole if whole == latest else whole + HOUR
        return self.earliest, max(self.earliest, latest)


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
    passes: int = Field(default=0, description="Runs of the incremental models (one per device window).")
    implausible_readings: int = Field(default=0, description="Changed readings dated outside the range.")
    too_old_devices: list[str] = Field(
        default_factory=list, description="Devices with changes older than the maximum window, not redone."
    )

    @property
    def has_changes(self) -> bool:
        return any(self.rows_changed.values())


def refresh_features(
    settings: Settings, *, full: bool = False, progress: Progress | None = None
) -> RefreshResult:
    """Bring energy_analytics up to date with the raw tables, in one unit of work."""
    with open_warehouse(settings) as wh:
        result = run_refresh(wh, full=full, progress=progress, limits=WindowLimits.from_settings(settings))
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
    wh: Warehouse,
    *,
    full: bool = False,
    progress: Progress | None = None,
    record: Record | None = None,
    limits: WindowLimits | None = None,
) -> RefreshResult:
    """The refresh on an open warehouse, as one transaction (tests and the benchmark call this).

    `record(wh, result)` runs after the models and before the watermarks move, in the same
    transaction: the ingest handler stores the result there, so a redelivery finds it."""
    limit_threads = getattr(wh, "limit_threads", None)
    if callable(limit_threads):  # DuckDB: the readers on the snapshot share this machine's cores
        limit_threads(max(1, (os.cpu_count() or 2) - 1))
    with atomic(wh):
        return _run_refresh(wh, full=full, progress=progress, record=record, limits=limits or WindowLimits())


def step_done(step: str) -> None:
    """A step boundary of the refresh unit of work (crash tests inject a failure here)."""
    log.debug("refresh step done", extra={"step": step})


def finish_recorded(wh: Warehouse, result: RefreshResult) -> None:
    """Advance any watermark still behind a recorded refresh (a crash between record and watermarks
    on BigQuery); never moves one back, in case a later refresh already went past it."""
    stored = _stored_watermarks(wh)
    behind = {t: m for t, m in result.watermarks.items() if (mark := stored.get(t)) is None or mark < m}
    if behind:
        log.warning("recorded refresh left watermarks behind; advancing", extra={"tables": sorted(behind)})
        _store_watermarks(wh, dict(behind), result.refresh_id)


def _run_refresh(
    wh: Warehouse, *, full: bool, progress: Progress | None, record: Record | None, limits: WindowLimits
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
    plausible = limits.plausible(current["reading"])

    result = RefreshResult(
        refresh_id=refresh_id,
        full=full,
        watermark=max(filter(None, current.values()), default=None),
        watermarks={t: m or ALL_TIME[0] for t, m in current.items()},
    )
    passes = [_Pass(plausible, None)] if full else _changed_passes(wh, previous, plausible, limits, result)

    result.passes = len(passes)
    # DuckDB: an incremental pass writes through the staged form, which reads only the window (a
    # full rebuild reads everything anyway, and then lays the tables out sorted, see `_cluster`)
    staged = wh.backend == "duckdb" and not full
    unsorted: list[str] = []  # full rebuild: tables MERGEd into (not empty), to lay out afterwards
    reported: list[Window] = []
    for p in passes:
        p.sites = _sites_of(wh, p.devices)
    for contract in ordered_models():
        if progress:
            progress(contract.table)
        started = time.perf_counter()
        changed = 0
        if contract.materialization == "full":
            changed = _merge_model(wh, contract, None)
        else:
            for p in passes:
                model_window = _model_window(contract, p.window, p.windows)
                p.windows[contract.table] = model_window
                if full and wh.backend == "duckdb" and _is_empty(wh, contract.table):
                    changed += _insert_sorted(wh, contract, model_window)
                    continue
                if full:
                    unsorted.append(contract.table)
                changed += _merge_model(wh, contract, model_window, p, staged=staged)
        result.rows_changed[contract.table] = changed
        result.durations_s[contract.table] = round(time.perf_counter() - started, 4)
        step_done(f"model:{contract.table}")
    if unsorted:
        _cluster(wh, unsorted)

    for p in passes:
        bounds = _reported_window(wh, p.window, p.windows)
        if bounds[0] is not None and bounds[1] is not None:
            reported.append((bounds[0], bounds[1]))
    if reported:
        result.window_start, result.window_end = min(w[0] for w in reported), max(w[1] for w in reported)
        if not full:  # a device-level change recomputes all its hours; the announcement stays bounded
            result.window_start = max(result.window_start, result.window_end - limits.max_span)
        if full:
            result.device_ids = _all_devices(wh)
        else:
            result.device_ids = sorted({d for p in passes for d in p.devices or ()})
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
    statements += [
        _model_merge_sql(c.table, column)
        for c in ordered_models()
        if c.materialization != "full" and (column := _restrict_column(c)) is not None
    ]
    if dialect == "duckdb":
        statements += [_insert_sorted_sql(c.table) for c in ordered_models() if c.materialization != "full"]
        statements += [
            sql
            for c in ordered_models()
            if c.materialization != "full"
            for column in (None, _restrict_column(c))
            for sql in _model_staged_sql(c.table, column)
        ]
    statements.append(_dimension_diff_sql())
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
class _Pass:
    """One run of the incremental models over a window, for `devices` only (None: every device)."""

    def __init__(self, window: Window, devices: list[str] | None) -> None:
        self.window = window
        self.devices = devices
        # raw rows synced up to here are already modelled (fct_reading reads them back from itself,
        # not from raw); the start of time reads everything from raw
        self.modelled_through = ALL_TIME[0]
        self.sites: list[str] | None = None
        self.windows: dict[str, Window] = {}


def _changed_passes(
    wh: Warehouse,
    previous: dict[str, datetime | None],
    plausible: Window,
    limits: WindowLimits,
    result: RefreshResult,
) -> list[_Pass]:
    """Per-device windows of what changed since the watermarks, grouped into at most MAX_PASSES."""
    bounds = {"earliest": plausible[0], "latest": plausible[1]}
    per_device: dict[str, Window] = {}

    def add(device: str, first: datetime, last: datetime) -> None:
        window = (first, last + HOUR)
        if device in per_device:
            window = (min(window[0], per_device[device][0]), max(window[1], per_device[device][1]))
        per_device[device] = window

    for r in _query_compiled(wh, _CHANGED_READINGS, {"mark": previous["reading"], **bounds}):
        add(str(r["device_id"]), r["first_hour"], r["last_hour"])
    implausible = _query_compiled(wh, _IMPLAUSIBLE_READINGS, {"mark": previous["reading"], **bounds})
    result.implausible_readings = int(implausible[0]["n"]) if implausible else 0
    if result.implausible_readings:
        log.warning(
            "changed readings dated outside the plausible range left out of the models",
            extra={"readings": result.implausible_readings, "range": [str(plausible[0]), str(plausible[1])]},
        )
    # incremental windows reach back at most max_span from the newest changed hour (not the sync
    # clock: replayed or simulated history can lie far in the past)
    newest = max((w[1] for w in per_device.values()), default=plausible[1])
    horizon = (max(plausible[0], _floor_hour(newest - limits.max_span)), plausible[1])
    too_old = sorted(d for d, w in per_device.items() if w[0] < horizon[0])
    per_device = {d: (max(w[0], horizon[0]), w[1]) for d, w in per_device.items() if w[1] > horizon[0]}
    if too_old:
        result.too_old_devices = too_old
        log.warning(
            "changes older than the maximum refresh window not recomputed; run a full refresh",
            extra={"devices": too_old[:20], "count": len(too_old), "horizon_start": str(horizon[0])},
        )
    # a device whose dimension row changed (or that was deleted) is recomputed over all its hours
    changed_devices = _changed_devices(wh, previous["device"])
    if changed_devices:
        for r in _query_compiled(wh, _DEVICE_SPAN, {"devices": changed_devices, **bounds}):
            if r["first_hour"] is not None:
                add(str(r["device_id"]), r["first_hour"], r["last_hour"])
    passes = _group(per_device)
    # A pass without such a device reads from raw only what was synced since the last refresh. A
    # changed device rereads raw: its modelled rows may be missing (it was removed and is back) or
    # stale in ways no newly synced reading reveals.
    redo = set(changed_devices)
    for p in passes:
        if previous["reading"] is not None and not redo.intersection(p.devices or ()):
            p.modelled_through = previous["reading"]
    return passes


def _floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _changed_devices(wh: Warehouse, mark: datetime | None) -> list[str]:
    """Devices synced since the mark whose dim_device row the refresh would change, add or remove.

    The connector upserts every device on every sync; counting those as changed would recompute every
    device's whole history each time."""
    synced = [str(r["device_id"]) for r in _query_compiled(wh, _CHANGED_DEVICES, {"mark": mark})]
    if not synced:
        return []
    rows = wh.query(_dimension_diff_sql(), {"devices": synced}).to_pylist()
    return sorted({str(r["device_id"]) for r in rows})


@cache
def _dimension_diff_sql() -> str:
    contract = contract_for("dim_device")
    source = compile_sql(contract.model_sql()).sql(dialect="bigquery")
    columns = [c for c in contract.columns if c != "synced_at"]
    differs = changed_condition(contract, columns)
    return (
        f"SELECT COALESCE(s.device_id, t.device_id) AS device_id FROM ({source}) AS s"
        " FULL OUTER JOIN energy_analytics.dim_device AS t ON s.device_id = t.device_id"
        " WHERE COALESCE(s.device_id, t.device_id) IN UNNEST(@devices)"
        f" AND (s.device_id IS NULL OR t.device_id IS NULL OR {differs})"
    )


def _group(per_device: dict[str, Window]) -> list[_Pass]:
    """Devices with the same window share a pass; beyond MAX_PASSES the two windows whose union adds
    the fewest hours are merged (recomputing more is always correct)."""
    by_window: dict[Window, list[str]] = {}
    for device, window in sorted(per_device.items()):
        by_window.setdefault(window, []).append(device)
    groups = sorted(by_window.items())
    while len(groups) > MAX_PASSES:

        def cost(i: int) -> timedelta:
            (a, _), (b, _) = groups[i], groups[i + 1]
            return max(a[1], b[1]) - min(a[0], b[0]) - (a[1] - a[0]) - (b[1] - b[0])

        i = min(range(len(groups) - 1), key=cost)
        (a, da), (b, db) = groups[i], groups[i + 1]
        groups[i : i + 2] = [((min(a[0], b[0]), max(a[1], b[1])), sorted(da + db))]
    return [_Pass(window, devices) for window, devices in groups]


def _sites_of(wh: Warehouse, devices: list[str] | None) -> list[str] | None:
    if devices is None:
        return None
    return sorted(str(r["site_id"]) for r in _query_compiled(wh, _DEVICE_SITES, {"devices": devices}))


def _model_window(
    contract: TableContract,
    changed: tuple[datetime, datetime],
    windows: dict[str, tuple[datetime, datetime]],
) -> tuple[datetime, datetime]:
    """The changed hours, widened by what this model and the models it reads propagate (forward, and
    back for a model whose rows depend on later input rows)."""
    start, end = changed
    for upstream in model_inputs(contract):
        if upstream in windows:
            start, end = min(start, windows[upstream][0]), max(end, windows[upstream][1])
    start -= timedelta(hours=contract.propagates_back_hours)
    end += timedelta(hours=contract.propagates_hours)
    if contract.time_column and contract.columns[contract.time_column] == "DATE":
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        if end.time() != datetime.min.time():
            end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return max(start, ALL_TIME[0]), min(end, ALL_TIME[1])


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
def _merge_model(
    wh: Warehouse,
    contract: TableContract,
    window: Window | None,
    restrict: _Pass | None = None,
    *,
    staged: bool = False,
) -> int:
    """MERGE one model's output into its table; rows in scope it no longer produces are deleted.

    With `restrict` (a pass for some devices), only rows of those devices (or of their sites, for a
    site-grained model) are read, written and in scope. `staged` runs the DuckDB form of the same
    write (`staged_merge_sql`), which reads only the window of the target."""
    if window is None:
        return wh.execute(_model_merge_sql(contract.table))
    params: dict[str, object] = {"window_start": window[0], "window_end": window[1]}
    params["modelled_through"] = restrict.modelled_through if restrict is not None else ALL_TIME[0]
    column = _restrict_column(contract) if restrict is not None and restrict.devices is not None else None
    if column is not None:
        assert restrict is not None
        values = restrict.devices if column == "device_id" else restrict.sites
        if not values:
            return 0
        params["restrict"] = values
    if not staged:
        return wh.execute(_model_merge_sql(contract.table, column), params)
    stage, upsert, delete, drop = _model_staged_sql(contract.table, column)
    wh.execute(stage, params)
    changed = wh.execute(upsert, params) + wh.execute(delete, params)
    wh.execute(drop)
    return changed


def _cluster(wh: Warehouse, tables: list[str]) -> None:
    """After a full rebuild on DuckDB, rewrite these incremental models sorted by their time column
    and cluster columns: DuckDB's stand-in for BigQuery's day partitions and clustering.
    Incremental refreshes then append new hours at the end, so every row group spans a short time
    range and a window predicate skips the rest of the history by the zone maps (a MERGE writes
    rows grouped by device, each row group spanning all of history, which nothing can skip). An
    empty table is filled sorted in the first place (`_insert_sorted`): the rewrite leaves the
    first copy's blocks free in the file, which every snapshot copy then carries."""
    cluster = getattr(wh, "cluster", None)
    if not callable(cluster):
        return
    for table in tables:
        contract = contract_for(table)
        if contract.time_column:
            cluster(contract.table, _layout(contract))
    step_done("clustered")


def _layout(contract: TableContract) -> list[str]:
    return [contract.time_column or "", *contract.cluster_by]


def _is_empty(wh: Warehouse, table: str) -> bool:
    return not wh.query(f"SELECT 1 AS one FROM energy_analytics.{table} LIMIT 1").num_rows


def _insert_sorted(wh: Warehouse, contract: TableContract, window: Window) -> int:
    """A full rebuild into an empty table on DuckDB: the model's rows inserted in layout order
    (the MERGE would insert the same rows, in no useful order)."""
    return wh.execute(
        _insert_sorted_sql(contract.table),
        {"window_start": window[0], "window_end": window[1], "modelled_through": ALL_TIME[0]},
    )


@cache
def _insert_sorted_sql(table: str) -> str:
    contract = contract_for(table)
    source, _ = _model_source(table, None)
    columns = ", ".join(contract.columns)
    return (
        f"INSERT INTO energy_analytics.{table} ({columns}) SELECT {columns} FROM ({source}) AS s"
        f" ORDER BY {', '.join(_layout(contract))}"
    )


def _restrict_column(contract: TableContract) -> str | None:
    for column in ("device_id", "site_id"):
        if column in contract.unique_key:
            return column
    return None


@cache
def _model_merge_sql(table: str, restrict: str | None = None) -> str:
    """The MERGE a model runs under (GoogleSQL text, the same every refresh so adapters cache it).

    Incremental models put the window in the ON clause too, so BigQuery prunes the target to the
    window's partitions (and its cluster column, with `restrict`)."""
    contract = contract_for(table)
    source, scope = _model_source(table, restrict)
    if scope is None:
        return merge_sql(contract, source, delete_scope="TRUE")
    return merge_sql(contract, source, delete_scope=scope, match_scope=_time_scope(contract))


@cache
def _model_staged_sql(table: str, restrict: str | None = None) -> tuple[str, ...]:
    """The same write as `_model_merge_sql` in the statements DuckDB prunes (see `staged_merge_sql`)."""
    contract = contract_for(table)
    source, scope = _model_source(table, restrict)
    assert scope is not None, "only incremental models are staged"
    return staged_merge_sql(contract, source, scope, match_scope=_time_scope(contract))


# Raw columns a restricted pass filters raw reads on (the connector's schema; tests check them).
RAW_RESTRICT_COLUMNS = {"reading": ("device_id",), "device": ("device_id", "site_id"), "site": ("site_id",)}


@cache
def _model_source(table: str, restrict: str | None) -> tuple[str, str | None]:
    """A model's SELECT and the target rows it owns (None: the whole table, for a full model).

    With `restrict`, every raw or energy_analytics table the model reads that has that column is
    read for the restricted values only (a semi-join, which DuckDB turns into a zone-map filter on
    the scan, and BigQuery into cluster pruning): every model's rows for a device (or site) depend
    only on that device's (site's) input rows, so this changes what is read, not what is produced,
    and one device's late reading no longer reads the whole reading table."""
    contract = contract_for(table)
    compiled = compile_sql(contract.model_sql())
    if contract.materialization == "full":
        return compiled.sql(dialect="bigquery"), None
    scope = _time_scope(contract)
    if restrict is None:
        return compiled.sql(dialect="bigquery"), scope
    for node in list(compiled.find_all(exp.Table)):
        if _has_column(node, restrict):
            table = node.copy()
            table.set("alias", None)
            read = exp.select("*").from_(table)
            read = read.where(f"{restrict} IN (SELECT r FROM UNNEST(@restrict) AS r)", dialect="bigquery")
            node.replace(
                exp.Subquery(this=read, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)))
            )
    source = f"SELECT * FROM ({compiled.sql(dialect='bigquery')}) WHERE {restrict} IN UNNEST(@restrict)"
    return source, f"{scope} AND t.{restrict} IN UNNEST(@restrict)"


def _time_scope(contract: TableContract) -> str:
    """The target rows in an incremental model's window (its time column; BigQuery's partitions).

    Only this part goes into a MERGE's ON clause: bqemulator cannot run an `IN UNNEST` there (a
    non-inner join on a subquery), and the window alone is what prunes partitions."""
    column = contract.time_column or ""
    if contract.columns[column] == "DATE":
        return f"t.{column} >= DATE(@window_start) AND t.{column} < DATE(@window_end)"
    return f"t.{column} >= @window_start AND t.{column} < @window_end"


def _has_column(table: exp.Table, column: str) -> bool:
    if table.db == "raw":
        return column in RAW_RESTRICT_COLUMNS.get(table.name, ())
    if table.db == "energy_analytics":
        contracts = load_contracts()
        return table.name in contracts and column in contracts[table.name].columns
    return False


@cache
def _compiled(sql: str) -> str:
    return compile_sql(sql).sql(dialect="bigquery")


def _query_compiled(wh: Warehouse, sql: str, params: dict[str, object]) -> list[dict[str, Any]]:
    return wh.query(_compiled(sql), params).to_pylist()
