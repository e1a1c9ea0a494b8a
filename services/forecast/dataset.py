"""Training examples from dense hourly series: (features, scaled target) at many origins.

Shared by the CSV backtest and the warehouse trainer, so both learn from exactly the rows the
model server will later be asked about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.forecast.calendars import PUBLIC_DATA_CALENDAR, SiteCalendar
from services.forecast.features import HORIZON_HOURS, window_features, windows_at

__all__ = ["Panel", "device_timezones", "examples", "origin_positions"]


@dataclass(frozen=True)
class Panel:
    """Hourly series of many devices on one hourly index; NaN marks a missing hour."""

    index: pd.DatetimeIndex  # UTC, tz-naive
    kwh: np.ndarray  # (devices, hours)
    device_ids: list[str]
    temp_c: np.ndarray | None = None  # (hours,) shared outside temperature, or (devices, hours)
    # One calendar for every device, or one per device (time zone, holidays, closures).
    calendar: SiteCalendar | tuple[SiteCalendar, ...] = PUBLIC_DATA_CALENDAR

    def calendar_of(self, device: int) -> SiteCalendar:
        return self.calendar if isinstance(self.calendar, SiteCalendar) else self.calendar[device]

    def temp_rows(self, device: int) -> np.ndarray | None:
        if self.temp_c is None:
            return None
        return self.temp_c if self.temp_c.ndim == 1 else self.temp_c[device]

    def position(self, ts: pd.Timestamp) -> int:
        """Hour offset of `ts` from the start of the index (may lie outside it)."""
        return int((ts - self.index[0]) // pd.Timedelta(hours=1))


def device_timezones(frame: pd.DataFrame) -> dict[str, str | None]:
    """device_id → its site's IANA time zone (None when the warehouse has none)."""
    if "timezone" not in frame.columns:
        return {}
    zones = frame.drop_duplicates("device_id").set_index("device_id")["timezone"]
    return {str(k): (str(v) if isinstance(v, str) and v else None) for k, v in zones.items()}


def origin_positions(panel: Panel, first: pd.Timestamp, last: pd.Timestamp, stride_hours: int) -> np.ndarray:
    """Positions of origins from `first` to `last` inclusive, every `stride_hours`."""
    start, stop = panel.position(first), panel.position(last)
    return np.arange(start, stop + 1, stride_hours)


def examples(
    panel: Panel, positions: np.ndarray, *, with_target: bool = True, closure_calendar: bool = True
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features for every device × origin position, with targets scaled by each window's scale.

    Returns (features, scaled targets (NaN when unknown), device index per row, origin position per
    row). Windows that have no history at all (scale NaN) are dropped.
    """
    frames, targets, devs, origins = [], [], [], []
    hours = np.arange(HORIZON_HOURS)
    total = panel.kwh.shape[1]
    origin_times = panel.index[0] + pd.to_timedelta(positions, unit="h")
    for d in range(len(panel.device_ids)):
        series = panel.kwh[d]
        temp = panel.temp_rows(d)
        kwh_w = windows_at(series, positions)
        temp_w = windows_at(temp, positions) if temp is not None else None
        feats, scale = window_features(
            kwh_w, temp_w, origin_times, panel.calendar_of(d), closure_calendar=closure_calendar
        )
        ok = np.isfinite(scale)
        if not ok.any():
            continue
        row_ok = np.repeat(ok, HORIZON_HOURS)
        if with_target:
            idx = positions[:, None] + hours[None, :]
            inside = idx < total
            y = np.where(inside, series[np.minimum(idx, total - 1)], np.nan)
            y = (y / np.where(ok, scale, 1.0)[:, None]).reshape(-1)
        else:
            y = np.full(len(positions) * HORIZON_HOURS, np.nan)
        frames.append(feats.loc[row_ok].reset_index(drop=True))
        targets.append(y[row_ok])
        devs.append(np.full(int(row_ok.sum()), d))
        origins.append(np.repeat(positions[ok], HORIZON_HOURS))
    if not frames:
        raise ValueError("no device has any history before the requested origins")
    return (
        pd.concat(frames, ignore_index=True),
        np.concatenate(targets),
        np.concatenate(devs),
        np.concatenate(origins),
    )
