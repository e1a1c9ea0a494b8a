"""From many detector findings to one ranked result per device-hour, and from flagged hours to
incidents.

An hour's result is the finding with the highest ratio (its statistic over its own threshold), so
a stuck meter is reported as "flatline", not also as a dip and a level shift. Flagged hours of one
device that are at most `gap_h` apart form one incident: a four-day level shift is one row with a
start and an end, not 96 alerts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from services.anomaly.calibrate import apply_calibration, context_row, load_calibration
from services.anomaly.detectors import Finding, Fleet, Panel
from services.anomaly.severity import SeverityPolicy, incident_severity
from shared.settings import Settings

__all__ = [
    "SEVERITIES",
    "THRESHOLD",
    "HourTable",
    "candidates_per_hour",
    "group_incidents",
    "hour_table",
    "incident_id",
    "rank_hours",
    "ratio_to_score",
    "severity_for",
]

THRESHOLD = 0.5
DEFAULT_TARIFF = float(Settings.model_fields["chat_flat_tariff_per_kwh"].default)
SEVERITIES = ("low", "medium", "high")  # the anomalies table contract; the dashboard colours these


def ratio_to_score(ratio: np.ndarray) -> np.ndarray:
    """Map ratio in [0, inf) to a score in [0, 1): ratio 1 (at threshold) becomes 0.5."""
    r = np.maximum(np.nan_to_num(ratio, nan=0.0), 0.0)
    return r / (1.0 + r)


def severity_for(ratio: np.ndarray) -> np.ndarray:
    """At threshold is low; 1.5x over it medium; 2.5x high (a zero reading, a stuck day, a 10x spike)."""
    return np.select([ratio >= 2.5, ratio >= 1.5], ["high", "medium"], "low")


@dataclass(frozen=True)
class HourTable:
    """The device-hours of a ranking, everything decided but the calibrated rule, which needs the
    whole fleet's candidates per hour (`Fleet.candidates`). The service builds one per chunk while
    it counts those candidates, and `finish`es it once the count is known, instead of loading the
    chunk and running every detector on it a second time (docs/scaling.md).

    `frame` holds the rows from the first one the rule reads (`calibrate.context_row`); `keep` is
    the panel row from which rows are returned. `explainers` are the findings without their arrays:
    all `group_incidents` needs once `frame` carries each row's `run_h`."""

    frame: pd.DataFrame
    keep: int
    explainers: list[Finding]
    calibrated: bool

    def for_devices(self, devices: set[str]) -> HourTable:
        """The same table for some of its devices (each device's rows depend on no other's)."""
        return replace(self, frame=self.frame[self.frame["device_id"].isin(devices)].reset_index(drop=True))

    def finish(self, fleet: Fleet | None = None) -> pd.DataFrame:
        """The ranking: with a calibration, its rule applied (`fleet`: the fleet's candidates per
        panel row and its size, when the table holds only some of the fleet's devices)."""
        frame = self.frame
        cal = load_calibration() if self.calibrated else None
        if cal is not None:
            share = None
            if fleet is not None and fleet.candidates is not None:
                share = (fleet.candidates, fleet.size)
            frame = apply_calibration(frame, cal, share)
        else:
            frame = frame.assign(probability=frame["score"])
        if self.keep:
            frame = frame[frame["row"] >= self.keep].reset_index(drop=True)
        return frame


def _run_hours(findings: list[Finding], best: np.ndarray) -> np.ndarray:
    """Per cell, how long the winning finding says its condition has lasted (-1: it does not say)."""
    run_h = np.full(best.shape, -1, dtype=np.int64)
    for i, f in enumerate(findings):
        if f.run is not None:
            run_h = np.where(best == i, f.run, run_h)
    return run_h


