"""The forecaster: three quantile LightGBM models (p10, p50, p90) over the scaled features.

Gradient-boosted trees on lag/calendar features are the proven choice for building energy; one
global model over all devices learns daily and weekly shapes from many buildings at once. The
quantile models are fitted independently, so after prediction they are sorted per row to keep
p10 <= p50 <= p90, and the interval is widened or narrowed by a factor calibrated on held-out
origins (split-conformal style) so p10–p90 covers about 80% of actuals.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from services.forecast.calendars import PUBLIC_DATA_CALENDAR, SiteCalendar
from services.forecast.features import FEATURE_NAMES, window_features

__all__ = ["QUANTILES", "QuantileForecaster", "TrainParams"]

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
_NAMES = ("p10", "p50", "p90")


@dataclass(frozen=True)
class TrainParams:
    """LightGBM settings picked by measurement on the real meters (see bench/bench_forecast.py)."""

    num_boost_round: int = 250
    learning_rate: float = 0.05
    # p10/p90 get half the rounds at twice the rate: their width is recalibrated anyway, and the
    # two of them then take as long as p50 alone, so two workers finish together.
    interval_rounds: int = 125
    interval_learning_rate: float = 0.1
    num_leaves: int = 63
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.5
    num_threads: int = 1  # per booster
    workers: int = 2  # boosters trained at once
    max_bin: int = 63
    recency_half_life_days: float | None = None  # measured: 60 days made term-time MASE worse
    # Longer history helps (other years' terms, vacations and closures), but fit time grows with
    # rows: rows older than `recent_days` are thinned at random (seeded) so at most `max_rows` are
    # fitted; the last `recent_days` are always kept whole.
    recent_days: float = 365.0
    max_rows: int | None = 250_000
    seed: int = 7

    def rounds(self, alpha: float) -> int:
        return self.num_boost_round if alpha == 0.5 else self.interval_rounds

    def lgb_params(self, alpha: float) -> dict[str, Any]:
        return {
            "objective": "quantile",
            "alpha": alpha,
            "learning_rate": self.learning_rate if alpha == 0.5 else self.interval_learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "num_threads": self.num_threads,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }


def _thinned(age_days: np.ndarray, known: np.ndarray, params: TrainParams) -> np.ndarray:
    """Row mask keeping about `max_rows` known rows: every row of the last `recent_days` and old
    rows at random; if the recent rows alone are too many (a large fleet), those at random too."""
    total = int(known.sum())
    if params.max_rows is None or total <= params.max_rows:
        return np.ones(len(age_days), bool)
    draw = np.random.default_rng(params.seed).random(len(age_days))
    old = known & (age_days > params.recent_days)
    recent = int((known & ~old).sum())
    if recent >= params.max_rows:
        return draw < params.max_rows / total
    return ~old | (draw < (params.max_rows - recent) / int(old.sum()))


@dataclass
class QuantileForecaster:
    boosters: dict[str, lgb.Booster]
    interval_scale: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        features: pd.DataFrame,
        target_scaled: np.ndarray,
        params: TrainParams | None = None,
        age_days: np.ndarray | None = None,
    ) -> QuantileForecaster:
        """Fit on rows whose scaled target is known; rows with a NaN target are dropped.

        `age_days` (per row, how long before the newest origin) weighs recent rows more."""
        params = params or TrainParams()
        keep = np.isfinite(target_scaled)
        if keep.sum() < 100:
            raise ValueError(f"too little training data: {int(keep.sum())} rows with a known target")
        if age_days is not None:
            keep &= _thinned(np.asarray(age_days, float), keep, params)
        x, y = features.loc[keep, list(FEATURE_NAMES)], target_scaled[keep]
        weight = None
        if age_days is not None and params.recency_half_life_days:
            weight = np.power(0.5, np.asarray(age_days, float)[keep] / params.recency_half_life_days)

        def train_one(alpha: float) -> lgb.Booster:
            data = lgb.Dataset(x, label=y, weight=weight, params={"max_bin": params.max_bin, "verbosity": -1})
            return lgb.train(params.lgb_params(alpha), data, num_boost_round=params.rounds(alpha))

        # One single-threaded booster per quantile, side by side: LightGBM releases the GIL, and
        # OpenMP threads that spin-wait collapse on a shared, busy machine.
        with ThreadPoolExecutor(max_workers=params.workers) as pool:
            boosters = dict(zip(_NAMES, pool.map(train_one, QUANTILES), strict=True))
        return cls(boosters=boosters)

    def predict_scaled(self, features: pd.DataFrame) -> np.ndarray:
        """`(rows, 3)` scaled quantiles, monotone, interval scaled about the median."""
        x = features[list(FEATURE_NAMES)]
        raw = np.column_stack([self.boosters[name].predict(x) for name in _NAMES])
        raw = np.sort(raw, axis=1)
        mid = raw[:, 1:2]
        out = mid + (raw - mid) * self.interval_scale
        return np.maximum(out, 0.0)

    def predict_windows(
        self,
        kwh: np.ndarray,
        temp_c: np.ndarray | None,
        origins: pd.DatetimeIndex,
        calendar: SiteCalendar = PUBLIC_DATA_CALENDAR,
        *,
        closure_calendar: bool = True,
    ) -> np.ndarray:
        """`(n, 24, 3)` kWh quantiles for each history window (all of one site's `calendar`); NaN
        where a window has no data. `closure_calendar` must match the training features."""
        feats, scale = window_features(kwh, temp_c, origins, calendar, closure_calendar=closure_calendar)
        scaled = self.predict_scaled(feats).reshape(len(scale), -1, 3)
        return scaled * scale[:, None, None]

    def calibrate(self, features: pd.DataFrame, target_scaled: np.ndarray, coverage: float = 0.8) -> None:
        """Pick the interval factor so p10–p90 covers `coverage` of held-out actuals."""
        keep = np.isfinite(target_scaled)
        self.interval_scale = 1.0
        q = self.predict_scaled(features.loc[keep])
        y = target_scaled[keep]
        mid = q[:, 1]
        lo_w, hi_w = mid - q[:, 0], q[:, 2] - mid
        factors = np.linspace(0.5, 3.0, 126)
        covered = [np.mean((y >= mid - f * lo_w) & (y <= mid + f * hi_w)) for f in factors]
        self.interval_scale = float(factors[int(np.argmin(np.abs(np.array(covered) - coverage)))])

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(folder / f"{name}.txt"))
        (folder / "forecaster.json").write_text(
            json.dumps({"interval_scale": self.interval_scale, "features": list(FEATURE_NAMES)})
        )

    @classmethod
    def load(cls, folder: Path) -> QuantileForecaster:
        spec = json.loads((folder / "forecaster.json").read_text())
        if spec["features"] != list(FEATURE_NAMES):
            raise ValueError(f"model in {folder} was trained on other features; retrain it")
        boosters = {name: lgb.Booster(model_file=str(folder / f"{name}.txt")) for name in _NAMES}
        return cls(boosters=boosters, interval_scale=float(spec["interval_scale"]))
