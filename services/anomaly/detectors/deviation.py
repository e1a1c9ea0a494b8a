"""Load that departs from what the device normally uses: one hour (spike/dip), for hours on end
(level shift), or at night when the building should be idle (baseload rise)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.anomaly.detectors.expected import (
    DAY,
    PEAK,
    WEEK,
    Baseline,
    DetectorConfig,
    seasonal_residuals,
)
from services.anomaly.detectors.finding import Finding
from services.anomaly.detectors.panel import Panel

__all__ = ["detect_baseload_rise", "detect_level_shift", "detect_peak_power", "detect_spikes_and_dips"]


def _clean(a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def detect_spikes_and_dips(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    ratio = _clean(np.abs(base.z) / cfg.spike_z)
    up = base.z > 0
    spike = Finding(
        "spike",
        np.where(up, ratio, 0.0),
        base.expected,
        panel.energy_kwh,
        "kWh",
        "Used {actual:.1f} {unit} against about {expected:.1f} {unit} expected for this hour "
        "({pct:+.0f} %), far outside its normal variation.",
    )
    dip = Finding(
        "dip",
        np.where(up, 0.0, ratio),
        base.expected,
        panel.energy_kwh,
        "kWh",
        "Used only {actual:.1f} {unit} against about {expected:.1f} {unit} expected for this hour "
        "({pct:+.0f} %), far below its normal variation.",
    )
    return [spike, dip]


def _trailing_min(a: np.ndarray, window: int) -> np.ndarray:
    return pd.DataFrame(a).rolling(window, min_periods=window).min().to_numpy()


def detect_level_shift(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """Every one of the last `shift_window_h` hours off by at least `shift_z` scales, the same way.

    The weakest hour of the run sets the ratio, so neither one spike nor the tail of a burst can
    pass for a shift: a level shift is the load staying somewhere else.
    """
    w = cfg.shift_window_h
    z = np.nan_to_num(base.z, nan=0.0)
    up = _trailing_min(z, w)
    down = _trailing_min(-z, w)
    ratio = _clean(np.maximum(up, down)) / cfg.shift_z
    return [
        Finding(
            "level_shift",
            np.maximum(ratio, 0.0),
            base.expected,
            panel.energy_kwh,
            "kWh",
            "Consumption has stayed at a different level for {run_h} h: {actual:.1f} {unit} now "
            "against about {expected:.1f} {unit} usual for this hour ({pct:+.0f} %).",
        )
    ]


def detect_baseload_rise(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """Idle hours = expected load in the bottom `night_quantile` of the device's range over the
    past week (nights and weekends, time-zone free), or hours the occupancy sensors say are empty.
    The hour before must be raised too, so a lone spike at night stays a spike."""
    expected = pd.DataFrame(base.expected).rolling(WEEK, min_periods=DAY)
    low, high = expected.min().shift(1).to_numpy(), expected.max().shift(1).to_numpy()
    with np.errstate(invalid="ignore"):
        night = base.expected <= low + cfg.night_quantile * (high - low)
    occupancy = panel.get("occupancy_share")
    if occupancy is not None:
        night = night | (occupancy == 0)
    z = np.nan_to_num(base.z, nan=0.0)
    prev = np.vstack([np.zeros((1, z.shape[1])), z[:-1]])
    sustained = (z > 0) & (prev > cfg.night_z / 2)
    ratio = np.where(night & sustained, z / cfg.night_z, 0.0)
    return [
        Finding(
            "baseload_rise",
            _clean(ratio),
            base.expected,
            panel.energy_kwh,
            "kWh",
            "Night-time or unoccupied baseload is up: {actual:.1f} {unit} against about "
            "{expected:.1f} {unit} usual ({pct:+.0f} %); something has been left running.",
        )
    ]


def detect_peak_power(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """A burst shorter than the hour hardly moves its energy but shows in its peak power reading,
    judged like energy: against the same hour in past weeks, on its own robust scale."""
    peak = panel.get("max_power_w")
    if peak is None:
        return []
    shift = panel.fleet.shifts.get(PEAK) if panel.fleet is not None else None
    expected, residual, scale = seasonal_residuals(peak, cfg, shift=shift)
    with np.errstate(invalid="ignore"):
        z = residual / scale
    return [
        Finding(
            "spike",
            np.where(z > 0, _clean(z / cfg.peak_z), 0.0),
            expected,
            peak,
            "W",
            "Peak power reached {actual:.0f} {unit} against about {expected:.0f} {unit} usual for "
            "this hour ({pct:+.0f} %): a short burst inside the hour.",
        )
    ]
