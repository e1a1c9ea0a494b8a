"""Faults of the meter rather than the building: a register that stops moving (flat line) and
hours that never arrived or arrived empty (dropout)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.anomaly.detectors.expected import Baseline, DetectorConfig
from services.anomaly.detectors.finding import Finding
from services.anomaly.detectors.panel import Panel

__all__ = ["detect_dropouts", "detect_flatline", "run_lengths"]


def run_lengths(x: np.ndarray, rel_tol: float = 1e-4, abs_tol: float = 1e-5) -> np.ndarray:
    """Per cell, how many consecutive hours up to and including this one carry the same value.

    "Same" allows the rounding noise of an hour summed from a register kept to 1 mWh (a frozen
    power reading still yields hourly sums that differ in the sixth decimal), far below any real
    meter's resolution step."""
    same = np.zeros_like(x, dtype=bool)
    with np.errstate(invalid="ignore"):
        same[1:] = np.abs(x[1:] - x[:-1]) <= np.maximum(abs_tol, rel_tol * np.abs(x[1:]))
    runs = np.zeros(x.shape, dtype=np.int64)
    count = np.ones(x.shape[1], dtype=np.int64)
    runs[0] = 1
    for t in range(1, len(x)):
        count = np.where(same[t], count + 1, 1)
        runs[t] = count
    return runs


def detect_flatline(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """How unlikely is a run this long for this meter? Meters with a coarse register repeat values
    often, so a run is scored by its surprise: (run - 1) * -log(p), with p the meter's trailing
    share of hours that repeated the previous value."""
    x = panel.energy_kwh
    runs = run_lengths(x)
    repeat = (runs > 1).astype(float)
    repeat[~np.isfinite(x)] = np.nan
    p = pd.DataFrame(repeat).rolling(cfg.flat_window_h, min_periods=48).mean().shift(1).to_numpy()
    p = np.clip(np.nan_to_num(p, nan=0.05), 0.01, 0.9)
    surprise = (runs - 1) * -np.log(p)
    ratio = np.where((runs >= cfg.flat_min_run) & (x > 0), surprise / cfg.flat_surprise, 0.0)
    return [
        Finding(
            "flatline",
            ratio,
            base.expected,
            x,
            "kWh",
            "The meter has reported exactly {actual:.1f} {unit} for {run_h} h in a row while about "
            "{expected:.1f} {unit} was expected; it looks stuck.",
        )
    ]


def detect_dropouts(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """Zero energy where load was expected, a missing hour, or a partly covered hour."""
    x = panel.energy_kwh
    with np.errstate(invalid="ignore"):
        zero = panel.present & (x == 0) & (np.nan_to_num(base.expected) > 0)
    # A zero is also a huge dip (and, repeated, a level shift); say "dropout", the likelier cause,
    # by adding the dip's own ratio so it always outranks both.
    dip_ratio = np.nan_to_num(np.abs(base.z) / cfg.spike_z, nan=0.0)
    ratio = np.where(zero, cfg.dropout_ratio + dip_ratio, 0.0)
    # A missing hour is only known to be missing once the fleet has moved on past it: flag it when
    # any device has data `dropout_grace_h` hours later (so the grid's ragged edge is no alarm).
    rows_with_data = np.flatnonzero(panel.present.any(axis=1))
    last = rows_with_data[-1] if len(rows_with_data) else -1
    settled = (np.arange(len(x)) <= last - cfg.dropout_grace_h)[:, None]
    installed = np.maximum.accumulate(panel.present, axis=0)  # no dropouts before a device's first hour
    ratio = np.where(~panel.present & settled & installed, cfg.dropout_ratio * 2 / 3, ratio)
    coverage = panel.get("coverage")
    if coverage is not None:
        partial = panel.present & np.isfinite(coverage) & (coverage < 1)
        ratio = np.where(partial, np.maximum(ratio, (1 - coverage) * 2), ratio)
    return [
        Finding(
            "dropout",
            ratio,
            base.expected,
            np.nan_to_num(x, nan=0.0),
            "kWh",
            "Data dropout: {actual:.1f} {unit} reported where about {expected:.1f} {unit} was "
            "expected; the meter or its uplink sent nothing usable.",
        )
    ]
