"""Score the hours a feature refresh touched and keep `anomalies` one row per incident.

`score_window` is what the push handler calls; `detect_window` is the plain function underneath
(warehouse in, incident rows out) so tests drive it with a DuckDB warehouse and no bus. Scoring is
causal and deterministic, so re-scoring the same window yields the same incidents with the same
ids: a redelivered event changes nothing and publishes nothing, and an incident that is still
going on when the next window arrives is extended in place instead of opening a second row. A
dropout that late data disproves is withdrawn (`withdraw.py`), published once, and never reopened.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel

from services.anomaly.alert_channels import AlertSettings, load_alert_settings
from services.anomaly.alerts import in_quiet_hours
from services.anomaly.calibrate import load_calibration
from services.anomaly.combine import (
    DEFAULT_TARIFF,
    HourTable,
    candidates_per_hour,
    group_incidents,
    hour_table,
)
from services.anomaly.detectors import (
    DetectorConfig,
    Finding,
    Fleet,
    Panel,
    as_utc,
    fleet_shift_from_terms,
    fleet_terms,
    panel_from_long,
    run_detectors,
    with_columns,
)
from services.anomaly.detectors.panel import OPTIONAL_COLUMNS
from services.anomaly.severity import SEVERITY_RANK
from services.anomaly.withdraw import (
    OPEN,
    WITHDRAWN_REASON,
    Presence,
    find_withdrawn,
    is_withdrawn,
    reissued_id,
)
from shared.bus.base import Publisher
from shared.errors import NotFound, TransientError
from shared.events import (
    AnomaliesDetected,
    AnomaliesWithdrawn,
    DetectedReason,
    FeaturesRefreshed,
    refresh_of,
)
from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = [
    "HISTORY",
    "INCIDENT_LOOKBACK",
    "ScoreResult",
    "WindowIncidents",
    "detect_window",
    "device_view",
    "publish_withdrawn",
    "score_window",
]

# Expected load needs 4 weeks of the same hour, and its noise scale 4 more weeks of residuals.
HISTORY = timedelta(weeks=9)
# Hours before the window that are re-grouped, so an incident running into the window keeps its row.
INCIDENT_LOOKBACK = timedelta(hours=72)
GAP_H = 3
DEFAULT_REUSE_MB = int(Settings.model_fields["anomaly_reuse_mb"].default)

log = get_logger(__name__)

HOURLY_SQL = """
SELECT h.device_id, h.hour, h.energy_kwh, h.max_power_w, h.occupancy_share, h.coverage
FROM energy_analytics.hourly_consumption AS h
JOIN energy_analytics.dim_device AS d ON d.device_id = h.device_id AND COALESCE(d.is_active, TRUE)
WHERE h.hour >= @history_start AND h.hour < @window_end
"""
READINGS_SQL = """
SELECT device_id, hour, MIN(voltage) AS voltage_min, MAX(voltage) AS voltage_max, MIN(power_w) AS min_power_w
FROM energy_analytics.fct_reading
WHERE hour >= @lookback_start AND hour < @window_end
GROUP BY device_id, hour
"""
FORECAST_SQL = """
SELECT device_id, target_hour AS hour, p10 AS forecast_p10, p50 AS forecast_p50, p90 AS forecast_p90
FROM energy_analytics.forecasts
WHERE target_hour >= @lookback_start AND target_hour < @window_end
"""
# The same rows for one chunk of devices (the push handler's path, memory bounded by the chunk).
CHUNK_HOURLY_SQL = HOURLY_SQL + "  AND h.device_id IN UNNEST(@device_ids)\n"
CHUNK_READINGS_SQL = READINGS_SQL.replace("GROUP BY", "  AND device_id IN UNNEST(@device_ids)\nGROUP BY")
CHUNK_FORECAST_SQL = FORECAST_SQL + "  AND device_id IN UNNEST(@device_ids)\n"
# A chunk of a staged copy (`stage_by_device`): the range lets the sorted copy skip the rest.
STAGED_CHUNK_SQL = (
    "SELECT * FROM {table} WHERE device_id BETWEEN @first AND @last AND device_id IN UNNEST(@device_ids)"
)
# The fleet as scoring sees it: every active device with hourly rows in the range, and its span.
FLEET_SQL = """
SELECT h.device_id, MIN(h.hour) AS first_hour, MAX(h.hour) AS last_hour
FROM energy_analytics.hourly_consumption AS h
JOIN energy_analytics.dim_device AS d ON d.device_id = h.device_id AND COALESCE(d.is_active, TRUE)
WHERE h.hour >= @history_start AND h.hour < @window_end
GROUP BY h.device_id
ORDER BY h.device_id
"""
READING_COLUMNS = ("voltage_min", "voltage_max", "min_power_w")
FORECAST_COLUMNS = ("forecast_p10", "forecast_p50", "forecast_p90")
DEVICES_SQL = "SELECT device_id, nominal_voltage FROM energy_analytics.dim_device"
EXISTING_SQL = """
SELECT incident_id, device_id, start_hour, end_hour, anomaly_type, severity, score, expected, actual,
  explanation, detected_at, status, withdrawn_at, probability, energy_at_stake_kwh, cost_at_stake
