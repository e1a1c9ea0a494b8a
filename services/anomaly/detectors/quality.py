"""Readings that cannot be right: supply voltage outside the statutory band, and values no meter
can physically produce."""

from __future__ import annotations

import numpy as np

from services.anomaly.detectors.expected import Baseline, DetectorConfig
from services.anomaly.detectors.finding import Finding
from services.anomaly.detectors.panel import Panel

__all__ = ["detect_impossible_values", "detect_voltage"]


def detect_voltage(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """EN 50160 allows ±10 % of nominal; ratio is the excursion over that band."""
    vmin, vmax, nominal = panel.get("voltage_min"), panel.get("voltage_max"), panel.nominal_voltage
    if vmin is None or vmax is None or nominal is None:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        low = (1 - vmin / nominal) / cfg.voltage_tolerance
        high = (vmax / nominal - 1) / cfg.voltage_tolerance
    worst_is_high = np.nan_to_num(high, nan=-1) >= np.nan_to_num(low, nan=-1)
    ratio = np.nan_to_num(np.maximum(low, high), nan=0.0)
    ratio = np.where(ratio > 1, ratio, 0.0)
    actual = np.where(worst_is_high, vmax, vmin)
    expected = np.broadcast_to(nominal, actual.shape).astype(float)
    return [
        Finding(
            "voltage",
            ratio,
            expected,
            actual,
            "V",
            "Supply voltage reached {actual:.0f} {unit} against a nominal {expected:.0f} {unit} "
            "({pct:+.0f} %), outside the ±10 % tolerance.",
        )
    ]


def detect_impossible_values(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """Negative energy (a register running backwards) or negative power: no meter measures that.

    Hourly energy above the hour's sampled peak power is *not* impossible: after a gap the first
    reading carries the whole gap's energy, and power is sampled while energy is integrated.
    """
    x = panel.energy_kwh
    with np.errstate(invalid="ignore"):
        bad = panel.present & (x < 0)
        for column in ("max_power_w", "min_power_w"):
            power = panel.get(column)
            if power is not None:
                bad = bad | (panel.present & (power < 0))
    # Outrank the dip or spike the same value also is: the cause matters more than the size.
    ratio = np.where(bad, cfg.impossible_ratio + np.nan_to_num(np.abs(base.z) / cfg.spike_z, nan=0.0), 0.0)
    return [
        Finding(
            "impossible_value",
            ratio,
            base.expected,
            x,
            "kWh",
            "Reported {actual:.1f} {unit} or a negative power reading, which no meter can measure; "
            "expected about {expected:.1f} {unit}.",
            bare="Reported {actual:.1f} {unit} or a negative power reading, which no meter can measure.",
        )
    ]
