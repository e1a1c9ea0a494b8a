"""From detector ratios to the probability that an hour belongs to a real fault, and the alert rule.

The detectors' ratios say how unusual an hour is on each detector's own scale; on real buildings
plenty of unusual hours are no fault (a closure, a noisy meter, a one-off event), which is what made
two of every three incidents false. Here every *candidate* hour (winning ratio >= `candidate_ratio`)
gets a logistic model's probability from what distinguishes faults from everyday surprises:

- how far over threshold it is, per detector type, and how long the run has lasted so far;
- the fleet at the same hour (`fleet_share`: a closure moves many meters at once, a fault one);
- the meter's own recent history of surprises (`noise`: a meter that is always "unusual" is not);
- the size of the departure in the meter's own units: kWh above or below expected as a share of
  the meter's typical hour (`excess`: a fault that matters moves whole "typical hours" of energy,
  an everyday surprise a fraction of one) and actual over expected (`log_ae`).

Every feature uses only the hour itself and earlier hours (the fleet share uses other meters' same
hour), so scoring stays causal. Within one run of candidate hours the probability is latched (its
running maximum): once an incident is worth raising, its later hours stay flagged. The coefficients
are fitted by logistic regression (a Platt-style calibrated probability) on the *development* half
of the public labelled meters only (`fitting.fit_on_labels`, run by `bench/bench_anomaly.py --fit`)
and stored in `calibration.json`; the alert cut-offs are frozen there too. Types without labelled
examples (dropouts, voltage, impossible values) keep the detector's own rule and score.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

__all__ = [
    "CALIBRATED_TYPES",
    "CALIBRATION_FILE",
    "Calibration",
    "alert_cut",
    "apply_calibration",
    "candidate_features",
    "latched_probability",
    "load_calibration",
    "recalibrate",
]

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
CALIBRATED_TYPES = ("spike", "dip", "level_shift", "flatline", "baseload_rise")
GAP_H = 3
NOISE_WINDOW = "28D"


class Calibration(BaseModel):
    candidate_ratio: float
    min_alert_ratio: float = 1.0  # a run is raised only once it has crossed its detector's own threshold
    # Clear-cut departures are raised whatever the model says: on these buildings huge departures
    # are more often unlabelled oddities than injected faults, and the model learned that; a meter
    # at a tenth of its load is still worth a look.
    clear_ratio: float = 4.0
    # Latching (a run keeps its highest hour) makes the raw probability over-confident about the
    # hours after the peak: an isotonic map fitted on the development hours, as (latched, observed
    # share of real-fault hours) knots, turns it back into a probability for severity.
    isotonic: list[tuple[float, float]] = []
    alert_probability: dict[str, float]  # per calibrated type: each kind keeps its recall
    intercept: float
    coefficients: dict[str, float]
    fitted_on: str = ""


# Size enters as bins (a generalised additive logistic model): the link between size and fault is
# not monotone (a meter catching up after a gap books many typical hours in one, and is no fault).
EXCESS_BINS = (-np.inf, -2.0, -0.5, 0.5, 1.5, 3.0, 8.0, np.inf)
LOG_AE_BINS = (-np.inf, -2.3, -1.2, -0.5, 0.3, 0.8, 1.5, np.inf)


def _feature_names() -> list[str]:
    names = ["log_peak_so_far", "fleet_share", "noise"]
    for t in CALIBRATED_TYPES:
        names += [f"is_{t}", f"{t}_log_ratio", f"{t}_log_hours"]
        names += [f"{t}_excess_{i}" for i in range(len(EXCESS_BINS) - 1)]
        names += [f"{t}_log_ae_{i}" for i in range(len(LOG_AE_BINS) - 1)]
    return names


FEATURES = _feature_names()


def _runs(ranked: pd.DataFrame, candidate: np.ndarray) -> np.ndarray:
    """Run id per row: consecutive candidate hours of one device at most GAP_H apart (-1 if none)."""
    hours = ranked["hour"].to_numpy()
    device = ranked["device_id"].to_numpy()
    run = np.full(len(ranked), -1, dtype=np.int64)
    idx = np.flatnonzero(candidate)
    if len(idx) == 0:
        return run
    gap = np.diff(hours[idx]) > np.timedelta64(GAP_H, "h")
    new_device = device[idx][1:] != device[idx][:-1]
    run[idx] = np.concatenate([[0], np.cumsum(gap | new_device)])
    return run


def candidate_features(
    ranked: pd.DataFrame, candidate_ratio: float, fleet: tuple[np.ndarray, int] | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """(features of the candidate rows, indexed by their row position; run id per row). `ranked` is
    `combine.rank_hours` output sorted by device and hour, with `ratio` and `kind` (the winning
    detector type) for every row. Only candidate rows get features (a year of a fleet has ~1 %).
    `fleet` = (candidates per panel row, fleet size) when `ranked` holds every hour of only some
    of the fleet's devices (`Panel.fleet`): the fleet share is then the whole fleet's."""
    ratio = np.nan_to_num(ranked["ratio"].to_numpy(dtype=float), nan=0.0)
    candidate = ratio >= candidate_ratio
    run = _runs(ranked, candidate)
    frame = pd.DataFrame({"run": run, "ratio": ratio, "cand": candidate, "hour": ranked["hour"]})
    in_run = frame[candidate]
    peak = in_run.groupby("run")["ratio"].cummax()
    hours_so_far = (in_run["hour"] - in_run.groupby("run")["hour"].transform("min")) / pd.Timedelta(
        hours=1
    ) + 1
    log_peak = np.zeros(len(ranked))
    log_hours = np.zeros(len(ranked))
    log_peak[candidate] = np.log1p(peak.to_numpy())
    log_hours[candidate] = np.log1p(hours_so_far.to_numpy())
    # Fleet: share of the other devices that are candidates at the same hour.
    if fleet is None:
        per_hour = frame.groupby("hour")["cand"].agg(["sum", "size"])
        total = frame["hour"].map(per_hour["sum"]).to_numpy(dtype=float)
        size = frame["hour"].map(per_hour["size"]).to_numpy(dtype=float)
    else:
        total = fleet[0][ranked["row"].to_numpy()].astype(float)
        size = np.full(len(ranked), float(fleet[1]))
    fleet_share = np.where(size > 1, (total - candidate) / np.maximum(size - 1, 1), 0.0)
    # Noise: the device's share of candidate hours over the previous 28 days (itself excluded).
    cand_series = pd.Series(candidate.astype(float), index=pd.DatetimeIndex(ranked["hour"]))
    noise = (
        cand_series.groupby(ranked["device_id"].to_numpy())
        .transform(lambda s: s.rolling(NOISE_WINDOW, min_periods=1).mean().shift(1))
        .fillna(0.0)
        .to_numpy()
    )
    # Size: the meter's typical hour is its median kWh over the previous 28 days.
    energy = pd.Series(ranked["energy_kwh"].to_numpy(dtype=float), index=pd.DatetimeIndex(ranked["hour"]))
    typical = (
        energy.groupby(ranked["device_id"].to_numpy())
        .transform(lambda s: s.rolling(NOISE_WINDOW, min_periods=24).median().shift(1))
        .to_numpy()
    )
    actual = np.nan_to_num(ranked["energy_kwh"].to_numpy(dtype=float), nan=0.0)
    expected = ranked["expected"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.clip(
            np.nan_to_num((actual - expected) / typical, nan=0.0, posinf=0.0, neginf=0.0), -10, 10
        )
        log_ae = np.clip(
            np.nan_to_num(np.log((actual + 1e-3) / (expected + 1e-3)), nan=0.0, posinf=0.0, neginf=0.0), -5, 5
        )
    at = np.flatnonzero(candidate)
    excess, log_ae, log_hours = excess[at], log_ae[at], log_hours[at]
    feats = {"log_peak_so_far": log_peak[at], "fleet_share": fleet_share[at], "noise": noise[at]}
    kind = ranked["kind"].to_numpy()[at]
    log_ratio = np.log1p(ratio[at])
    for t in CALIBRATED_TYPES:
        is_t = kind == t
        feats[f"is_{t}"] = is_t.astype(float)
        feats[f"{t}_log_ratio"] = np.where(is_t, log_ratio, 0.0)
        feats[f"{t}_log_hours"] = np.where(is_t, log_hours, 0.0)
        for name, values, edges in (("excess", excess, EXCESS_BINS), ("log_ae", log_ae, LOG_AE_BINS)):
            which = np.digitize(values, edges[1:-1])
            for i in range(len(edges) - 1):
                feats[f"{t}_{name}_{i}"] = (is_t & (which == i)).astype(float)
    return pd.DataFrame(feats, index=at)[FEATURES], run


def _probability(features: pd.DataFrame, cal: Calibration) -> np.ndarray:
    w = np.array([cal.coefficients.get(n, 0.0) for n in FEATURES])
    return 1.0 / (1.0 + np.exp(-(features.to_numpy() @ w + cal.intercept)))


def latched_probability(
    ranked: pd.DataFrame, cal: Calibration, fleet: tuple[np.ndarray, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latched probability, is calibrated, may alert) per row: the running maximum of the probability within
    each run of candidate hours, so an incident once worth raising stays raised; a row may alert
    only once its run has reached `min_alert_ratio` (the candidates below it only add context)."""
    features, run = candidate_features(ranked, cal.candidate_ratio, fleet)
    kind = ranked["kind"].to_numpy()
    calibrated = np.isin(kind, CALIBRATED_TYPES) & (run >= 0)
    p = np.zeros(len(ranked))
    p[features.index.to_numpy()] = _probability(features, cal)
    p = np.where(calibrated, p, 0.0)
    latched = pd.Series(p).groupby(run).cummax().to_numpy()
    over = np.nan_to_num(ranked["ratio"].to_numpy(dtype=float), nan=0.0) >= cal.min_alert_ratio
    reached = pd.Series(over).groupby(run).cummax().to_numpy().astype(bool)
    return np.where(run >= 0, latched, p), calibrated, calibrated & np.where(run >= 0, reached, over)