def hour_table(
    panel: Panel,
    findings: list[Finding],
    *,
    include_missing: bool = False,
    calibrated: bool = True,
    from_hour: pd.Timestamp | None = None,
) -> HourTable:
    """`rank_hours` up to the calibrated rule (its arguments are `rank_hours`')."""
    ratios = np.stack([f.ratio for f in findings])
    best = np.argmax(ratios, axis=0)
    ratio = np.take_along_axis(ratios, best[None], axis=0)[0]
    expected = np.take_along_axis(np.stack([f.expected for f in findings]), best[None], axis=0)[0]
    actual = np.take_along_axis(np.stack([f.actual for f in findings]), best[None], axis=0)[0]
    # Object arrays of shared strings: a frame of a chunk's weeks keeps 8 bytes a row for each, not
    # a str object per row (what numpy's fixed-width strings become in a frame).
    types = np.array([f.anomaly_type for f in findings], dtype=object)[best]
    units = np.array([f.unit for f in findings], dtype=object)
    run_h = _run_hours(findings, best)
    score = ratio_to_score(ratio)
    cal = load_calibration() if calibrated else None
    first = keep = 0
    if from_hour is not None:
        if not include_missing:
            raise ValueError("ranking from an hour needs every hour of its devices (include_missing)")
        keep = int(panel.hours.searchsorted(from_hour))
        first = keep if cal is None else context_row(ratio, cal.candidate_ratio, keep)
    fleet = panel.fleet
    if cal is not None and fleet is not None and fleet.candidates is not None and not include_missing:
        raise ValueError("a chunk's fleet share needs every hour of its devices (include_missing)")
    t_idx, d_idx = np.nonzero(panel.present | include_missing)
    if first:
        at = t_idx >= first
        t_idx, d_idx = t_idx[at], d_idx[at]
    flagged = score[t_idx, d_idx] >= THRESHOLD
    frame = pd.DataFrame(
        {
            "device_id": np.array(panel.devices, dtype=object)[d_idx],
            "hour": panel.hours[t_idx],
            "score": score[t_idx, d_idx],
            "ratio": ratio[t_idx, d_idx],
            "is_anomaly": flagged,
            "anomaly_type": np.where(flagged, types[t_idx, d_idx], ""),
            "kind": types[t_idx, d_idx],
            "energy_kwh": panel.energy_kwh[t_idx, d_idx],
            "finding": best[t_idx, d_idx],
            "unit": units[best[t_idx, d_idx]],
            "row": t_idx,
            "col": d_idx,
            "expected": expected[t_idx, d_idx],
            "actual": actual[t_idx, d_idx],
            "run_h": run_h[t_idx, d_idx],
        }
    )
    frame = frame.sort_values(["device_id", "hour"], kind="stable").reset_index(drop=True)
    explainers = [
        replace(f, ratio=_NO_CELLS, expected=_NO_CELLS, actual=_NO_CELLS, run=None) for f in findings
    ]
    return HourTable(frame=frame, keep=keep, explainers=explainers, calibrated=calibrated)


_NO_CELLS = np.empty((0, 0))