FROM energy_analytics.anomalies
WHERE end_hour >= @since AND start_hour < @window_end
"""


class ScoreResult(BaseModel):
    refresh_id: str
    devices_scored: int
    hours_scored: int
    incidents_written: int
    rows_written: int  # what pipeline_runs records for this run (= incidents_written)
    new_incidents: list[str]
    published: int
    withdrawn_incidents: list[str] = []
    escalated_incidents: list[str] = []
    released_alerts: int = 0


class WindowIncidents(BaseModel):
    """The rows to MERGE into `anomalies` and which of them are new."""

    model_config = {"arbitrary_types_allowed": True}
    rows: pd.DataFrame
    new_ids: list[str]
    withdrawn_ids: list[str] = []
    escalated_ids: list[str] = []  # open incidents that go on at a higher severity than stored
    devices_scored: int
    hours_scored: int


def _load_frame(
    wh: Warehouse, event: FeaturesRefreshed | tuple[datetime, datetime]
) -> tuple[pd.DataFrame, dict[str, float]]:
    window = (event.window_start, event.window_end) if isinstance(event, FeaturesRefreshed) else event
    start = pd.Timestamp(window[0]).tz_convert(UTC)
    end = pd.Timestamp(window[1]).tz_convert(UTC)
    lookback = start - INCIDENT_LOOKBACK
    hourly = wh.query_df(
        HOURLY_SQL, {"history_start": (start - HISTORY).to_pydatetime(), "window_end": end.to_pydatetime()}
    )
    bounds = {"lookback_start": lookback.to_pydatetime(), "window_end": end.to_pydatetime()}
    frame = hourly.assign(hour=as_utc(hourly["hour"]))
    for sql in (READINGS_SQL, FORECAST_SQL):
        extra = wh.query_df(sql, bounds)
        if not extra.empty:
            extra = extra.assign(hour=as_utc(extra["hour"]))
            frame = frame.merge(extra, on=["device_id", "hour"], how="left")
    devices = wh.query_df(DEVICES_SQL)
    volts = {
        str(d): float(v)
        for d, v in zip(devices["device_id"], devices["nominal_voltage"], strict=True)
        if pd.notna(v)
    }
    return frame, volts


def _reconcile(
    found: pd.DataFrame, existing: pd.DataFrame, now: datetime, taken: set[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Give each found incident the id and first hour of an existing open row it continues or
    repeats; `taken` are ids of withdrawn rows, which a new incident must not overwrite.
    Returns the rows, the new ids and the ids whose severity rose (escalated)."""
    rows, new_ids, escalated = [], [], []
    gap = pd.Timedelta(hours=GAP_H)
    for inc in found.to_dict("records"):
        inc["status"], inc["withdrawn_at"] = OPEN, pd.NaT
        if inc["incident_id"] in taken:
            inc["incident_id"] = reissued_id(inc["incident_id"])
        same = existing[
            (existing["device_id"] == inc["device_id"])
            & (existing["start_hour"] <= inc["end_hour"] + gap)
            & (existing["end_hour"] + gap >= inc["start_hour"])
        ]
        if same.empty:
            inc["detected_at"] = now
            new_ids.append(inc["incident_id"])
        else:
            old = same.sort_values("start_hour").iloc[0]
            inc["incident_id"] = old["incident_id"]
            inc["start_hour"] = min(old["start_hour"], inc["start_hour"])
            inc["end_hour"] = max(old["end_hour"], inc["end_hour"])
            inc["detected_at"] = old["detected_at"]
            if float(old["score"]) > inc["score"]:  # keep the worst moment as the headline
                for col in (
                    "anomaly_type",
                    "severity",
                    "score",
                    "expected",
                    "actual",
                    "explanation",
                    "probability",
                ):
                    inc[col] = old[col]
            for col in ("energy_at_stake_kwh", "cost_at_stake"):  # the longer view of the same incident
                if pd.notna(old[col]) and not float(old[col]) <= float(inc[col]):
                    inc[col] = old[col]
            if SEVERITY_RANK.get(str(inc["severity"]), 0) > SEVERITY_RANK.get(str(old["severity"]), 0):
                escalated.append(inc["incident_id"])
        rows.append(inc)
    columns = [*found.columns, "detected_at", "status", "withdrawn_at"]
    out = pd.DataFrame(rows, columns=columns).drop(columns=["hours_flagged"])
    out = out.drop_duplicates("incident_id", keep="last")
    return out, new_ids, sorted(set(escalated))