def alert_cut(kind: np.ndarray, cal: Calibration) -> np.ndarray:
    """Each row's cut-off: its detector type's (1.0, never, for a type the calibration lacks)."""
    cuts = np.ones(len(kind))
    for t, c in cal.alert_probability.items():
        cuts[kind == t] = c
    return cuts


def recalibrate(latched: np.ndarray, cal: Calibration) -> np.ndarray:
    """The isotonic map of the latched probability (identity when none was fitted)."""
    if not cal.isotonic:
        return latched
    xs, ys = zip(*cal.isotonic, strict=True)
    return np.interp(latched, xs, ys)


def apply_calibration(
    ranked: pd.DataFrame, cal: Calibration, fleet: tuple[np.ndarray, int] | None = None
) -> pd.DataFrame:
    """`ranked` with `probability`, `score` (= latched probability for calibrated types),
    `is_anomaly` and `anomaly_type` decided by the calibrated rule (`fleet`: `candidate_features`)."""
    kind = ranked["kind"].to_numpy()
    latched, calibrated, may_alert = latched_probability(ranked, cal, fleet)
    rule_score = ranked["score"].to_numpy()
    rule_flag = ranked["is_anomaly"].to_numpy(bool) & ~np.isin(kind, CALIBRATED_TYPES)
    # Below-candidate hours keep a small score that still ranks them by ratio (for ROC-AUC).
    ratio = np.nan_to_num(ranked["ratio"].to_numpy(dtype=float), nan=0.0)
    clear = np.isin(kind, CALIBRATED_TYPES) & (ratio >= cal.clear_ratio)
    score = np.where(calibrated, latched, np.where(rule_flag, rule_score, rule_score * 0.1))
    score = np.where(clear, np.maximum(score, rule_score), score)
    flag = (may_alert & (latched >= alert_cut(kind, cal))) | clear | rule_flag
    out = ranked.copy()
    out["probability"] = np.where(calibrated, recalibrate(latched, cal), np.where(rule_flag, rule_score, 0.0))
    out["score"] = score
    out["is_anomaly"] = flag
    out["anomaly_type"] = np.where(flag, kind, "")
    return out


@cache
def load_calibration(path: Path = CALIBRATION_FILE) -> Calibration | None:
    """The frozen calibration, or None (the detectors' plain rule) when none has been fitted."""
    if not path.exists():
        return None
    return Calibration.model_validate(json.loads(path.read_text()))
