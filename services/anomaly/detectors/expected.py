"""What each device should have used in each hour, and how far off "normal" noise goes.

Expected load is the median of the same hour in the previous weeks (robust to one bad week), moved
by the fleet-wide shift of that hour: when most buildings drop together it is a closure or a bank
holiday, not a fault, so the fleet median is taken out before a single meter is judged. Where the
forecast service has written an interval for the hour, that interval wins. Residuals are in log
space (a 40 % drop is the same surprise on a 3 kWh and a 900 kWh building) and the scale is a
trailing median absolute deviation, so every number here uses only hours before the one scored.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict

from services.anomaly.detectors.panel import Panel, arriving
from services.anomaly.detectors.runs import flatline_ratio, stuck_history

__all__ = [
    "ENERGY",
    "ENERGY_QUICK",
    "PEAK",
    "Baseline",
    "DetectorConfig",
    "compute_baseline",
    "fleet_shift_from_terms",
    "fleet_terms",
    "seasonal_residuals",
    "shift_rows",
]

WEEK = 168
DAY = 24
# The three fleet shifts (keys of `Fleet.shifts`): energy in the baseline's quick first pass and
# its second pass, and peak power.
ENERGY_QUICK, ENERGY, PEAK = "energy_quick", "energy", "peak"


class DetectorConfig(BaseModel):
    """Thresholds, each chosen so that ratio 1.0 is "worth a look" (score 0.5).

    The defaults were tuned on the labelled 2019 meters (`gridsight anomaly evaluate`): lower
    spike/shift/night thresholds buy a little event recall for a lot of point-wise precision.
    """

    model_config = ConfigDict(frozen=True)
    history_weeks: int = 4
    scale_window_h: int = 4 * WEEK
    scale_min_periods: int = 72
    scale_floor: float = 0.03
    scale_by_hour_days: int = 28
    min_fleet: int = 5
    spike_z: float = 7.0
    peak_z: float = 7.0
    history_outlier_factor: float = 1.5  # history drops hours this far beyond the spike threshold
    shift_window_h: int = 6
    shift_z: float = 2.5
    night_quantile: float = 0.25
    night_z: float = 4.5
    flat_min_run: int = 4
    flat_surprise: float = 9.0
    flat_window_h: int = 4 * WEEK
    dropout_ratio: float = 3.0
    dropout_grace_h: int = 3
    voltage_tolerance: float = 0.10
    impossible_ratio: float = 4.0


class Baseline(BaseModel):
    """Per hour × device arrays shared by the deviation detectors."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    expected: np.ndarray
    log_residual: np.ndarray
    scale: np.ndarray
    z: np.ndarray
    from_forecast: np.ndarray
    flat_ratio: np.ndarray  # computed once here (it masks history) and reused by the flatline detector
    runs: np.ndarray


def judged_energy(panel: Panel, cfg: DetectorConfig) -> np.ndarray:
    """The kWh the deviation detectors judge: an hour still arriving (`panel.arriving`) is unknown
    (NaN), as a missing one is, not a dip; at hh:15 most meters' newest hour held a quarter of its
    load, and a 1,000-meter fleet raised 618 dips at each hour's first sync (docs/scaling.md)."""
    still = arriving(panel, cfg.dropout_grace_h)
    return np.where(still, np.nan, panel.energy_kwh) if still.any() else panel.energy_kwh


def shift_rows(a: np.ndarray, k: int) -> np.ndarray:
    """`a` delayed by k rows (hours), NaN-padded: row t holds the value of row t-k."""
    out = np.full_like(a, np.nan, dtype=float)
    if k < len(a):
        out[k:] = a[: len(a) - k]
    return out