class _FleetLoader:
    """Loads the panel of one chunk of devices on the fleet's hour grid, so a chunk's rows, and
    every rolling window over them, line up with the whole fleet's."""

    def __init__(
        self,
        wh: Warehouse,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        scored: set[str] | None = None,
        reuse_bytes: int = 0,
    ) -> None:
        self.wh, self.end = wh, end
        self.rank_from = start - INCIDENT_LOOKBACK
        self.scored = scored if scored is not None else set()
        self.reuse = _Reuse(reuse_bytes)
        self.history = {"history_start": (start - HISTORY).to_pydatetime(), "window_end": end.to_pydatetime()}
        self.bounds = {
            "lookback_start": (start - INCIDENT_LOOKBACK).to_pydatetime(),
            "window_end": end.to_pydatetime(),
        }
        spans = wh.query_df(FLEET_SQL, self.history)
        self.devices = [str(d) for d in spans["device_id"]]
        self.first = as_utc(spans["first_hour"]).min() if len(spans) else None
        last = as_utc(spans["last_hour"]).max() if len(spans) else None
        self.last_row = int((last - self.first) / pd.Timedelta(hours=1)) if len(spans) else -1
        devices = wh.query_df(DEVICES_SQL)
        self.volts = {
            str(d): float(v)
            for d, v in zip(devices["device_id"], devices["nominal_voltage"], strict=True)
            if pd.notna(v)
        }
        self.staged: dict[str, str] = {}
        self.staged_for: set[str] | None = None  # None: the whole fleet

    def stage(self, device_ids: list[str] | None = None) -> None:
        """On DuckDB, copy each range once, sorted by device, so the chunk reads stay O(chunk)
        (docs/scaling.md); BigQuery's tables are clustered by device_id and read as they are.

        The whole fleet when this loader sweeps it; only `device_ids` when the sweep of another
        shard is reused: at 30,000 meters, six shards in one process each copying the whole
        fleet's weeks ran out of the staging memory the process shares (docs/scaling.md). Once per
        loader; a chunk outside what was staged is read from the tables (`_chunk`)."""
        stage = getattr(self.wh, "stage_by_device", None)
        if self.staged or not callable(stage) or not self.devices:
            return
        ranges = (
            (CHUNK_HOURLY_SQL, HOURLY_SQL, self.history),
            (CHUNK_READINGS_SQL, READINGS_SQL, self.bounds),
            (CHUNK_FORECAST_SQL, FORECAST_SQL, self.bounds),
        )
        if device_ids is None:
            self.staged = {chunk: stage(sql, params) for chunk, sql, params in ranges}
        else:
            ids = {"device_ids": sorted(device_ids)}
            self.staged = {chunk: stage(chunk, {**params, **ids}) for chunk, _, params in ranges}
            self.staged_for = set(device_ids)

    def _chunk(self, sql: str, params: dict[str, Any], device_ids: list[str]) -> pd.DataFrame:
        outside = self.staged_for is not None and not self.staged_for.issuperset(device_ids)
        if sql not in self.staged or outside:
            return self.wh.query_df(sql, {**params, "device_ids": device_ids})
        return self.wh.query_df(
            STAGED_CHUNK_SQL.format(table=self.staged[sql]),
            {"first": min(device_ids), "last": max(device_ids), "device_ids": device_ids},
        )

    def panel(self, device_ids: list[str], fleet: Fleet, *, energy_only: bool = False) -> Panel:
        """The chunk's panel: one the sweeps kept when there is one (`_Reuse`), else loaded (and
        kept, whole, while the budget lasts: a sweep asking energy only is then served too)."""
        key = tuple(device_ids)
        kept = self.reuse.panels.get(key)
        if kept is not None:
            return replace(kept, fleet=fleet)
        hours = int((self.end - self.first) / pd.Timedelta(hours=1)) if self.first is not None else 0
        keep = self.reuse.fits(hours * len(device_ids) * PANEL_BYTES_PER_CELL)
        panel = self._load(device_ids, energy_only=energy_only and not keep)
        if keep:
            self.reuse.keep_panel(key, panel)
        return replace(panel, fleet=fleet)

    def keep_ranking(self, device_ids: list[str], panel: Panel, findings: list[Finding]) -> None:
        """After the calibration's sweep has run the detectors on a chunk: keep what scoring the
        chunk's scored devices needs (their `HourTable` and `Presence`), within the budget, and
        drop the chunk's panel; scoring then finishes the table instead of starting again."""
        key = tuple(device_ids)
        self.reuse.drop_panel(key)
        ids = [d for d in device_ids if d in self.scored]
        if not ids or not self.reuse.rankings_open:
            return
        table = hour_table(panel, findings, include_missing=True, from_hour=self.rank_from)
        presence = Presence(panel.hours, panel.devices, panel.present)
        if len(ids) < len(panel.devices):  # a shard: keep its devices' rows only
            table = table.for_devices(set(ids))
            presence = Presence(panel.hours, ids, panel.present[:, [panel.devices.index(d) for d in ids]])
        self.reuse.keep_ranking(ids, table, presence)

    def _load(self, device_ids: list[str], *, energy_only: bool) -> Panel:
        hourly = self._chunk(CHUNK_HOURLY_SQL, self.history, device_ids)
        frame = hourly.assign(hour=as_utc(hourly["hour"]))
        panel = panel_from_long(frame, nominal_voltage=self.volts, start=self.first, end=self.end)
        if not energy_only:  # the fleet shifts read energy and peak power only
            for sql, columns in (
                (CHUNK_READINGS_SQL, READING_COLUMNS),
                (CHUNK_FORECAST_SQL, FORECAST_COLUMNS),
            ):  # every chunk gets the columns (NaN without rows), so the same detectors run
                panel = with_columns(panel, self._chunk(sql, self.bounds, device_ids), columns)
        return panel


