"""The hours × devices grid every detector reads.

Detectors work on wide arrays (one row per UTC hour, one column per device) so one numpy
expression scores a whole fleet at once; the CSV evaluation path and the warehouse path both build
this grid, which is what keeps them one implementation. A missing hour is NaN, never dropped, so a
shift by 168 rows is always "the same hour last week".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

__all__ = [
    "Fleet",
    "Panel",
    "arriving",
    "as_utc",
    "panel_from_long",
    "partly_covered",
    "settled_rows",
    "with_columns",
]

OPTIONAL_COLUMNS = (
    "coverage",
    "occupancy_share",
    "forecast_p10",
    "forecast_p50",
    "forecast_p90",
    "voltage_min",
    "voltage_max",
    "max_power_w",
    "min_power_w",
)


def as_utc(values: pd.Series) -> pd.Series:
    """`values` as UTC timestamps. Without `cache=False` pandas first walks the column in Python to
    judge whether caching pays: 14 ms for a chunk's 150,000 hours, already typed datetime64, about
    2 s of every 15 s anomaly run at 1,000 meters (docs/scaling.md)."""
    return pd.to_datetime(values, utc=True, cache=False)


@dataclass(frozen=True)
class Fleet:
    """What the rest of the fleet contributes when a panel holds only some of its devices.

    The service scores a fleet a chunk of devices at a time (memory bounded by the chunk), yet a
    few numbers are the whole fleet's: the per-hour shift every expectation is moved by (a closure
    moves most meters at once), the last hour any device reported (a gap is only a dropout once
    the fleet has moved past it) and how many meters are candidates in each hour (the
    calibration's `fleet_share`). With these given, a chunk scores exactly as in one panel.
    Arrays are per row of the panel's hours, which must be the fleet's grid.
    """

    size: int
    last_row: int
    shifts: dict[str, np.ndarray] = field(default_factory=dict)
    candidates: np.ndarray | None = None


@dataclass(frozen=True)
class Panel:
    hours: pd.DatetimeIndex
    devices: list[str]
    energy_kwh: np.ndarray
    present: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    nominal_voltage: np.ndarray | None = None
    fleet: Fleet | None = None  # None: the panel is the whole fleet

    def get(self, name: str) -> np.ndarray | None:
        return self.extra.get(name)


def panel_from_long(
    frame: pd.DataFrame,
    *,
    nominal_voltage: dict[str, float] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> Panel:
    """Pivot `device_id, hour, energy_kwh[, optional columns]` rows onto a regular hourly grid.

    `present` marks hours that had a row at all, so a dropout (no row) is told apart from a row
    whose value is unusable (NaN energy from a meter that reported no register delta).
    """
    if frame.empty:
        raise ValueError("no hourly rows to score")
    hours_col = as_utc(frame["hour"]).dt.floor("h")
    lo = hours_col.min() if start is None else min(hours_col.min(), start)
    hi = hours_col.max() if end is None else max(hours_col.max(), end - pd.Timedelta(hours=1))
    hours = pd.date_range(lo, hi, freq="h", tz="UTC")
    devices = sorted(frame["device_id"].astype(str).unique())
    row = ((hours_col - hours[0]) // pd.Timedelta(hours=1)).to_numpy(dtype=np.int64)
    col = pd.Categorical(frame["device_id"].astype(str), categories=devices).codes.astype(np.int64)
    shape = (len(hours), len(devices))

    def grid(values: pd.Series) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[row, col] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        return out

    present = np.zeros(shape, dtype=bool)
    present[row, col] = True
    extra = {name: grid(frame[name]) for name in OPTIONAL_COLUMNS if name in frame.columns}
    volts = None
    if nominal_voltage:
        volts = np.array([nominal_voltage.get(d, np.nan) for d in devices], dtype=float)
    return Panel(hours, devices, grid(frame["energy_kwh"]), present, extra, volts)


def with_columns(panel: Panel, frame: pd.DataFrame, columns: tuple[str, ...]) -> Panel:
    """`panel` with `columns` of `frame` (one row per device_id and hour) on its grid, NaN where
    either has no row: the left join of the panel's rows with `frame`, without joining frames (a
    chunk's weeks of hourly rows merged with a few hours of readings spent most of the merge
    copying the weeks; docs/scaling.md)."""
    extra = {name: np.full(panel.energy_kwh.shape, np.nan) for name in columns}
    if not frame.empty:
        hours = as_utc(frame["hour"])
        since = hours - panel.hours[0]
        row = (since // pd.Timedelta(hours=1)).to_numpy(dtype=np.int64)
        on_hour = (since % pd.Timedelta(hours=1) == pd.Timedelta(0)).to_numpy()  # joins match exactly
        col = pd.Categorical(frame["device_id"].astype(str), categories=panel.devices).codes.astype(np.int64)
        on_grid = on_hour & (col >= 0) & (row >= 0) & (row < len(panel.hours))
        on_grid[on_grid] &= panel.present[row[on_grid], col[on_grid]]
        for name in columns:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
            extra[name][row[on_grid], col[on_grid]] = values[on_grid]
    return replace(panel, extra={**panel.extra, **extra})


def settled_rows(panel: Panel, grace_h: int) -> np.ndarray:
    """Rows (as a column, to broadcast over devices) the fleet has moved `grace_h` hours past: any
    device has data that much later, so a missing or partly covered hour there is known to be one
    and not the grid's ragged edge. The fleet's newest row when the panel holds part of it."""
    if panel.fleet is not None:
        last = panel.fleet.last_row
    else:
        rows_with_data = np.flatnonzero(panel.present.any(axis=1))
        last = rows_with_data[-1] if len(rows_with_data) else -1
    return (np.arange(len(panel.hours)) <= last - grace_h)[:, None]


def partly_covered(panel: Panel) -> np.ndarray:
    """Cells of hours that have a row but not all their readings (coverage < 1)."""
    coverage = panel.get("coverage")
    if coverage is None:
        return np.zeros(panel.energy_kwh.shape, dtype=bool)
    return panel.present & np.isfinite(coverage) & (coverage < 1)


def arriving(panel: Panel, grace_h: int) -> np.ndarray:
    """Cells of hours still arriving: partly covered and not yet settled. Their kWh is only the
    readings so far (a quarter of the hour at hh:15), so no detector judges them on it."""
    return partly_covered(panel) & ~settled_rows(panel, grace_h)