def rank_hours(
    panel: Panel,
    findings: list[Finding],
    *,
    include_missing: bool = False,
    calibrated: bool = True,
    from_hour: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per device-hour: score, is_anomaly, the winning type, its expected and actual.

    Hours without a row in the input are left out unless `include_missing` (the service wants
    them, to report dropouts; the CSV path scores only the hours it was given). With `calibrated`
    (and a fitted `calibration.json`) the alert decision and score are the calibrated probability
    of `calibrate.py`; without, the plain rule "ratio over threshold" (what the fit starts from).
    `from_hour` (with `include_missing`) returns only the hours from then on, ranked from the
    context they need (`calibrate.context_row`), with the values a ranking of every hour gives.
    """
    table = hour_table(
        panel, findings, include_missing=include_missing, calibrated=calibrated, from_hour=from_hour
    )
    return table.finish(panel.fleet)


def candidates_per_hour(findings: list[Finding], candidate_ratio: float) -> np.ndarray:
    """Per panel row, how many devices' best ratio reaches the calibration's candidate ratio: the
    chunk's part of the fleet share `rank_hours` would count over one whole-fleet panel."""
    ratio = np.nan_to_num(np.max(np.stack([f.ratio for f in findings]), axis=0), nan=0.0)
    return np.sum(ratio >= candidate_ratio, axis=1)


def incident_id(device_id: str, start_hour: pd.Timestamp) -> str:
    """Stable across re-scoring: causal scores never move an incident's first hour."""
    key = f"{device_id}|{pd.Timestamp(start_hour).isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def group_incidents(
    ranked: pd.DataFrame,
    findings: list[Finding],
    *,
    gap_h: int = 3,
    tariff_per_kwh: float = DEFAULT_TARIFF,
    policy: SeverityPolicy | None = None,
) -> pd.DataFrame:
    """Collapse flagged hours into incidents (`end_hour` exclusive: last flagged hour + 1 h).

    The incident takes the type that carried most of its total ratio, its peak score and highest
    probability, the energy at stake over its flagged hours, the severity those give
    (`severity.py`), and the explanation of its peak hour of that type.
    """
    columns = [
        "incident_id", "device_id", "start_hour", "end_hour", "anomaly_type", "severity",
        "score", "expected", "actual", "explanation", "probability", "energy_at_stake_kwh",
        "cost_at_stake", "hours_flagged",
    ]  # fmt: skip
    flagged = ranked[ranked["is_anomaly"]].copy()
    if flagged.empty:
        return pd.DataFrame(columns=columns)
    gap = flagged["hour"].diff() > pd.Timedelta(hours=gap_h)
    new_device = flagged["device_id"] != flagged["device_id"].shift()
    flagged["group"] = (gap | new_device).cumsum()
    rows = []
    for _, g in flagged.groupby("group", sort=False):
        weights = g.groupby("anomaly_type")["ratio"].sum()
        kind = str(weights.idxmax())
        of_kind = g[g["anomaly_type"] == kind]
        peak = of_kind.loc[of_kind["ratio"].idxmax()]
        run_h = int((g["hour"].iloc[-1] - g["hour"].iloc[0]) / pd.Timedelta(hours=1)) + 1
        finding = findings[int(peak["finding"])]
        if "run_h" in peak and int(peak["run_h"]) >= 0:  # the detector knows how long it has lasted
            run_h = int(peak["run_h"])
        elif finding.run is not None:  # a frame built by hand, without `run_h`
            run_h = int(finding.run[int(peak["row"]), int(peak["col"])])
        start = g["hour"].iloc[0]
        in_kwh = (g["unit"] == "kWh").to_numpy()
        gap_kwh = np.abs(g["actual"].to_numpy(dtype=float) - g["expected"].to_numpy(dtype=float))[in_kwh]
        at_stake = float(np.nansum(gap_kwh)) if np.isfinite(gap_kwh).any() else float("nan")
        probability = float(g["probability"].max()) if "probability" in g else float(g["score"].max())
        severity = incident_severity(
            kind,
            probability=probability,
            peak_ratio=float(g["ratio"].max()),
            energy_at_stake_kwh=at_stake,
            tariff_per_kwh=tariff_per_kwh,
            policy=policy,
        )
        rows.append(
            {
                "incident_id": incident_id(str(g["device_id"].iloc[0]), start),
                "device_id": g["device_id"].iloc[0],
                "start_hour": start,
                "end_hour": g["hour"].iloc[-1] + pd.Timedelta(hours=1),
                "anomaly_type": kind,
                "severity": severity,
                "score": float(g["score"].max()),
                "expected": float(peak["expected"]),
                "actual": float(peak["actual"]),
                "explanation": finding.explain(float(peak["expected"]), float(peak["actual"]), run_h),
                "probability": probability,
                "energy_at_stake_kwh": at_stake,
                "cost_at_stake": at_stake * tariff_per_kwh,
                "hours_flagged": len(g),
            }
        )
    return pd.DataFrame(rows, columns=columns)