# What a kept panel holds per device-hour: energy and every optional float column, and `present`.
PANEL_BYTES_PER_CELL = 8 * (1 + len(OPTIONAL_COLUMNS)) + 1


class _Reuse:
    """What one scoring keeps between its sweeps of the fleet, within `budget` bytes.

    The fleet is swept four times a chunk at a time (two fleet shifts, the calibration's candidate
    counts, then scoring): without reuse each sweep loads every chunk again and the last runs every
    detector again. Panels are kept in fleet order until the budget is spent, then no more; each
    is replaced by its chunk's ranking in the calibration's sweep, kept the same way. What is kept
    is so always a leading run of the fleet, the rest is loaded and scored as before, and memory
    stays bounded by the budget plus one chunk, whatever the fleet (docs/scaling.md)."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.panels_open = self.rankings_open = budget > 0
        self.panels: dict[tuple[str, ...], Panel] = {}
        self.rankings: list[tuple[list[str], HourTable, Presence]] = []
        self._panel_bytes: dict[tuple[str, ...], int] = {}

    def fits(self, nbytes: int) -> bool:
        """Whether a panel of about `nbytes` is kept (once one is not, none after it is)."""
        self.panels_open = self.panels_open and self.used + nbytes <= self.budget
        return self.panels_open

    def stop_keeping_panels(self) -> None:
        self.panels_open = False

    def keep_panel(self, key: tuple[str, ...], panel: Panel) -> None:
        nbytes = panel.energy_kwh.nbytes + panel.present.nbytes + sum(a.nbytes for a in panel.extra.values())
        self.panels[key], self._panel_bytes[key] = panel, nbytes
        self.used += nbytes

    def drop_panel(self, key: tuple[str, ...]) -> None:
        if self.panels.pop(key, None) is not None:
            self.used -= self._panel_bytes.pop(key)

    def keep_ranking(self, ids: list[str], table: HourTable, presence: Presence) -> None:
        nbytes = int(table.frame.memory_usage(index=True, deep=False).sum()) + presence.present.nbytes
        self.rankings_open = self.rankings_open and self.used + nbytes <= self.budget
        if self.rankings_open:
            self.rankings.append((ids, table, presence))
            self.used += nbytes


def _chunks(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _fleet_context(loader: _FleetLoader, cfg: DetectorConfig, chunk: int) -> Fleet:
    """The fleet-wide numbers a chunk needs (`Fleet`), swept a chunk at a time: two sweeps for
    the shifts (each hour's median over every device, so the hours x fleet terms are kept: 8
    bytes a device-hour, against the ~1 kB a device-hour of a whole-fleet panel), one more for
    the per-hour candidate counts when a calibration is in use."""
    fleet = Fleet(size=len(loader.devices), last_row=loader.last_row)
    for _sweep in range(2):
        terms: dict[str, np.ndarray] = {}
        at = 0
        for ids in _chunks(loader.devices, chunk):
            for name, lr in fleet_terms(loader.panel(ids, fleet, energy_only=True), cfg).items():
                if name not in terms:
                    terms[name] = np.full((lr.shape[0], fleet.size), np.nan)
                terms[name][:, at : at + len(ids)] = lr
            at += len(ids)
        shifts = {name: fleet_shift_from_terms(lr, cfg.min_fleet) for name, lr in terms.items()}
        fleet = replace(fleet, shifts={**fleet.shifts, **shifts})
    cal = load_calibration()
    if cal is not None:
        counts = None
        for ids in _chunks(loader.devices, chunk):
            panel = loader.panel(ids, fleet)
            _, findings = run_detectors(panel, cfg)
            part = candidates_per_hour(findings, cal.candidate_ratio)
            counts = part if counts is None else counts + part
            loader.keep_ranking(ids, panel, findings)
            del panel, findings
        fleet = replace(fleet, candidates=counts)
    return fleet


# The fleet's numbers of one refresh, kept for the refresh's other shards: every shard of a
# features-refreshed event has the whole fleet's window in common, and sweeping the fleet again
# for each shard made the anomaly stage grow with shards x fleet (at 10,000 meters, two shards of
# 5,000, both pushes ran past the 600 s push deadline; docs/scaling.md). A few refreshes' worth:
# a Fleet is a few arrays of one number per hour.
FLEET_CACHE_SIZE = 4
_fleets: OrderedDict[Hashable, Fleet] = OrderedDict()
_computing: dict[Hashable, threading.Lock] = {}
_fleets_guard = threading.Lock()


def _shared_fleet(key: Hashable, compute: Callable[[], Fleet]) -> Fleet:
    """`compute()` once per key in this process; concurrent shards of one refresh wait for the
    first instead of sweeping the fleet beside it."""
    with _fleets_guard:
        if key in _fleets:
            _fleets.move_to_end(key)
            return _fleets[key]
        lock = _computing.setdefault(key, threading.Lock())
    with lock:
        with _fleets_guard:
            if key in _fleets:
                return _fleets[key]
        try:
            fleet = compute()
        except BaseException:  # a failed sweep leaves no lock behind; the redelivery sweeps again
            with _fleets_guard:
                _computing.pop(key, None)
            raise
        with _fleets_guard:  # stored before the lock goes, so nobody starts a second sweep
            _fleets[key] = fleet
            while len(_fleets) > FLEET_CACHE_SIZE:
                _fleets.popitem(last=False)
            _computing.pop(key, None)
    return fleet


def detect_window(
    event: FeaturesRefreshed,
    wh: Warehouse,
    *,
    now: datetime,
    cfg: DetectorConfig | None = None,
    tariff_per_kwh: float = DEFAULT_TARIFF,
    chunk: int = 100,
    fleet_key: Hashable | None = None,
    reuse_mb: float = DEFAULT_REUSE_MB,
) -> WindowIncidents:
    """Score `event`'s window for its devices; read-only on the warehouse.

    Devices are loaded and scored `chunk` at a time (`Settings.anomaly_device_chunk`), so peak
    memory follows the chunk, not the fleet; the fleet's own numbers (`Fleet`) are gathered first,
    which keeps every result identical to scoring the whole fleet in one panel. With `fleet_key`
    (the warehouse and refresh, `score_window`) those numbers are computed once per refresh and
    fleet and reused by its other shards and redeliveries in this process. Up to `reuse_mb`
    (`Settings.anomaly_reuse_mb`) of chunk panels and rankings are kept between the sweeps
    (`_Reuse`); 0 loads and scores every chunk afresh in each, with the same result.
    """
    cfg = cfg or DetectorConfig()
    start = pd.Timestamp(event.window_start).tz_convert(UTC)
    end = pd.Timestamp(event.window_end).tz_convert(UTC)
    wanted = set(event.device_ids)
    loader = _FleetLoader(wh, start, end, scored=wanted, reuse_bytes=int(reuse_mb * 2**20))
    scored = [d for d in loader.devices if d in wanted]
    if not scored:
        return WindowIncidents(rows=pd.DataFrame(), new_ids=[], devices_scored=0, hours_scored=0)

    def sweep() -> Fleet:
        loader.stage()
        return _fleet_context(loader, cfg, chunk)

    if fleet_key is None:
        fleet = sweep()
    else:  # the fleet as this loader sees it is part of the key: another fleet is computed anew
        seen = (tuple(loader.devices), loader.first, loader.last_row)
        key = (fleet_key, start, end, seen, cfg.model_dump_json())
        fleet = _shared_fleet(key, sweep)
    loader.stage(scored)  # a reused sweep: only this shard's devices (nothing if the fleet is staged)
    since = (start - INCIDENT_LOOKBACK - pd.Timedelta(hours=GAP_H)).to_pydatetime()
    existing = wh.query_df(EXISTING_SQL, {"since": since, "window_end": end.to_pydatetime()})
    for col in ("start_hour", "end_hour", "detected_at", "withdrawn_at"):
        existing[col] = as_utc(existing[col])
    found_parts, withdrawn_parts, hours_scored = [], [], 0

    def score(ids: list[str], table: HourTable, presence: Presence) -> None:
        nonlocal hours_scored
        ranked = table.finish(fleet)
        scope = (ranked["hour"] >= start - INCIDENT_LOOKBACK) & (ranked["hour"] < end)
        found = group_incidents(
            ranked[scope].reset_index(drop=True), table.explainers, gap_h=GAP_H, tariff_per_kwh=tariff_per_kwh
        )
        found_parts.append(found)
        withdrawn_parts.append(find_withdrawn(existing, found, presence, set(ids), now))
        hours_scored += int(np.sum((ranked["hour"] >= start) & (ranked["hour"] < end)))

    loader.reuse.stop_keeping_panels()  # scoring reads each chunk once: keeping one saves nothing
    kept = loader.reuse.rankings  # the leading chunks, ranked by the calibration's sweep
    for ids, table, presence in kept:
        score(ids, table, presence)
    done = {d for ids, _, _ in kept for d in ids}
    for ids in _chunks([d for d in scored if d not in done], chunk):
        panel = loader.panel(ids, fleet)
        _, findings = run_detectors(panel, cfg)
        table = hour_table(panel, findings, include_missing=True, from_hour=start - INCIDENT_LOOKBACK)
        score(ids, table, Presence(panel.hours, panel.devices, panel.present))
        del panel, findings, table
    kept.clear()
    found_parts = [f for f in found_parts if not f.empty] or found_parts[-1:]
    all_found = pd.concat(found_parts, ignore_index=True)
    # An incident that ended before the window is the earlier event's business, not ours.
    found = all_found[all_found["end_hour"] > start]
    withdrawn_parts = [w for w in withdrawn_parts if not w.empty]
    # in existing's order, as one panel gives
    withdrawn = pd.concat(withdrawn_parts).sort_index() if withdrawn_parts else existing.iloc[0:0]
    closed = is_withdrawn(existing["status"]) | existing["incident_id"].isin(withdrawn["incident_id"])
    rows, new_ids, escalated = _reconcile(
        found, existing[~closed], now, taken=set(existing.loc[closed, "incident_id"])
    )
    if not withdrawn.empty:
        withdrawn = withdrawn[rows.columns]
        rows = withdrawn if rows.empty else pd.concat([rows, withdrawn], ignore_index=True)
    return WindowIncidents(
        rows=rows,
        new_ids=new_ids,
        withdrawn_ids=list(withdrawn["incident_id"]),
        escalated_ids=escalated,
        devices_scored=len(scored),
        hours_scored=hours_scored,
    )


DEVICE_INCIDENTS_SQL = """
SELECT incident_id, start_hour, end_hour, anomaly_type, severity, score, explanation
FROM energy_analytics.anomalies
WHERE device_id = @device_id AND end_hour > @start AND start_hour < @end
  AND (status IS NULL OR status != 'withdrawn')