def _median_of_lags(a: np.ndarray, step: int, lags: int) -> np.ndarray:
    """Row t: the NaN-ignoring median of rows t - step, t - 2 step, ..., t - lags x step (NaN where
    all are), e.g. the same hour in the previous four weeks. The same numbers as sorting the
    `lags` shifted copies stacked on a new first axis, 2-4x faster: blocks of `step` rows become
    one row each, so every median is a sort of `lags` contiguous values (docs/scaling.md)."""
    rows, cols = a.shape
    if rows == 0:
        return np.full(a.shape, np.nan)
    blocks = -(-rows // step)
    wide = np.full((blocks * step, cols), np.nan)
    wide[:rows] = a
    wide = wide.reshape(blocks, step * cols)
    lagged = np.concatenate([np.full((lags, wide.shape[1]), np.nan), wide[:-1]])
    window = sliding_window_view(lagged, lags, axis=0)  # block b: blocks b - lags .. b - 1
    return _nanmedian_last(window).reshape(blocks * step, cols)[:rows]


def _nanmedian_last(a: np.ndarray, min_count: int = 1) -> np.ndarray:
    """NaN-ignoring median along the last axis; NaN where fewer than `min_count` values."""
    a = np.sort(a, axis=-1)  # NaN sorts last
    n = np.sum(~np.isnan(a), axis=-1)
    lo = np.take_along_axis(a, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(a, np.minimum(n // 2, a.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    return np.where(n >= max(min_count, 1), (lo + hi) / 2, np.nan)


def _log_ratio(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """log((x + 0.1 e) / 1.1 e): symmetric-ish, finite at x = 0, NaN where e is unknown or <= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(expected > 0, expected, np.nan)
        return np.log((np.maximum(actual, 0) + 0.1 * safe) / (1.1 * safe))


def _seasonal(history: np.ndarray, weeks: int) -> np.ndarray:
    """Median of the same hour in the last `weeks` weeks; NaN (no verdict) before the first week
    of history, because a day-only profile calls every first weekend a dip."""
    return _median_of_lags(history, WEEK, weeks)


def _fleet_lr(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Each device's contribution to its hour's fleet shift (NaN: none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(actual / expected)  # history holds only positive values, so this is exact
    lr[~np.isfinite(lr)] = np.nan
    return lr


def _fleet_shift(actual: np.ndarray, expected: np.ndarray, min_fleet: int) -> np.ndarray:
    """Median log-ratio across devices per hour; 0 where too few devices report."""
    return fleet_shift_from_terms(_fleet_lr(actual, expected), min_fleet)


def fleet_shift_from_terms(lr: np.ndarray, min_fleet: int) -> np.ndarray:
    """The fleet shift from every device's `fleet_terms` side by side (hours x fleet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(lr, axis=1)
    count = np.sum(np.isfinite(lr), axis=1)
    return np.where((count >= min_fleet) & np.isfinite(med), med, 0.0)


def _trailing_mad(r: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """1.4826 x median |r| over the `window` hours before each day-long block of rows.

    Stepping the window a day at a time (rather than an hour) gives nearly the same scale for a
    small fraction of a rolling median's cost, and stays causal: a block only sees earlier blocks.
    """
    rows = len(r)
    out = np.full(r.shape, np.nan)
    absr = np.abs(r)
    for start in range(0, rows, DAY):
        past = absr[max(0, start - window) : start]
        if len(past) >= min_periods:
            out[start : start + DAY] = _nanmedian_last(past.T, min_periods)
    return 1.4826 * out


def _unshifted(
    x: np.ndarray, cfg: DetectorConfig, past_bad: np.ndarray | None, now_bad: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(seasonal expectation before the fleet shift, the values this hour's shift may use)."""
    usable = x > 0  # zeros are dropouts, not a usable "normal"
    history = np.where(usable & ~(past_bad if past_bad is not None else False), x, np.nan)
    now = np.where(usable & ~(now_bad if now_bad is not None else False), x, np.nan)
    return _seasonal(history, cfg.history_weeks), now


def seasonal_residuals(
    x: np.ndarray,
    cfg: DetectorConfig,
    *,
    past_bad: np.ndarray | None = None,
    now_bad: np.ndarray | None = None,
    quick: bool = False,
    shift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected, log residual, robust scale) of any hours × devices series, e.g. energy or peak power.

    `past_bad` marks cells kept out of the history later weeks are judged against (known bad by
    the time they are used); `now_bad` marks cells kept out of the fleet shift of their own hour
    (so it may only use what is known at that hour). `quick` takes the scale from the same hour on
    previous days only, skipping the slow 4-week rolling median (good enough to spot gross outliers).
    `shift` is the fleet shift when `x` holds only part of the fleet (`Panel.fleet`)."""
    seasonal, now = _unshifted(x, cfg, past_bad, now_bad)
    if shift is not None:
        seasonal = seasonal * np.exp(shift)[:, None]
    elif x.shape[1] >= cfg.min_fleet:
        seasonal = seasonal * np.exp(_fleet_shift(now, seasonal, cfg.min_fleet))[:, None]
    r = _log_ratio(x, seasonal)
    if quick:
        by_hour = 1.4826 * _median_of_lags(np.abs(r), DAY, 14)
        return seasonal, r, np.maximum(by_hour, cfg.scale_floor)
    scale = _trailing_mad(r, cfg.scale_window_h, cfg.scale_min_periods)
    if cfg.scale_by_hour_days:
        # Night noise and daytime noise differ: the same hour on previous days sets the scale too.
        by_hour = 1.4826 * _median_of_lags(np.abs(r), DAY, cfg.scale_by_hour_days)
        scale = np.fmax(0.5 * scale, by_hour)
    return seasonal, r, np.maximum(scale, cfg.scale_floor)


def _stuck(x: np.ndarray, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(flatline ratio, run lengths, stuck now, stuck as history)."""
    flat, runs = flatline_ratio(
        x, window_h=cfg.flat_window_h, min_run=cfg.flat_min_run, surprise=cfg.flat_surprise
    )
    return flat, runs, flat >= 1, stuck_history(flat, runs)


def _outliers(
    x: np.ndarray, cfg: DetectorConfig, past_bad: np.ndarray, stuck_now: np.ndarray, shift: np.ndarray | None
) -> np.ndarray:
    """The first, quick pass: hours far enough off to be kept out of the second pass's history."""
    _, r1, scale1 = seasonal_residuals(x, cfg, past_bad=past_bad, now_bad=stuck_now, quick=True, shift=shift)
    with np.errstate(invalid="ignore"):
        return np.abs(r1 / scale1) >= cfg.spike_z * cfg.history_outlier_factor


def fleet_terms(panel: Panel, cfg: DetectorConfig) -> dict[str, np.ndarray]:
    """This panel's devices' terms of the fleet shifts `panel.fleet` does not hold yet.

    The shifts depend on each other (the second energy pass masks the outliers the first pass's
    shift found), so a chunked fleet is swept twice: first for the quick energy shift and the
    peak-power shift, then, with those known, for the second energy shift.
    """
    x = judged_energy(panel, cfg)
    shifts = panel.fleet.shifts if panel.fleet is not None else {}
    _, _, stuck_now, past_bad = _stuck(x, cfg)
    if ENERGY_QUICK not in shifts:
        seasonal, now = _unshifted(x, cfg, past_bad, stuck_now)
        out = {ENERGY_QUICK: _fleet_lr(now, seasonal)}
        peak = panel.get("max_power_w")
        if peak is not None:
            seasonal, now = _unshifted(peak, cfg, None, None)
            out[PEAK] = _fleet_lr(now, seasonal)
        return out
    outlier = _outliers(x, cfg, past_bad, stuck_now, shifts[ENERGY_QUICK])
    seasonal, now = _unshifted(x, cfg, past_bad | outlier, stuck_now | outlier)
    return {ENERGY: _fleet_lr(now, seasonal)}


def compute_baseline(panel: Panel, cfg: DetectorConfig) -> Baseline:
    """Two passes: the first finds hours that are stuck or far off (|z| >= spike threshold), the
    second recomputes expectations without them, so a fault never becomes next week's normal."""
    x = judged_energy(panel, cfg)
    shifts = panel.fleet.shifts if panel.fleet is not None else {}
    flat, runs, stuck_now, past_bad = _stuck(x, cfg)
    outlier = _outliers(x, cfg, past_bad, stuck_now, shifts.get(ENERGY_QUICK))
    seasonal, r, scale = seasonal_residuals(
        x, cfg, past_bad=past_bad | outlier, now_bad=stuck_now | outlier, shift=shifts.get(ENERGY)
    )
    expected, residual, spread = seasonal, r, scale
    p50, p10, p90 = panel.get("forecast_p50"), panel.get("forecast_p10"), panel.get("forecast_p90")
    from_forecast = np.zeros_like(x, dtype=bool)
    if p50 is not None and p10 is not None and p90 is not None:
        from_forecast = np.isfinite(p50) & (p50 > 0) & np.isfinite(p90) & np.isfinite(p10) & (p90 > p10)
        half = (_log_ratio(p90, p50) - _log_ratio(p10, p50)) / (2 * 1.2816)
        expected = np.where(from_forecast, p50, seasonal)
        residual = np.where(from_forecast, _log_ratio(x, p50), r)
        spread = np.where(from_forecast, np.maximum(half, cfg.scale_floor), scale)
    with np.errstate(invalid="ignore"):
        z = residual / spread
    return Baseline(
        expected=expected,
        log_residual=residual,
        scale=spread,
        z=z,
        from_forecast=from_forecast,
        flat_ratio=flat,
        runs=runs,
    )
