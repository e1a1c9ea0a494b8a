"""Faults of the meter rather than the building: a register that stops moving (flat line) and
hours that never arrived or arrived empty (dropout)."""

from __future__ import annotations

import numpy as np

from services.anomaly.detectors.expected import Baseline, DetectorConfig
from services.anomaly.detectors.finding import Finding
from services.anomaly.detectors.panel import Panel, partly_covered, settled_rows

__all__ = ["detect_dropouts", "detect_flatline"]


def detect_flatline(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """How unlikely is a run this long for this meter (`runs.flatline_ratio`, computed once in the
    baseline, which also keeps stuck runs out of later expectations)?"""
    x = panel.energy_kwh
    ratio, runs = base.flat_ratio, base.runs
    return [
        Finding(
            "flatline",
            ratio,
            base.expected,
            x,
            "kWh",
            "The meter has reported exactly {actual:.1f} {unit} for {run_h} h in a row while about "
            "{expected:.1f} {unit} was expected; it looks stuck.",
            bare="The meter has reported exactly {actual:.1f} {unit} for {run_h} h in a row; it looks stuck.",
            run=runs,
        )
    ]


def detect_dropouts(panel: Panel, base: Baseline, cfg: DetectorConfig) -> list[Finding]:
    """Zero energy where load was expected, a missing hour, or a partly covered hour."""
    x = panel.energy_kwh
    # A missing hour is only known to be missing once the fleet has moved on past it: flag it when
    # any device has data `dropout_grace_h` hours later (so the grid's ragged edge is no alarm).
    settled = settled_rows(panel, cfg.dropout_grace_h)
    partial = partly_covered(panel)
    with np.errstate(invalid="ignore"):
        zero = panel.present & (x == 0) & (np.nan_to_num(base.expected) > 0)
    zero &= ~(partial & ~settled)  # an hour still arriving: nothing yet is not zero
    # A zero is also a huge dip (and, repeated, a level shift); say "dropout", the likelier cause,
    # by adding the dip's own ratio so it always outranks both.
    dip_ratio = np.nan_to_num(np.abs(base.z) / cfg.spike_z, nan=0.0)
    ratio = np.where(zero, cfg.dropout_ratio + dip_ratio, 0.0)
    installed = np.maximum.accumulate(panel.present, axis=0)  # no dropouts before a device's first hour
    ratio = np.where(~panel.present & settled & installed, cfg.dropout_ratio * 2 / 3, ratio)
    coverage = panel.get("coverage")
    if coverage is not None:
        # A partly covered hour waits out the same grace: the fleet's newest hour is partly covered
        # for most meters at every sync (its last readings are still on the way), which raised a
        # dropout for 8,975 of 10,000 meters at once (bench_scale, docs/scaling.md). Once settled,
        # the kWh its missing readings did not bring is a dip too: the dropout outranks it.
        short = np.where(np.nan_to_num(base.z) < 0, dip_ratio, 0.0)
        ratio = np.where(partial & settled, np.maximum(ratio, (1 - coverage) * 2 + short), ratio)
    return [
        Finding(
            "dropout",
            ratio,
            base.expected,
            np.nan_to_num(x, nan=0.0),
            "kWh",
            "Data dropout: {actual:.1f} {unit} reported where about {expected:.1f} {unit} was "
            "expected; the meter or its uplink sent nothing usable.",
            bare="Data dropout: {actual:.1f} {unit} reported; the meter or its uplink sent nothing usable.",
        )
    ]