ORDER BY start_hour
"""
LAST_HOUR_SQL = (
    "SELECT MAX(hour) AS last_hour FROM energy_analytics.hourly_consumption WHERE device_id = @device_id"
)


def device_view(
    wh: Warehouse,
    device_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    days: int = 28,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(hour, actual, expected) for one device and its stored incidents, for `gridsight anomaly plot`.

    Expected load is recomputed with the detectors' own baseline, so the picture shows what the
    scores were judged against. Default range: the device's last `days` days of data.
    """
    if end is None:
        last = wh.query_df(LAST_HOUR_SQL, {"device_id": device_id})["last_hour"].iloc[0]
        if pd.isna(last):
            raise NotFound(f"no hourly consumption for device {device_id!r}")
        end = pd.Timestamp(last).tz_localize(UTC) if pd.Timestamp(last).tzinfo is None else pd.Timestamp(last)
        end = (end + pd.Timedelta(hours=1)).to_pydatetime()
    start = start or end - timedelta(days=days)
    frame, volts = _load_frame(wh, (start, end))
    if device_id not in set(frame["device_id"]):
        raise NotFound(f"no hourly consumption for device {device_id!r} before {end.isoformat()}")
    panel = panel_from_long(frame, nominal_voltage=volts, end=pd.Timestamp(end))
    base, _ = run_detectors(panel)
    col = panel.devices.index(device_id)
    load = pd.DataFrame(
        {"hour": panel.hours, "actual": panel.energy_kwh[:, col], "expected": base.expected[:, col]}
    )
    load = load[(load["hour"] >= pd.Timestamp(start)) & (load["hour"] < pd.Timestamp(end))]
    incidents = wh.query_df(DEVICE_INCIDENTS_SQL, {"device_id": device_id, "start": start, "end": end})
    for col_name in ("start_hour", "end_hour"):
        incidents[col_name] = as_utc(incidents[col_name])
    return load.reset_index(drop=True), incidents


