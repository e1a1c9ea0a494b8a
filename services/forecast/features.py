"""Forecast features: one implementation used by the trainer, the backtest and the model server.

A forecast is made at an *origin* (the first hour to forecast) from the `HISTORY_HOURS` hours before
it, for the 24 hours `origin + h`, h = 0..23. Everything here is computed from a history window that
ends just before the origin, so no feature can see the future: the backtest's causality test and
the model server's instances rely on that.

Buildings differ in size by orders of magnitude, so one global model learns shapes, not levels:
every energy value is divided by the device's mean over the last week (`scale`), and predictions
are multiplied back. Closures and holidays break the weekly cycle, hence the calendar flags for the
target day, for the day the 24 h lag comes from and for the day the 168 h lag comes from, plus
regime signals (yesterday against the same weekday a week before, and against the median day of
its own type over four weeks: a closure or vacation shows as a drop). Calendar features are in the
site's local time (`calendars.SiteCalendar`: time zone, public holidays, closures). Four weeks of
history give a same-weekday profile over four weeks, steadier than one or two (measured on the
development windows, see the forecaster's experiment log).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from services.forecast.calendars import PUBLIC_DATA_CALENDAR, SiteCalendar

__all__ = [
    "FEATURE_NAMES",
    "HISTORY_HOURS",
    "HORIZON_HOURS",
    "MIN_HISTORY_HOURS",
    "dense_series",
    "holiday_flags",
    "window_features",
    "windows_at",
]

HISTORY_HOURS = 672  # four weeks: the longest lag is 672 h (a four-week weekly profile)
MIN_HISTORY_HOURS = 336  # what an instance must at least carry; older hours may be left out
HORIZON_HOURS = 24
_MIN_SCALE = 1e-3

FEATURE_NAMES: tuple[str, ...] = (
    "h",
    "target_hour",
    "target_dow",
    "target_holiday",
    "target_closure",
    "lag24_holiday",
    "lag168_holiday",
    "log_scale",
    "lag24",
    "lag48",
    "lag168",
    "lag336",
    "lag504",
    "lag672",
    "same_weekday_mean_4w",
    "same_weekday_median_4w",
    "same_hour_mean_7d",
    "same_hour_min_7d",
    "last_3h_mean",
    "last_day_mean",
    "last_day_max",
    "last_day_min",
    "prev_day_mean",
    "week_ago_day_mean",
    "regime_ratio",
    "target_day_last_week_mean",
    "missing_share",
    "same_daytype_mean_14d",
    "same_daytype_median_14d",
    "same_daytype_median_28d",
    "last_day_vs_daytype",
    "lag168_x_regime",
    "temp_last_24h_mean",
    "temp_same_hour_yesterday",
)


def holiday_flags(
    days: pd.DatetimeIndex | np.ndarray,
    closure_calendar: bool = True,
    calendar: SiteCalendar = PUBLIC_DATA_CALENDAR,
) -> tuple[np.ndarray, np.ndarray]:
    """(public holiday or closure, closure) for each UTC timestamp's local day at the site;
    `closure_calendar=False` leaves the closures out (public holidays kept)."""
    idx = pd.DatetimeIndex(days)
    if not closure_calendar:
        calendar = calendar.without_closures()
    day = calendar.local_days(idx)
    if not len(day):
        return np.zeros(0, bool), np.zeros(0, bool)
    first = int(day.min())
    hol, clo = calendar.day_flags(first, int(day.max()))
    return hol[day - first], clo[day - first]


def _nanmean(a: np.ndarray, axis: int = 1) -> np.ndarray:
    count = np.sum(~np.isnan(a), axis=axis)
    total = np.nansum(a, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN, NaN for all-NaN rows (without numpy's all-NaN warning)."""
    filled = np.sort(np.where(np.isnan(a), np.inf, a), axis=1)
    count = np.sum(~np.isnan(a), axis=1)
    lo = filled[np.arange(len(a)), np.maximum((count - 1) // 2, 0)]
    hi = filled[np.arange(len(a)), np.maximum(count // 2, 0)]
    return np.where(count > 0, (lo + hi) / 2, np.nan)


def window_features(
    kwh: np.ndarray,
    temp_c: np.ndarray | None,
    origins: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    calendar: SiteCalendar = PUBLIC_DATA_CALENDAR,
    *,
    closure_calendar: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows for each window × h, and each window's scale.

    `kwh` (and `temp_c`) are `(n, HISTORY_HOURS)` arrays of the hours before each origin (NaN where
    missing); `origins` are the first forecast hours (UTC); `calendar` is the site's (all windows
    are of one site). Hour, weekday and day flags are in the site's local time;
    `closure_calendar=False` drops the site's closures (public holidays kept): the protocol's run
    that measures what the closure calendar buys over Christmas. Returns a frame of
    `n * 24` rows in window-major order and the `(n,)` scales that turn scaled predictions back
    into kWh.
    """
    kwh = np.asarray(kwh, dtype=float)
    n, length = kwh.shape
    if length != HISTORY_HOURS:
        raise ValueError(f"history windows must be {HISTORY_HOURS} hours long, got {length}")
    origin_idx = pd.DatetimeIndex(origins)
    if origin_idx.tz is not None:
        origin_idx = origin_idx.tz_convert("UTC").tz_localize(None)
    if len(origin_idx) != n:
        raise ValueError("one origin per history window")

    scale = _nanmean(kwh[:, -168:])
    scale = np.where(np.isnan(scale), _nanmean(kwh), scale)
    scale = np.where(np.isnan(scale) | (scale < _MIN_SCALE), np.nan, scale)
    safe = np.where(np.isnan(scale), 1.0, scale)
    y = kwh / safe[:, None]

    h = np.arange(HORIZON_HOURS)
    rows = np.repeat(np.arange(n), HORIZON_HOURS)
    hh = np.tile(h, n)
    col = lambda lag: y[rows, length - lag + hh]  # noqa: E731 - the value `lag` hours before target

    same_hour = np.stack([col(24 * k) for k in range(1, 8)], axis=1)
    last_day = y[:, -24:]
    yesterday_mean = _nanmean(last_day)
    week_ago_mean = _nanmean(y[:, -192:-168])
    with np.errstate(invalid="ignore", divide="ignore"):
        regime = yesterday_mean / week_ago_mean

    if not closure_calendar:
        calendar = calendar.without_closures()
    targets = (origin_idx.values[rows] + hh.astype("timedelta64[h]")).astype("datetime64[ns]")
    target_index = pd.DatetimeIndex(targets)
    local = target_index.tz_localize("UTC").tz_convert(calendar.timezone).tz_localize(None)
    day = calendar.local_days(target_index)
    first = int(day.min()) - 29 if len(day) else 0
    holiday_day, closed_day = calendar.day_flags(first, int(day.max()) if len(day) else 0)
    weekend_day = (np.arange(first, first + len(holiday_day)) + 3) % 7 >= 5  # 1970-01-01: a Thursday
    off_day = holiday_day | weekend_day

    def on(flags: np.ndarray, days_back: int) -> np.ndarray:
        return flags[day - first - days_back]

    t_hol, t_clo = on(holiday_day, 0), on(closed_day, 0)
    # Same hour on the last 14 days of the same day type (working day vs weekend/holiday): the
    # profile a building runs on such a day, unaffected by a bank holiday inside the last week.
    t_off = on(off_day, 0)
    past = np.stack([col(24 * k) for k in range(1, 29)], axis=1)
    past_off = np.stack([on(off_day, k) for k in range(1, 29)], axis=1)
    same_type = np.where(past_off == t_off[:, None], past, np.nan)
    weekly = past[:, 6::7]  # the same hour 1, 2, 3 and 4 weeks before
    # Regime: how yesterday compares with the days of its own type over the four weeks before it
    # (a closure or a vacation shows as a drop against the usual working day).
    y_off = on(off_day, 1).reshape(n, HORIZON_HOURS)[:, 0]
    day_means = np.stack(
        [_nanmean(y[:, length - 24 * k : length - 24 * (k - 1)]) for k in range(2, 29)], axis=1
    )
    day_off = np.stack([on(off_day, k).reshape(n, HORIZON_HOURS)[:, 0] for k in range(2, 29)], axis=1)
    typical = _nanmedian(np.where(day_off == y_off[:, None], day_means, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        vs_type = yesterday_mean / typical
    l24_hol, l168_hol = on(holiday_day, 1), on(holiday_day, 7)

    feats: dict[str, np.ndarray] = {
        "h": hh.astype(float),
        "target_hour": local.hour.to_numpy(float),
        "target_dow": local.dayofweek.to_numpy(float),
        "target_holiday": t_hol.astype(float),
        "target_closure": t_clo.astype(float),
        "lag24_holiday": l24_hol.astype(float),
        "lag168_holiday": l168_hol.astype(float),
        "log_scale": np.log(safe)[rows],
        "lag24": col(24),
        "lag48": col(48),
        "lag168": col(168),
        "lag336": col(336),
        "lag504": col(504),
        "lag672": col(672),
        "same_weekday_mean_4w": _nanmean(weekly),
        "same_weekday_median_4w": _nanmedian(weekly),
        "same_hour_mean_7d": _nanmean(same_hour),
        "same_hour_min_7d": np.where(
            np.all(np.isnan(same_hour), axis=1),
            np.nan,
            np.nanmin(np.nan_to_num(same_hour, nan=np.inf), axis=1),
        ),
        "last_3h_mean": _nanmean(y[:, -3:])[rows],
        "last_day_mean": yesterday_mean[rows],
        "last_day_max": np.nanmax(np.nan_to_num(last_day, nan=-np.inf), axis=1)[rows],
        "last_day_min": np.nanmin(np.nan_to_num(last_day, nan=np.inf), axis=1)[rows],
        "prev_day_mean": _nanmean(y[:, -48:-24])[rows],
        "week_ago_day_mean": week_ago_mean[rows],
        "regime_ratio": regime[rows],
        "target_day_last_week_mean": _nanmean(y[:, -168:-144])[rows],
        "missing_share": np.mean(np.isnan(kwh[:, -168:]), axis=1)[rows],
        "same_daytype_mean_14d": _nanmean(same_type[:, :14]),
        "same_daytype_median_14d": _nanmedian(same_type[:, :14]),
        "same_daytype_median_28d": _nanmedian(same_type),
        "last_day_vs_daytype": vs_type[rows],
        "lag168_x_regime": col(168) * np.clip(np.nan_to_num(regime, nan=1.0), 0.0, 5.0)[rows],
    }
    if temp_c is not None:
        temp = np.asarray(temp_c, dtype=float)
        feats["temp_last_24h_mean"] = _nanmean(temp[:, -24:])[rows]
        feats["temp_same_hour_yesterday"] = temp[rows, length - 24 + hh]
    else:
        feats["temp_last_24h_mean"] = np.full(len(rows), np.nan)
        feats["temp_same_hour_yesterday"] = np.full(len(rows), np.nan)
    for key in ("last_day_max", "last_day_min", "same_hour_min_7d"):
        feats[key] = np.where(np.isfinite(feats[key]), feats[key], np.nan)
    frame = pd.DataFrame(feats, columns=list(FEATURE_NAMES))
    return frame, scale


def dense_series(frame: pd.DataFrame, value: str = "kwh") -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    """Long `(meter_id, timestamp_utc, value)` rows → (hourly index, `(devices, hours)` array, ids).

    Missing hours become NaN; the index spans first to last hour seen across all devices.
    """
    ts = pd.to_datetime(frame["timestamp_utc"], utc=True).dt.tz_localize(None).dt.floor("h")
    ids = sorted(frame["meter_id"].astype(str).unique())
    if not ids:
        raise ValueError("no rows")
    index = pd.date_range(ts.min(), ts.max(), freq="h")
    dev_pos = pd.Index(ids).get_indexer(frame["meter_id"].astype(str))
    hour_pos = ((ts - index[0]) // pd.Timedelta(hours=1)).to_numpy()
    values = np.full((len(ids), len(index)), np.nan)
    values[dev_pos, hour_pos] = pd.to_numeric(frame[value], errors="coerce").to_numpy(float)
    return index, values, ids


def windows_at(series: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`(len(positions), HISTORY_HOURS)` windows of `series` ending just before each position.

    Positions before the start of the series are padded with NaN (a device with little history
    still gets a forecast, from what it has).
    """
    padded = np.concatenate([np.full(HISTORY_HOURS, np.nan), np.asarray(series, float)])
    view = np.lib.stride_tricks.sliding_window_view(padded, HISTORY_HOURS)
    return view[np.asarray(positions)]
