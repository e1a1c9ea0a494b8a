"""Forecast accuracy measures, on `(units, 24)` arrays (a unit is one meter's 24 h from one origin).

Kept apart from the backtest so each definition is written once and tested on tiny arrays:
- MASE: a unit's MAE over the in-sample 24 h seasonal-naive MAE of the 8 weeks before its origin
  (`scale`), averaged over units — scale-free, so buildings of any size weigh the same.
- CV(RMSE) % (ASHRAE Guideline 14, BuildingsBench): per building, RMSE over all its hours in the
  group / mean actual × 100; reported as the median over buildings.
- Pinball loss for p10, p50, p90: mean over a unit's hours of max(τ·e, (τ−1)·e), e = actual − q,
  divided by the unit's MASE scale (so comparable across buildings; p50 pinball = MASE / 2), then
  averaged over units.
- p10–p90 coverage: share of known actual hours with p10 ≤ actual ≤ p90.
NaN marks an unknown actual or forecast; such hours are left out of every measure.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

__all__ = ["QUANTILE_LEVELS", "ModelScore", "coverage", "cv_rmse_by_group", "mase", "pinball", "score"]

QUANTILE_LEVELS = (0.1, 0.5, 0.9)


class ModelScore(BaseModel):
    model: str
    mase: float
    smape: float
    cv_rmse: float | None = None  # median over buildings, %
    pinball: tuple[float, float, float] | None = None  # p10, p50, p90, in MASE-scale units
    coverage: float | None = None  # p10–p90, for models with a real interval
    forecasts: int


def _unit_mean(values: np.ndarray) -> np.ndarray:
    count = np.sum(np.isfinite(values), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(values, axis=-1) / np.maximum(count, 1), np.nan)


def _mean_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def mase(actual: np.ndarray, point: np.ndarray, scale: np.ndarray) -> float:
    """Mean over units of (MAE / scale); units without a positive scale are left out."""
    err = np.abs(actual - point)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_unit = _unit_mean(err) / np.where(scale > 0, scale, np.nan)
    return _mean_finite(per_unit)


def pinball(actual: np.ndarray, quantile: np.ndarray, tau: float, scale: np.ndarray) -> float:
    """Mean over units of (mean pinball loss at level `tau`) / scale."""
    e = actual - quantile
    loss = np.maximum(tau * e, (tau - 1) * e)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_unit = _unit_mean(loss) / np.where(scale > 0, scale, np.nan)
    return _mean_finite(per_unit)


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    ok = np.isfinite(actual) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return float("nan")
    return float(np.mean((actual[ok] >= lo[ok]) & (actual[ok] <= hi[ok])))


def cv_rmse_by_group(actual: np.ndarray, point: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """CV(RMSE) % per group (building): RMSE over all its known hours / their mean actual × 100.

    Returns one value per distinct group, in sorted group order; NaN where the mean actual is not
    positive or no hour is known."""
    groups = np.asarray(groups)
    ok = np.isfinite(actual) & np.isfinite(point)
    out = []
    for g in np.unique(groups):
        rows = groups == g
        a, p = actual[rows][ok[rows]], point[rows][ok[rows]]
        if a.size == 0 or a.mean() <= 0:
            out.append(np.nan)
            continue
        out.append(float(np.sqrt(np.mean((a - p) ** 2)) / a.mean() * 100))
    return np.array(out)


def _smape(actual: np.ndarray, point: np.ndarray) -> float:
    ok = np.isfinite(actual) & np.isfinite(point)
    denom = np.abs(actual[ok]) + np.abs(point[ok])
    keep = denom > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(200 * np.abs(actual[ok] - point[ok])[keep] / denom[keep]))


def score(
    name: str,
    actual: np.ndarray,
    point: np.ndarray,
    scale: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    quantiles: np.ndarray | None = None,
    interval: bool = True,
) -> ModelScore:
    """All measures for one model. `quantiles` is `(units, 24, 3)` p10/p50/p90 (the pinball is
    computed on them); `interval=False` says they are not a real interval (coverage left out)."""
    ok = np.isfinite(actual) & np.isfinite(point)
    cv = None
    if groups is not None:
        per_group = cv_rmse_by_group(actual, point, groups)
        cv = float(np.median(per_group[np.isfinite(per_group)])) if np.isfinite(per_group).any() else None
    pin = cov = None
    if quantiles is not None:
        pin = tuple(pinball(actual, quantiles[..., i], tau, scale) for i, tau in enumerate(QUANTILE_LEVELS))
        if interval:
            cov = coverage(actual, quantiles[..., 0], quantiles[..., 2])
    return ModelScore(
        model=name,
        mase=mase(actual, point, scale),
        smape=_smape(actual, point),
        cv_rmse=cv,
        pinball=pin,
        coverage=cov,
        forecasts=int(ok.sum()),
    )