def write_incidents(wh: Warehouse, incidents: WindowIncidents) -> int:
    if incidents.rows.empty:
        return 0
    return wh.merge("anomalies", incidents.rows, key=["incident_id"])


def publish_new(incidents: WindowIncidents, publisher: Publisher, correlation_id: str | None) -> int:
    """New incidents, then escalated ones (reason 'escalated': alerting decides them again)."""
    if incidents.rows.empty:  # nothing scored (e.g. no device of the event has data): nothing new
        return 0
    published = 0
    announcements: tuple[tuple[DetectedReason, list[str]], ...] = (
        ("new", incidents.new_ids),
        ("escalated", incidents.escalated_ids),
    )
    for reason, ids in announcements:
        for inc in incidents.rows[incidents.rows["incident_id"].isin(ids)].to_dict("records"):
            publisher.publish(detected_event(inc, reason), correlation_id=correlation_id)
            published += 1
    return published


def detected_event(
    inc: dict[str, Any], reason: DetectedReason, released_for: datetime | None = None
) -> AnomaliesDetected:
    """The announcement of one incident row (new, escalated or released)."""
    return AnomaliesDetected(
        incident_id=inc["incident_id"],
        device_id=inc["device_id"],
        anomaly_type=inc["anomaly_type"],
        severity=inc["severity"],
        score=float(inc["score"]),
        start_hour=pd.Timestamp(inc["start_hour"]).to_pydatetime(),
        end_hour=pd.Timestamp(inc["end_hour"]).to_pydatetime(),
        explanation=inc["explanation"],
        reason=reason,
        released_for=released_for,
    )


