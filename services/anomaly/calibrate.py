"""From detector ratios to the probability that an hour belongs to a real fault, and the alert rule.

The detectors' ratios say how unusual an hour is on each detector's own scale; on real buildings
plenty of unusual hours are no fault (a closure, a noisy meter, a one-off event), which is what made
two of every three incidents false. Here every *candidate* hour (winning ratio >= `candidate_ratio`)
gets a probability from what distinguishes faults from everyday surprises:

- how far over threshold it is, per detector type, and how long the run has lasted so far;
- the fleet at the same hour (`fleet_share`: a closure moves many meters at once, a fault one);
- the meter's own recent history of surprises (`noise`: a meter that is always "unusual" is not);
- the size of the departure in the meter's own units: kWh above or below expected as a share of
  the meter's typical hour (`excess`), actual over expected (`log_ae`), and how far the hour lies
  beyond the meter's own 1st-99th percentile of the past four weeks (`over_high`, `under_low`: an
  injected spike or a stuck zero leaves the meter's whole range, an everyday surprise rarely does);
- the run so far: the mean and spread of log(actual/expected) over its hours (a level shift moves
  every hour by the same factor, noise does not), its share of night hours (00-05 UTC), and the
  hour of day and day of week.

Every feature uses only the hour itself and earlier hours (the fleet share uses other meters' same
hour), so scoring stays causal. Within one run of candidate hours the probability is latched (its
running maximum): once an incident is worth raising, its later hours stay flagged. A spike or
dip must also be big enough to act on (`min_size`: the energy it adds in typical hours, or how
far below expected it falls), a floor that keeps 99.5 % of the injected training faults of its
type. The model is additive on the log-odds scale: an intercept, optional linear terms and
gradient-boosted trees
(scikit-learn's HistGradientBoosting, exported as plain node tables so scoring needs no pickle).
It is fitted on faults injected with training seeds into the clean data of the *development*
meters only, its alert cut-offs and isotonic map on the development half of the public labelled
set, whose labels the trees never see (`fitting.fit_on_labels`, run by
`bench/bench_anomaly.py --fit`), and all of it is stored in `calibration.json`. Types without
labelled examples (dropouts, voltage, impossible values) keep the detector's own rule and score.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from services.anomaly.detectors.panel import as_utc

__all__ = [
    "CALIBRATED_TYPES",
    "CALIBRATION_FILE",
    "SIZE_FEATURES",
    "Calibration",
    "Tree",
    "alert_cut",
    "apply_calibration",
    "candidate_features",
    "departure_size",
    "latched_probability",
    "load_calibration",
    "recalibrate",
    "size_gate",
]

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
CALIBRATED_TYPES = ("spike", "dip", "level_shift", "flatline", "baseload_rise")
GAP_H = 3
NOISE_WINDOW = "28D"


class Tree(BaseModel):
    """One regression tree as parallel node arrays (node 0 the root): a row goes left when its
    `feature` value is <= `threshold` (or is NaN and `nan_left`), and a leaf adds `value`."""

    feature: list[int]
    threshold: list[float]
    nan_left: list[bool]
    left: list[int]
    right: list[int]
    leaf: list[bool]
    value: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        feature, threshold = np.array(self.feature), np.array(self.threshold)
        left, right, leaf = np.array(self.left), np.array(self.right), np.array(self.leaf)
        nan_left = np.array(self.nan_left)
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        while True:
            active = ~leaf[node]
            if not active.any():
                return np.array(self.value)[node]
            v = x[rows, feature[node]]
            go_left = np.where(np.isnan(v), nan_left[node], v <= threshold[node])
            node = np.where(active, np.where(go_left, left[node], right[node]), node)


class Calibration(BaseModel):
    candidate_ratio: float
    # A run may alert only once it reaches this ratio (the fit sets it; 1.0 = its detector's own threshold).
    min_alert_ratio: float = 1.0
    # Clear-cut departures are raised whatever the model says: on these buildings huge departures
    # are more often unlabelled oddities than injected faults, and the model learned that; a meter
    # at a tenth of its load is still worth a look.
    clear_ratio: float = 4.0
    # Latching (a run keeps its highest hour) makes the raw probability over-confident about the
    # hours after the peak: an isotonic map fitted on the development hours, as (latched, observed
    # share of real-fault hours) knots, turns it back into a probability for severity.
    isotonic: list[tuple[float, float]] = []
    alert_probability: dict[str, float]  # per calibrated type: each kind keeps its recall
    # The smallest departure worth an alert, per type, in the meter's own terms (`departure_size`;
    # fitted like the cut-offs): most false spikes and dips are real but small surprises that the
    # model cannot tell from a fault by shape alone, and an operator would not act on them anyway.
    min_size: dict[str, float] = {}
    intercept: float
    coefficients: dict[str, float] = {}  # linear terms on the log-odds (by feature name)
    trees: list[Tree] = []  # boosted trees added to the log-odds
    fitted_on: str = ""


def _feature_names() -> list[str]:
    names = [f"is_{t}" for t in CALIBRATED_TYPES]
    names += ["log_ratio", "log_peak_so_far", "log_hours", "fleet_share", "noise", "excess", "log_ae"]
    names += ["over_high", "under_low", "level", "hour_of_day", "day_of_week"]
    return [*names, "run_hours", "run_mean_log_ae", "run_spread_log_ae", "run_night_share", "prev_log_ratio"]


FEATURES = _feature_names()
NIGHT_END_H = 6


def _trailing(
    values: np.ndarray, device: np.ndarray, hours: pd.DatetimeIndex, stat: str, at: np.ndarray | None = None
) -> np.ndarray:
    """Per device, a statistic of its previous 28 days of `values`, NaN hours skipped. `stat` is
    "mean" (any hour counts) or "median" / "q0.99" / "q0.01" (NaN before a day of hours). With
    `at` (row positions), only those rows' values are returned."""

    def apply(frame: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
        roll = frame.rolling(NOISE_WINDOW, min_periods=1 if stat == "mean" else 24)
        if stat == "mean":
            return roll.mean().shift(1)
        return (roll.median() if stat == "median" else roll.quantile(float(stat[1:]))).shift(1)

    starts = np.flatnonzero(np.concatenate([[True], device[1:] != device[:-1]]))
    n = len(device) // max(len(starts), 1)
    grid = (
        len(device) == n * len(starts)
        and len(set(device[starts])) == len(starts)
        and bool(np.all(hours.asi8.reshape(len(starts), n) == hours.asi8[:n]))
    )
    hourly = n > 1 and bool(np.all(hours[1:n] - hours[: n - 1] == pd.Timedelta(hours=1)))
    if grid and at is not None and hourly:
        # Every device on the same regular hours (the service's window), and only some rows
        # wanted (the candidates, ~1 % of a chunk's weeks): those rows' windows alone, with
        # pandas' own arithmetic, instead of rolling every row (docs/scaling.md).
        return _trailing_rows(values.reshape(len(starts), n).T, at % n, at // n, stat)
    if grid:  # every device on the same hours (the service's window): one frame, a column each,
        # the same windows as one series per device, without a Python call per device.
        wide = pd.DataFrame(values.reshape(len(starts), n).T, index=hours[:n])
        out = apply(wide).to_numpy().T.ravel()
    else:
        series = pd.Series(values, index=hours)
        out = series.groupby(device).transform(apply).to_numpy()
    return out if at is None else out[at]


WINDOW_ROWS = int(pd.Timedelta(NOISE_WINDOW) / pd.Timedelta(hours=1))
TRAILING_BLOCK = 1024  # rows gathered at once: 1024 x 672 values, 5.5 MB


def _trailing_rows(wide: np.ndarray, rows: np.ndarray, cols: np.ndarray, stat: str) -> np.ndarray:
    """`_trailing` of cells (rows[i], cols[i]) of an hours x devices grid of regular hours: the
    statistic of the column's WINDOW_ROWS rows before the cell (pandas' (h - 28 d, h] window at the
    row before), NaN skipped; median and quantile as pandas' rolling ones compute them (the lower
    and upper order statistics, linearly interpolated at q (n - 1)), so the values are identical."""
    padded = np.vstack([np.full((WINDOW_ROWS, wide.shape[1]), np.nan), wide])
    out = np.full(len(rows), np.nan)
    offsets = np.arange(WINDOW_ROWS)[None, :]
    for lo in range(0, len(rows), TRAILING_BLOCK):
        r, c = rows[lo : lo + TRAILING_BLOCK], cols[lo : lo + TRAILING_BLOCK]
        window = padded[r[:, None] + offsets, c[:, None]]  # padded row r = grid row r - WINDOW_ROWS
        count = np.sum(~np.isnan(window), axis=1)
        if stat == "mean":
            with np.errstate(invalid="ignore"):
                out[lo : lo + len(r)] = np.where(count >= 1, np.nansum(window, axis=1) / count, np.nan)
            continue
        window = np.sort(window, axis=1)  # NaN last
        if stat == "median":
            lo_i, hi_i = (count - 1) // 2, count // 2
            value = (_at(window, lo_i) + _at(window, hi_i)) / 2
        else:
            idx = float(stat[1:]) * (count - 1)
            lo_i = idx.astype(np.int64)
            frac = idx - lo_i
            low = _at(window, lo_i)
            value = np.where(frac == 0, low, low + (_at(window, lo_i + 1) - low) * frac)
        out[lo : lo + len(r)] = np.where(count >= 24, value, np.nan)
    return out


def _at(sorted_rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    width = sorted_rows.shape[1]
    return np.take_along_axis(sorted_rows, np.clip(idx, 0, width - 1)[:, None], axis=1)[:, 0]


def context_row(ratio: np.ndarray, candidate_ratio: float, from_row: int) -> int:
    """The first row of an hours x devices grid that the features of rows >= `from_row` read: the
    first hour of every candidate run still going at `from_row` (latching and the run features
    see the whole run), less the trailing window (noise and the meter's typical hours). Ranking
    only from there gives rows >= `from_row` exactly the values a ranking of the whole grid gives,
    so the service ranks its window and not the weeks of history it loads for the baseline."""
    first = from_row
    candidate = np.nan_to_num(ratio, nan=0.0) >= candidate_ratio
    for col in range(candidate.shape[1]):
        rows = np.flatnonzero(candidate[:, col])
        k = int(np.searchsorted(rows, from_row))
        if k == len(rows):  # no candidate from `from_row` on: no run reaches it
            continue
        while k > 0 and rows[k] - rows[k - 1] <= GAP_H:
            k -= 1
        first = min(first, int(rows[k]))
    window = int(pd.Timedelta(NOISE_WINDOW) / pd.Timedelta(hours=1))
    return max(0, first - window - 1)


def _clip(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=hi, neginf=lo), lo, hi)


def _runs(ranked: pd.DataFrame, candidate: np.ndarray) -> np.ndarray:
    """Run id per row: consecutive candidate hours of one device at most GAP_H apart (-1 if none)."""
    hours = pd.DatetimeIndex(as_utc(ranked["hour"])).tz_convert(None).to_numpy()
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
    at = np.flatnonzero(candidate)
    hours_so_far = (in_run["hour"] - in_run.groupby("run")["hour"].transform("min")) / pd.Timedelta(hours=1)
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
    hours = pd.DatetimeIndex(ranked["hour"])
    device = ranked["device_id"].to_numpy()
    noise = np.nan_to_num(_trailing(candidate.astype(float), device, hours, "mean", at), nan=0.0)
    # Size against the meter's own past four weeks: its typical (median) hour and its 1-99 % range.
    energy = ranked["energy_kwh"].to_numpy(dtype=float)
    typical = _trailing(energy, device, hours, "median", at)
    high = _trailing(energy, device, hours, "q0.99", at)
    low = _trailing(energy, device, hours, "q0.01", at)
    actual = np.nan_to_num(ranked["energy_kwh"].to_numpy(dtype=float), nan=0.0)[at]
    expected = ranked["expected"].to_numpy(dtype=float)[at]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ae = _clip(np.log((actual + 1e-3) / (expected + 1e-3)), -6, 6)
        excess = _clip((actual - expected) / typical, -20, 20)
        over_high = _clip((actual - high) / typical, -20, 20)
        under_low = _clip((low - actual) / typical, -20, 20)
        level = _clip(actual / typical, 0, 30)
    kind = ranked["kind"].to_numpy()[at]
    feats: dict[str, np.ndarray] = {f"is_{t}": (kind == t).astype(float) for t in CALIBRATED_TYPES}
    hod = hours.hour.to_numpy()[at]
    # The run so far: how many hours, how steady the departure, how much of it at night.
    steps = pd.DataFrame({"run": run[at], "lae": log_ae, "sq": log_ae**2, "night": hod < NIGHT_END_H})
    by_run = steps.groupby("run")
    n = (by_run.cumcount() + 1).to_numpy(dtype=float)
    mean = by_run["lae"].cumsum().to_numpy() / n
    prev = np.concatenate([[0.0], ratio[:-1]])
    prev[np.concatenate([[True], device[1:] != device[:-1]])] = 0.0
    feats |= {
        "log_ratio": np.log1p(ratio[at]),
        "log_peak_so_far": np.log1p(in_run.groupby("run")["ratio"].cummax().to_numpy()),
        "log_hours": np.log1p(hours_so_far.to_numpy() + 1),
        "fleet_share": fleet_share[at],
        "noise": noise,
        "excess": excess,
        "log_ae": log_ae,
        "over_high": over_high,
        "under_low": under_low,
        "level": level,
        "hour_of_day": hod.astype(float),
        "day_of_week": hours.dayofweek.to_numpy()[at].astype(float),
        "run_hours": n,
        "run_mean_log_ae": mean,
        "run_spread_log_ae": np.sqrt(np.maximum(by_run["sq"].cumsum().to_numpy() / n - mean**2, 0.0)),
        "run_night_share": by_run["night"].cumsum().to_numpy() / n,
        "prev_log_ratio": np.log1p(prev[at]),
    }
    return pd.DataFrame(feats, index=at)[FEATURES], run


def _probability(features: pd.DataFrame, cal: Calibration) -> np.ndarray:
    """The additive model: intercept + linear terms + trees on the log-odds, through the logistic."""
    x = features.to_numpy(dtype=float)
    w = np.array([cal.coefficients.get(n, 0.0) for n in FEATURES])
    log_odds = cal.intercept + x @ w
    for tree in cal.trees:
        log_odds = log_odds + tree.predict(x)
    return 1.0 / (1.0 + np.exp(-log_odds))


# Per type, the feature that measures its departure's size (`departure_size`): a spike by the
# energy it adds in typical hours of the meter, a dip by how far below expected it falls (-log a/e).
SIZE_FEATURES = {"spike": ("excess", 1.0), "dip": ("log_ae", -1.0)}


def departure_size(kind: np.ndarray, features: pd.DataFrame, unit: np.ndarray) -> np.ndarray:
    """Per row, the size of its departure for the types in SIZE_FEATURES (+inf elsewhere: no gate).

    Only hours judged on energy are sized: a burst inside the hour found in its peak power (unit
    W) hardly moves the hour's kWh, which is why that detector exists."""
    size = np.full(len(kind), np.inf)
    at = features.index.to_numpy()
    for t, (name, sign) in SIZE_FEATURES.items():
        of_type = (kind[at] == t) & (unit[at] == "kWh")
        size[at[of_type]] = sign * features[name].to_numpy()[of_type]
    return size


def size_gate(kind: np.ndarray, size: np.ndarray, min_size: dict[str, float]) -> np.ndarray:
    """Rows whose departure is at least their type's minimum size."""
    floor = np.full(len(kind), -np.inf)
    for t, m in min_size.items():
        floor[kind == t] = m
    return size >= floor


def latched_probability(
    ranked: pd.DataFrame, cal: Calibration, fleet: tuple[np.ndarray, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(latched probability, is calibrated, may alert, departure size) per row: the running maximum
    of the probability within each run of candidate hours, so an incident once worth raising stays
    raised; a row may alert only once its run has reached `min_alert_ratio` (the candidates below
    it only add context) and when its own departure is at least its type's `min_size`."""
    features, run = candidate_features(ranked, cal.candidate_ratio, fleet)
    kind = ranked["kind"].to_numpy()
    size = departure_size(kind, features, ranked["unit"].to_numpy())
    calibrated = np.isin(kind, CALIBRATED_TYPES) & (run >= 0)
    p = np.zeros(len(ranked))
    p[features.index.to_numpy()] = _probability(features, cal)
    p = np.where(calibrated, p, 0.0)
    latched = pd.Series(p).groupby(run).cummax().to_numpy()
    over = np.nan_to_num(ranked["ratio"].to_numpy(dtype=float), nan=0.0) >= cal.min_alert_ratio
    reached = pd.Series(over).groupby(run).cummax().to_numpy().astype(bool)
    may_alert = calibrated & np.where(run >= 0, reached, over) & size_gate(kind, size, cal.min_size)
    return np.where(run >= 0, latched, p), calibrated, may_alert, size


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
    latched, calibrated, may_alert, _ = latched_probability(ranked, cal, fleet)
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
