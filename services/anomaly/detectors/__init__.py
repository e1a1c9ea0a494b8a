"""Explainable detectors for meter and building faults, one module per family.

Every detector takes the same hours × devices `Panel`, the shared `Baseline` (expected load and
its robust scale) and the `DetectorConfig`, and returns `Finding`s; `combine.py` ranks them.
"""

from __future__ import annotations

from collections.abc import Callable

from services.anomaly.detectors.deviation import (
    detect_baseload_rise,
    detect_level_shift,
    detect_peak_power,
    detect_spikes_and_dips,
)
from services.anomaly.detectors.expected import (
    ENERGY,
    ENERGY_QUICK,
    PEAK,
    Baseline,
    DetectorConfig,
    compute_baseline,
    fleet_shift_from_terms,
    fleet_terms,
)
from services.anomaly.detectors.finding import Finding
from services.anomaly.detectors.meter import detect_dropouts, detect_flatline
from services.anomaly.detectors.panel import Fleet, Panel, as_utc, panel_from_long, with_columns
from services.anomaly.detectors.quality import detect_impossible_values, detect_voltage

__all__ = [
    "DETECTORS",
    "ENERGY",
    "ENERGY_QUICK",
    "PEAK",
    "Baseline",
    "DetectorConfig",
    "Finding",
    "Fleet",
    "Panel",
    "as_utc",
    "compute_baseline",
    "fleet_shift_from_terms",
    "fleet_terms",
    "panel_from_long",
    "run_detectors",
    "with_columns",
]

Detector = Callable[[Panel, Baseline, DetectorConfig], list[Finding]]

# Order breaks ties: at equal ratio the more specific explanation wins.
DETECTORS: tuple[Detector, ...] = (
    detect_impossible_values,
    detect_voltage,
    detect_dropouts,
    detect_flatline,
    detect_baseload_rise,
    detect_level_shift,
    detect_spikes_and_dips,
    detect_peak_power,
)


def run_detectors(panel: Panel, cfg: DetectorConfig | None = None) -> tuple[Baseline, list[Finding]]:
    cfg = cfg or DetectorConfig()
    base = compute_baseline(panel, cfg)
    findings = [f for detect in DETECTORS for f in detect(panel, base, cfg)]
    return base, findings