# Alerts held in quiet hours ('quiet'), of incidents still open.
QUIET_SQL = """
SELECT incident_id, device_id, anomaly_type, severity, score, start_hour, end_hour, explanation
FROM energy_analytics.anomalies
WHERE alert_status = 'quiet' AND (status IS NULL OR status != 'withdrawn')
ORDER BY incident_id
"""


def release_quiet_alerts(
    wh: Warehouse,
    publisher: Publisher,
    now: datetime,
    correlation_id: str | None,
    cfg: AlertSettings | None = None,
) -> int:
    """After quiet hours, announce every alert held in them again (reason 'released'), so alerting
    decides it anew: sent, or suppressed by the device's dedupe. Runs at the end of each scoring
    push, which every sync brings (every 15 minutes), so no scheduler is needed; in quiet hours it
    does nothing. The dedupe key is per hour: pushes of the same hour announce once."""
    if cfg is None:
        try:
            cfg = load_alert_settings()
        except TransientError as exc:  # the alert route says so on every delivery; scoring goes on
            log.warning("held alerts not released", extra={"reason": str(exc)})
            return 0
    if in_quiet_hours(now, cfg):
        return 0
    held = wh.query_df(QUIET_SQL)
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for inc in held.to_dict("records"):
        publisher.publish(detected_event(inc, "released", released_for=hour), correlation_id=correlation_id)
    return len(held)


