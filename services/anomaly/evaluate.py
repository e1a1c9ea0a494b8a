"""How good are the scores? Point-wise and event-wise precision/recall/F1 and ROC-AUC against
labelled hours, and what an operator feels: the share of raised incidents that touch a real fault
(event precision) and false incidents per meter-year. Baselines computed in the same run give
every figure a reference: the robust z-score of the residual against the same hour last week (the
data README's reference), a causal rolling robust z-score, and an isolation forest (scikit-learn;
fitted on the whole year, so it is *not* causal and flatters itself).

Honest by construction: thresholds are frozen on a development split (`split_meters`: every other
meter in sorted order, or development years) and figures are reported on the rest; natural zero
readings (the archive's own data-quality events) are reported apart from the injected faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

__all__ = [
    "NATURAL_ZERO",
    "TYPE_TO_KIND",
    "Metrics",
    "evaluate_scores",
    "freeze_threshold",
    "isolation_forest_scores",
    "join_scores",
    "label_events",
    "load_labels",
    "rolling_z_scores",
    "same_week_z_scores",
    "split_meters",
    "without_natural_zeros",
]

EVENT_MERGE_GAP_H = 24
ROLLING_Z_WINDOW_H = 168
ROLLING_Z_THRESHOLD = 3.5
SAME_WEEK_SCALE_H = 4 * 168
NATURAL_ZERO = "zero_reading_natural"
HOURS_PER_YEAR = 8760
# The detector's incident types and the label kinds they answer (for precision by kind).
TYPE_TO_KIND = {
    "spike": "spike",
    "dip": "dip",
    "level_shift": "level_shift",
    "flatline": "flatline",
    "baseload_rise": "night_surge",
    "dropout": NATURAL_ZERO,
    "impossible_value": NATURAL_ZERO,
}


class Metrics(BaseModel):
    method: str
    roc_auc: float
    point_precision: float
    point_recall: float
    point_f1: float
    event_precision: float
    event_recall: float
    event_f1: float
    flagged_hours: int
    recall_by_kind: dict[str, float]
    point_recall_by_kind: dict[str, float]
    incidents: int = 0
    false_incidents: int = 0
    meter_years: float = 0.0
    false_incidents_per_meter_year: float = 0.0
    auc_by_kind: dict[str, float] = {}
    precision_by_kind: dict[str, float] = {}


def load_labels(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    missing = {"meter_id", "timestamp_utc", "label"} - set(raw.columns)
    if missing:
        raise ValueError(f"labels file {path} lacks column(s) {sorted(missing)}")
    out = pd.DataFrame(
        {
            "meter_id": raw["meter_id"].astype(str),
            "timestamp_utc": pd.to_datetime(raw["timestamp_utc"], utc=True),
            "label": raw["label"].astype(int),
            "kind": raw.get("anomaly_kind", pd.Series("anomaly", index=raw.index)).fillna(""),
        }
    )
    if "kwh" in raw.columns:
        out["kwh"] = pd.to_numeric(raw["kwh"], errors="coerce")
    return out


def label_events(labels: pd.DataFrame, merge_gap_h: int = EVENT_MERGE_GAP_H) -> pd.DataFrame:
    """Events = runs of labelled hours of one kind on one meter; runs less than a day apart are one
    event (a night-time surge is labelled night by night but injected as one fault)."""
    pos = labels[labels["label"] == 1].sort_values(["meter_id", "timestamp_utc"])
    if pos.empty:
        return pd.DataFrame(columns=["meter_id", "kind", "start", "end", "event"])
    new = (
        (pos["meter_id"] != pos["meter_id"].shift())
        | (pos["kind"] != pos["kind"].shift())
        | (pos["timestamp_utc"].diff() > pd.Timedelta(hours=merge_gap_h))
    )
    pos = pos.assign(event=new.cumsum())
    return (
        pos.groupby("event")
        .agg(
            meter_id=("meter_id", "first"),
            kind=("kind", "first"),
            start=("timestamp_utc", "min"),
            end=("timestamp_utc", "max"),
        )
        .reset_index()
    )


def _event_hits(joined: pd.DataFrame, flag: np.ndarray, events: pd.DataFrame) -> np.ndarray:
    """An event is found when any hour between its first and last labelled hour is flagged."""
    flagged = joined.loc[flag, ["meter_id", "timestamp_utc"]]
    hits = np.zeros(len(events), dtype=bool)
    by_meter = {m: g["timestamp_utc"].dt.tz_convert(None).to_numpy() for m, g in flagged.groupby("meter_id")}
    for i, ev in enumerate(events.itertuples()):
        times = by_meter.get(ev.meter_id)
        if times is not None:
            lo = np.searchsorted(times, ev.start.tz_convert(None).to_datetime64(), "left")
            hi = np.searchsorted(times, ev.end.tz_convert(None).to_datetime64(), "right")
            hits[i] = hi > lo
    return hits


def _flag_groups(joined: pd.DataFrame, flag: np.ndarray, gap_h: int = 3) -> pd.DataFrame:
    """Flagged hours grouped into incidents like the service groups them: per incident whether it
    touches a labelled hour, and its detector type (the most frequent, if scores carry types)."""
    cols = ["meter_id", "timestamp_utc", "label"] + (["anomaly_type"] if "anomaly_type" in joined else [])
    f = joined.loc[flag, cols]
    if f.empty:
        return pd.DataFrame(columns=["touched", "anomaly_type"])
    new = (f["meter_id"] != f["meter_id"].shift()) | (f["timestamp_utc"].diff() > pd.Timedelta(hours=gap_h))
    groups = f.groupby(new.cumsum().to_numpy())
    out = pd.DataFrame({"touched": groups["label"].max().astype(bool)})
    if "anomaly_type" in f:
        out["anomaly_type"] = groups["anomaly_type"].agg(lambda s: s.value_counts().idxmax())
    return out


def _meter_years(joined: pd.DataFrame) -> float:
    return len(joined) / HOURS_PER_YEAR


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate_scores(
    method: str, joined: pd.DataFrame, score: np.ndarray, flag: np.ndarray, events: pd.DataFrame
) -> Metrics:
    y = joined["label"].to_numpy()
    tp = int(np.sum(flag & (y == 1)))
    precision = tp / max(int(flag.sum()), 1)
    recall = tp / max(int(y.sum()), 1)
    hits = _event_hits(joined, flag, events)
    event_recall = float(hits.mean()) if len(hits) else 0.0
    groups = _flag_groups(joined, flag)
    event_precision = float(groups["touched"].mean()) if len(groups) else 0.0
    false_incidents = int((~groups["touched"]).sum()) if len(groups) else 0
    meter_years = _meter_years(joined)
    by_kind = events.assign(hit=hits).groupby("kind")["hit"].mean()
    pos = joined["label"] == 1
    point_by_kind = pd.Series(flag[pos.to_numpy()], index=joined.loc[pos, "kind"]).groupby(level=0).mean()
    clean = score if np.isfinite(score).all() else np.nan_to_num(score, nan=0.0)
    auc_by_kind = {}
    for kind in sorted(set(joined.loc[pos, "kind"])):
        mask = (y == 0) | (joined["kind"].to_numpy() == kind)
        auc_by_kind[str(kind)] = float(roc_auc_score(y[mask], clean[mask]))
    precision_by_kind = {}
    if "anomaly_type" in groups and len(groups):
        kinds = groups["anomaly_type"].map(TYPE_TO_KIND).fillna("other")
        precision_by_kind = {str(k): float(g.mean()) for k, g in groups["touched"].groupby(kinds)}
    return Metrics(
        method=method,
        roc_auc=float(roc_auc_score(y, np.nan_to_num(score, nan=0.0)))
        if 0 < y.sum() < len(y)
        else float("nan"),
        point_precision=precision,
        point_recall=recall,
        point_f1=_f1(precision, recall),
        event_precision=event_precision,
        event_recall=event_recall,
        event_f1=_f1(event_precision, event_recall),
        flagged_hours=int(flag.sum()),
        recall_by_kind={str(k): float(v) for k, v in by_kind.items()},
        point_recall_by_kind={str(k): float(v) for k, v in point_by_kind.items()},
        incidents=len(groups),
        false_incidents=false_incidents,
        meter_years=meter_years,
        false_incidents_per_meter_year=false_incidents / meter_years if meter_years else 0.0,
        auc_by_kind=auc_by_kind,
        precision_by_kind=precision_by_kind,
    )


def same_week_z_scores(
    joined: pd.DataFrame, threshold: float = ROLLING_Z_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """The data README's reference: r = kWh minus the same hour a week earlier (by clock, so a gap
    is no shift), judged as |r - median| / (1.4826 MAD) over the previous four weeks of r. Causal."""
    out = np.zeros(len(joined))
    for _, idx in joined.groupby("meter_id").indices.items():
        x = pd.Series(joined["kwh"].to_numpy()[idx], index=joined["timestamp_utc"].to_numpy()[idx])
        full = x.asfreq("h")
        r = full - full.shift(168)
        med = r.rolling(SAME_WEEK_SCALE_H, min_periods=48).median().shift(1)
        mad = (r - med).abs().rolling(SAME_WEEK_SCALE_H, min_periods=48).median().shift(1)
        z = ((r - med).abs() / (1.4826 * mad.where(mad > 0))).reindex(x.index)
        out[idx] = z.fillna(0).to_numpy()
    return out, out >= threshold


def freeze_threshold(score: np.ndarray, label: np.ndarray) -> float:
    """The cut-off with the best point F1 on development data (a baseline's best case, frozen)."""
    qs = np.unique(np.quantile(score, np.linspace(0.80, 0.9995, 200)))
    best, best_f1 = float(qs[-1]), -1.0
    pos = max(int(label.sum()), 1)
    for q in qs:
        flag = score >= q
        tp = int(np.sum(flag & (label == 1)))
        f1 = _f1(tp / max(int(flag.sum()), 1), tp / pos)
        if f1 > best_f1:
            best, best_f1 = float(q), f1
    return best


def split_meters(meters: list[str] | pd.Series) -> tuple[set[str], set[str]]:
    """(development, test): every other meter in sorted order, so neither half is "the big ones"."""
    ordered = sorted(set(meters))
    return set(ordered[0::2]), set(ordered[1::2])


def without_natural_zeros(joined: pd.DataFrame) -> pd.DataFrame:
    """The injected faults alone: natural zero readings are the archive's own data-quality events,
    reported apart, so they neither pad recall nor count as false alarms."""
    return joined[joined["kind"] != NATURAL_ZERO].reset_index(drop=True)


def rolling_z_scores(joined: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Causal rolling robust z: |x - median| / (1.4826 MAD) over the previous week."""
    out = np.zeros(len(joined))
    for _, idx in joined.groupby("meter_id").indices.items():
        x = pd.Series(joined["kwh"].to_numpy()[idx])
        med = x.rolling(ROLLING_Z_WINDOW_H, min_periods=24).median().shift(1)
        mad = (x - med).abs().rolling(ROLLING_Z_WINDOW_H, min_periods=24).median().shift(1)
        z = (x - med).abs() / (1.4826 * mad.where(mad > 0))
        out[idx] = z.fillna(0).to_numpy()
    return out, out >= ROLLING_Z_THRESHOLD


def isolation_forest_scores(joined: pd.DataFrame, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One forest per meter on level, hour-of-week and change vs 1 h / 24 h / 168 h ago."""
    score = np.zeros(len(joined))
    flag = np.zeros(len(joined), dtype=bool)
    times = joined["timestamp_utc"]
    for _, idx in joined.groupby("meter_id").indices.items():
        x = pd.Series(joined["kwh"].to_numpy()[idx])
        level = x / max(float(x.median()), 1e-9)
        feats = pd.DataFrame(
            {
                "level": level,
                "hour": times.iloc[idx].dt.hour.to_numpy(),
                "dow": times.iloc[idx].dt.dayofweek.to_numpy(),
                "d1": level.diff(1),
                "d24": level.diff(24),
                "d168": level.diff(168),
            }
        ).fillna(0.0)
        forest = IsolationForest(n_estimators=100, random_state=seed).fit(feats)
        score[idx] = -forest.score_samples(feats)
        flag[idx] = forest.predict(feats) == -1
    return score, flag


def join_scores(scores: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Labels with the scores beside them; a labelled hour without a score is an error."""
    s = scores.assign(timestamp_utc=pd.to_datetime(scores["timestamp_utc"], utc=True))
    joined = labels.merge(s, on=["meter_id", "timestamp_utc"], how="left", validate="one_to_one")
    missing = joined["score"].isna()
    if missing.any():
        row = joined[missing].iloc[0]
        raise ValueError(
            f"{int(missing.sum())} labelled hours have no score, "
            f"e.g. {row['meter_id']} {row['timestamp_utc']}"
        )
    return joined.sort_values(["meter_id", "timestamp_utc"]).reset_index(drop=True)
