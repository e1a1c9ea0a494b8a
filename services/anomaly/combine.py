"""From many detector findings to one ranked result per device-hour, and from flagged hours to
incidents.

An hour's result is the finding with the highest ratio (its statistic over its own threshold), so
a stuck meter is reported as "flatline", not also as a dip and a level shift. Flagged hours of one
device that are at most `gap_h` apart form one incident: a four-day level shift is one row with a
start and an end, not 96 alerts.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from services.anomaly.calibrate import apply_calibration, context_row, load_calibration
from services.anomaly.detectors import Finding, Panel
from services.anomaly.severity import SeverityPolicy, incident_severity
from shared.settings import Settings

__all__ = [
    "SEVERITIES",
    "THRESHOLD",
    "candidates_per_hour",
    "group_incidents",
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
    ratios = np.stack([f.ratio for f in findings])
    best = np.argmax(ratios, axis=0)
    ratio = np.take_along_axis(ratios, best[None], axis=0)[0]
    expected = np.take_along_axis(np.stack([f.expected for f in findings]), best[None], axis=0)[0]
    actual = np.take_along_axis(np.stack([f.actual for f in findings]), best[None], axis=0)[0]
    types = np.array([f.anomaly_type for f in findings])[best]
    score = ratio_to_score(ratio)
    cal = load_calibration() if calibrated else None
    first = keep = 0
    if from_hour is not None:
        if not include_missing:
            raise ValueError("ranking from an hour needs every hour of its devices (include_missing)")
        keep = int(panel.hours.searchsorted(from_hour))
        first = keep if cal is None else context_row(ratio, cal.candidate_ratio, keep)
    t_idx, d_idx = np.nonzero(panel.present | include_missing)
    if first:
        at = t_idx >= first
        t_idx, d_idx = t_idx[at], d_idx[at]
    frame = pd.DataFrame(
        {
            "device_id": np.array(panel.devices)[d_idx],
            "hour": panel.hours[t_idx],
            "score": score[t_idx, d_idx],
            "ratio": ratio[t_idx, d_idx],
            "is_anomaly": score[t_idx, d_idx] >= THRESHOLD,
            "anomaly_type": np.where(score[t_idx, d_idx] >= THRESHOLD, types[t_idx, d_idx], ""),
            "kind": types[t_idx, d_idx],
            "energy_kwh": panel.energy_kwh[t_idx, d_idx],
            "finding": best[t_idx, d_idx],
            "unit": np.array([f.unit for f in findings])[best[t_idx, d_idx]],
            "row": t_idx,
            "col": d_idx,
            "expected": expected[t_idx, d_idx],
            "actual": actual[t_idx, d_idx],
        }
    )
    frame = frame.sort_values(["device_id", "hour"], kind="stable").reset_index(drop=True)
    if cal is not None:
        fleet = None
        if panel.fleet is not None and panel.fleet.candidates is not None:
            if not include_missing:
                raise ValueError("a chunk's fleet share needs every hour of its devices (include_missing)")
            fleet = (panel.fleet.candidates, panel.fleet.size)
        frame = apply_calibration(frame, cal, fleet)
    else:
        frame["probability"] = frame["score"]
    if keep > first:
        frame = frame[frame["row"] >= keep].reset_index(drop=True)
    return frame


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
        if finding.run is not None:  # the detector knows how long it has really lasted
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