def publish_withdrawn(incidents: WindowIncidents, publisher: Publisher, correlation_id: str | None) -> int:
    if incidents.rows.empty:  # nothing scored: nothing withdrawn
        return 0
    gone = incidents.rows[incidents.rows["incident_id"].isin(incidents.withdrawn_ids)]
    for inc in gone.to_dict("records"):
        event = AnomaliesWithdrawn(
            incident_id=inc["incident_id"],
            device_id=inc["device_id"],
            anomaly_type=inc["anomaly_type"],
            start_hour=pd.Timestamp(inc["start_hour"]).to_pydatetime(),
            end_hour=pd.Timestamp(inc["end_hour"]).to_pydatetime(),
            withdrawn_at=pd.Timestamp(inc["withdrawn_at"]).to_pydatetime(),
            reason=WITHDRAWN_REASON,
        )
        publisher.publish(event, correlation_id=correlation_id)
    return len(gone)


class ScoringContext(Protocol):
    """The part of `shared.push.PushContext` scoring needs (read-only, as PushContext is frozen)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def publisher(self) -> Publisher: ...
    @property
    def correlation_id(self) -> str | None: ...


def _existing_incidents(wh: Warehouse, event: FeaturesRefreshed) -> pd.DataFrame:
    """The incident rows `detect_window` reconciles `event`'s window against (EXISTING_SQL)."""
    start = pd.Timestamp(event.window_start).tz_convert(UTC)
    since = (start - INCIDENT_LOOKBACK - pd.Timedelta(hours=GAP_H)).to_pydatetime()
    end = pd.Timestamp(event.window_end).tz_convert(UTC).to_pydatetime()
    rows = wh.query_df(EXISTING_SQL, {"since": since, "window_end": end})
    return rows.sort_values("incident_id").reset_index(drop=True)


def _warehouse_identity(settings: Settings) -> str:
    if settings.warehouse_backend == "bigquery":
        return f"bigquery:{settings.gcp_project}.{settings.analytics_dataset}"
    return f"duckdb:{settings.duckdb_path.resolve()}"


def score_window(event: FeaturesRefreshed, ctx: ScoringContext) -> ScoreResult:
    """Detect, publish the new incidents, then MERGE. A crash between publishing and the MERGE
    redelivers the event and publishes those incidents again (at least once; AnomaliesDetected is
    deduped downstream on incident_id); publishing after the MERGE could lose an alert for good.

    Detection (seconds to minutes for a large fleet) reads the last published snapshot, without
    the one DuckDB writer lock, so the forecast MERGE, alert deliveries and the next refresh are
    not queued behind it (measured by bench/bench_scale.py, docs/scaling.md). Optimistic: under
    the writer lock the incident rows detection reconciled against are read again, and if another
    writer changed them meanwhile (a concurrent delivery of an overlapping window), the window is
    scored again under the lock, so the rows written are those scoring under the lock would give.
    """
    now = datetime.now(UTC)
    options = {
        "now": now,
        "tariff_per_kwh": ctx.settings.chat_flat_tariff_per_kwh,
        "chunk": ctx.settings.anomaly_device_chunk,
        "reuse_mb": ctx.settings.anomaly_reuse_mb,
        "fleet_key": (_warehouse_identity(ctx.settings), refresh_of(event.refresh_id)),
    }
    with open_warehouse(ctx.settings, read_only=True) as snapshot:
        incidents = detect_window(event, snapshot, **options)  # type: ignore[arg-type]
        seen = _existing_incidents(snapshot, event)
    with open_warehouse(ctx.settings) as wh:
        if not _existing_incidents(wh, event).equals(seen):
            log.info("incidents changed while scoring; scoring again under the lock",
                     extra={"refresh_id": event.refresh_id})  # fmt: skip
            incidents = detect_window(event, wh, **options)  # type: ignore[arg-type]
        published = publish_new(incidents, ctx.publisher, ctx.correlation_id)
        publish_withdrawn(incidents, ctx.publisher, ctx.correlation_id)
        written = write_incidents(wh, incidents)
        released = release_quiet_alerts(wh, ctx.publisher, now, ctx.correlation_id)
    log.info(
        "anomalies scored",
        extra={
            "refresh_id": event.refresh_id,
            "devices": incidents.devices_scored,
            "window": [event.window_start.isoformat(), event.window_end.isoformat()],
            "incidents_written": written,
            "new_incidents": len(incidents.new_ids),
            "withdrawn_incidents": len(incidents.withdrawn_ids),
            "escalated_incidents": len(incidents.escalated_ids),
            "released_alerts": released,
        },
    )
    return ScoreResult(
        refresh_id=event.refresh_id,
        devices_scored=incidents.devices_scored,
        hours_scored=incidents.hours_scored,
        incidents_written=written,
        rows_written=written,
        new_incidents=incidents.new_ids,
        published=published,
        withdrawn_incidents=incidents.withdrawn_ids,
        escalated_incidents=incidents.escalated_ids,
        released_alerts=released,
    )
