"""Fit `calibration.json` on the development half of the public labelled meters, never on the test
half or on the history set: the logistic model first, then the alert cut-off, the highest
probability at which every kind still has event recall >= `min_kind_recall` on development data
(highest = fewest false incidents)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.anomaly.calibrate import (
    CALIBRATED_TYPES,
    FEATURES,
    Calibration,
    alert_cut,
    candidate_features,
    latched_probability,
)
from services.anomaly.csvscore import rank_energy
from services.anomaly.evaluate import Metrics, evaluate_scores, label_events, load_labels, split_meters

__all__ = ["CANDIDATE_RATIO", "fit_calibration", "fit_isotonic", "fit_on_labels"]

CANDIDATE_RATIO = 0.6
STEP = 0.05


def fit_calibration(
    ranked: pd.DataFrame,
    label: np.ndarray,
    *,
    candidate_ratio: float,
    alert_probability: dict[str, float],
    fitted_on: str,
) -> Calibration:
    """Logistic regression of the hour label on the candidate features (candidate hours of
    calibrated types only), on development data; the cut-off is chosen by the caller on the same."""
    from sklearn.linear_model import LogisticRegression

    features, run = candidate_features(ranked, candidate_ratio)
    rows = (run >= 0) & np.isin(ranked["kind"].to_numpy(), CALIBRATED_TYPES)
    at = features.index.to_numpy()
    keep = rows[at]
    model = LogisticRegression(C=1.0, max_iter=2000).fit(
        features.to_numpy()[keep], np.asarray(label)[at][keep]
    )
    return Calibration(
        candidate_ratio=candidate_ratio,
        alert_probability=alert_probability,
        intercept=float(model.intercept_[0]),
        coefficients={n: float(c) for n, c in zip(FEATURES, model.coef_[0], strict=True)},
        fitted_on=fitted_on,
    )


def fit_isotonic(ranked: pd.DataFrame, label: pd.Series, cal: Calibration) -> list[tuple[float, float]]:
    """Knots of the isotonic regression of the hour label on the latched probability (dev hours)."""
    from sklearn.isotonic import IsotonicRegression

    latched, calibrated, _ = latched_probability(ranked, cal)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(latched[calibrated], label.to_numpy()[calibrated])
    return [(float(x), float(y)) for x, y in zip(iso.X_thresholds_, iso.y_thresholds_, strict=True)]


def _joined(ranked: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    r = ranked.rename(columns={"device_id": "meter_id", "hour": "timestamp_utc", "kind": "detector_kind"})
    return labels.merge(r, on=["meter_id", "timestamp_utc"], how="inner", validate="one_to_one")


def _as_ranked(joined: pd.DataFrame) -> pd.DataFrame:
    """Back to rank_hours' columns (its `kind` is the detector's, the labels' `kind` the truth's)."""
    return joined.drop(columns=["kind"]).rename(
        columns={"meter_id": "device_id", "timestamp_utc": "hour", "detector_kind": "kind"}
    )


def fit_on_labels(
    path: str, *, min_event_recall: float = 0.92, min_kind_recall: float = 0.85
) -> tuple[Calibration, Metrics]:
    labels = load_labels(path)  # type: ignore[arg-type]
    energy = labels.rename(columns={"meter_id": "device_id", "timestamp_utc": "hour", "kwh": "energy_kwh"})
    ranked = rank_energy(energy[["device_id", "hour", "energy_kwh"]], calibrated=False)
    joined = _joined(ranked, labels)
    dev_meters, _ = split_meters(joined["meter_id"])
    dev = joined[joined["meter_id"].isin(dev_meters)].reset_index(drop=True)
    dev_ranked = _as_ranked(dev)
    start = dict.fromkeys(CALIBRATED_TYPES, 0.0)
    cal = fit_calibration(
        dev_ranked,
        dev["label"].to_numpy(),
        candidate_ratio=CANDIDATE_RATIO,
        alert_probability=start,
        fitted_on=f"development half of {path}: {len(dev_meters)} meters ({', '.join(sorted(dev_meters))})",
    )
    latched, _, may_alert = latched_probability(dev_ranked, cal)
    kind = dev_ranked["kind"].to_numpy()
    rule = dev_ranked["is_anomaly"].to_numpy(bool) & ~np.isin(kind, CALIBRATED_TYPES)
    events = label_events(dev)
    ratio = np.nan_to_num(dev_ranked["ratio"].to_numpy(dtype=float), nan=0.0)
    clear = np.isin(kind, CALIBRATED_TYPES) & (ratio >= cal.clear_ratio)

    def measure(cuts: dict[str, float]) -> Metrics:
        c = cal.model_copy(update={"alert_probability": cuts})
        flag = (may_alert & (latched >= alert_cut(kind, c))) | rule | clear
        part = dev.assign(anomaly_type=np.where(flag, kind, ""))
        return evaluate_scores("fit (dev)", part, latched, flag, events)

    # Greedy: raise whichever type's cut removes the most false incidents while overall event
    # recall stays >= min_event_recall and every kind keeps min_kind_recall (or, for a kind the
    # candidates alone cannot reach that often, what it has with every candidate flagged).
    base = measure(start)
    floor = {k: min(min_kind_recall, r) for k, r in base.recall_by_kind.items()}

    def feasible(m: Metrics) -> bool:
        return m.event_recall >= min_event_recall and all(r >= floor[k] for k, r in m.recall_by_kind.items())

    cuts, best = dict(start), base
    while True:
        trials = []
        for t in CALIBRATED_TYPES:
            if cuts[t] + STEP > 0.99:
                continue
            trial = {**cuts, t: round(cuts[t] + STEP, 3)}
            m = measure(trial)
            if feasible(m):
                trials.append((m.false_incidents, -m.point_precision, t, trial, m))
        if not trials:
            break
        _, _, _, cuts, best = min(trials, key=lambda x: (x[0], x[1], x[2]))
    chosen = cal.model_copy(
        update={"alert_probability": cuts, "isotonic": fit_isotonic(dev_ranked, dev["label"], cal)}
    )
    return chosen, best
