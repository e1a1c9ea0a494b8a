"""Backtest on any long hourly CSV, the way users compare forecasters.

For each day from `start` to `end` the forecaster is asked, at 00:00 UTC, for the next 24 hours,
from data before that origin only: the model is trained on origins whose 24 targets all lie before
`start`, and each origin's features come from the hours before it. Next to it the same run scores
seasonal-naive (24 h and 168 h) and statsforecast MSTL(24, 168) refitted per origin on the eight
weeks before it — the slow baseline, so its forecasts are cached on disk by input hash and fitted
on both cores.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from services.forecast.dataset import Panel, examples, origin_positions
from services.forecast.features import HORIZON_HOURS, windows_at
from services.forecast.model import QuantileForecaster, TrainParams

__all__ = [
    "BacktestResult",
    "ModelScore",
    "build_panel",
    "fit_forecaster",
    "load_energy_csv",
    "load_weather_csv",
    "run_backtest",
]

MSTL_HISTORY_HOURS = 8 * 168
MASE_HISTORY_HOURS = 8 * 168
Progress = Callable[[str, int, int], None]


class ModelScore(BaseModel):
    model: str
    mase: float
    smape: float
    coverage: float | None = None  # p10–p90, for models with an interval
    forecasts: int


@dataclass
class BacktestResult:
    forecasts: pd.DataFrame  # meter_id, origin_utc, timestamp_utc, p10, p50, p90
    scores: list[ModelScore]
    interval_scale: float = 1.0
    seconds: dict[str, float] = field(default_factory=dict)

    def score(self, model: str) -> ModelScore:
        return next(s for s in self.scores if s.model == model)


def load_energy_csv(path: Path) -> pd.DataFrame:
    """`meter_id,timestamp_utc,kwh`; empty kWh cells are missing hours. Raises ValueError with the
    problem named (missing columns, unparseable timestamps, negative energy)."""
    frame = pd.read_csv(path, dtype={"meter_id": str})
    missing = {"meter_id", "timestamp_utc", "kwh"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected meter_id,timestamp_utc,kwh")
    try:
        frame["timestamp_utc"] = pd.to_datetime(frame["timestamp_utc"], utc=True).dt.tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: timestamp_utc is not a timestamp: {exc}") from exc
    frame["kwh"] = pd.to_numeric(frame["kwh"], errors="coerce")
    if (frame["kwh"] < 0).any():
        raise ValueError(f"{path}: negative kwh values; expected hourly energy in kWh")
    return frame.dropna(subset=["kwh"])[["meter_id", "timestamp_utc", "kwh"]]


def load_weather_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = {"timestamp_utc", "air_temperature_c"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {sorted(missing)}; expected timestamp_utc,air_temperature_c"
        )
    frame["timestamp_utc"] = pd.to_datetime(frame["timestamp_utc"], utc=True).dt.tz_localize(None)
    frame["air_temperature_c"] = pd.to_numeric(frame["air_temperature_c"], errors="coerce")
    return frame[["timestamp_utc", "air_temperature_c"]]


def build_panel(energy: pd.DataFrame, weather: pd.DataFrame | None = None) -> Panel:
    ts = energy["timestamp_utc"].dt.floor("h")
    ids = sorted(energy["meter_id"].astype(str).unique())
    if not ids:
        raise ValueError("the energy data has no rows")
    index = pd.date_range(ts.min(), ts.max(), freq="h")
    values = np.full((len(ids), len(index)), np.nan)
    dev = pd.Index(ids).get_indexer(energy["meter_id"].astype(str))
    pos = ((ts - index[0]) // pd.Timedelta(hours=1)).to_numpy()
    values[dev, pos] = energy["kwh"].to_numpy(float)
    temp = None
    if weather is not None:
        temp = (
            weather.assign(h=weather["timestamp_utc"].dt.floor("h"))
            .groupby("h")["air_temperature_c"]
            .mean()
            .reindex(index)
            .to_numpy(float)
        )
    return Panel(index=index, kwh=values, device_ids=ids, temp_c=temp)


def fit_forecaster(
    panel: Panel, first_origin: pd.Timestamp, *, params: TrainParams | None = None, calibration_days: int = 28
) -> QuantileForecaster:
    """Train on daily origins whose targets lie before `first_origin`; calibrate the interval on the
    last `calibration_days` of them (held out from the fit)."""
    last_train = first_origin - pd.Timedelta(hours=HORIZON_HOURS)
    first = panel.index[0].ceil("D") + pd.Timedelta(days=2)
    split = last_train - pd.Timedelta(days=calibration_days)
    if split <= first:
        raise ValueError(
            f"not enough history before {first_origin} to train (need > {calibration_days + 3} days)"
        )
    fit_pos = origin_positions(panel, first, split, 24)
    cal_pos = origin_positions(panel, split + pd.Timedelta(days=1), last_train, 24)
    x, y, _, origins = examples(panel, fit_pos)
    model = QuantileForecaster.fit(x, y, params, age_days=(fit_pos.max() - origins) / 24)
    xc, yc, _, _ = examples(panel, cal_pos)
    model.calibrate(xc, yc)
    return model


def _mstl_forecasts(panel: Panel, positions: np.ndarray, cache_dir: Path | None) -> np.ndarray:
    """`(devices, origins, 24)` MSTL(24, 168) means, refitted per origin on the 8 weeks before it."""
    digest = hashlib.sha256(panel.kwh.tobytes() + positions.tobytes() + str(panel.index[0]).encode())
    cache = cache_dir / f"mstl-{digest.hexdigest()[:24]}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        return np.load(cache)
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL

    rows = []
    n_dev = len(panel.device_ids)
    for o, pos in enumerate(positions):
        for d in range(n_dev):
            hist = pd.Series(panel.kwh[d, max(0, pos - MSTL_HISTORY_HOURS) : pos])
            hist = hist.interpolate(limit_direction="both")
            if hist.isna().all() or len(hist) < 2 * 168:
                continue
            rows.append(
                pd.DataFrame({"unique_id": f"{d}|{o}", "ds": np.arange(len(hist)), "y": hist.to_numpy()})
            )
    out = np.full((n_dev, len(positions), HORIZON_HOURS), np.nan)
    if rows:
        sf = StatsForecast(models=[MSTL(season_length=[24, 168])], freq=1, n_jobs=2)
        pred = sf.forecast(df=pd.concat(rows, ignore_index=True), h=HORIZON_HOURS)
        pred = pred.reset_index() if "unique_id" not in pred.columns else pred
        for uid, group in pred.groupby("unique_id", sort=False):
            d, o = (int(p) for p in str(uid).split("|"))
            out[d, o] = group["MSTL"].to_numpy()[:HORIZON_HOURS]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def _score(name: str, actual: np.ndarray, point: np.ndarray, mase_scale: np.ndarray, band=None) -> ModelScore:
    """MASE per meter-origin (MAE / in-sample 24 h seasonal-naive MAE), averaged; sMAPE in %."""
    ok = np.isfinite(actual) & np.isfinite(point)
    err = np.where(ok, np.abs(actual - point), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.nanmean(err, axis=-1)
        mase = mae / mase_scale
        denom = np.abs(actual) + np.abs(point)
        smape = np.where(ok & (denom > 0), 200 * err / np.where(denom > 0, denom, 1), np.nan)
    coverage = None
    if band is not None:
        lo, hi = band
        inside = (actual >= lo) & (actual <= hi)
        coverage = float(np.mean(inside[ok]))
    return ModelScore(
        model=name,
        mase=float(np.nanmean(mase[np.isfinite(mase)])),
        smape=float(np.nanmean(smape)),
        coverage=coverage,
        forecasts=int(ok.sum()),
    )


def run_backtest(
    panel: Panel,
    start: date,
    end: date,
    *,
    mstl: bool = True,
    cache_dir: Path | None = None,
    params: TrainParams | None = None,
    progress: Progress | None = None,
    calibration_days: int = 28,
) -> BacktestResult:
    """Forecast every day `start..end` at 00:00 UTC from data before it; score against baselines."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    if first <= panel.index[0] or first > panel.index[-1]:
        raise ValueError(f"--start {start} must lie inside the data ({panel.index[0]} .. {panel.index[-1]})")
    report = progress or (lambda _step, _done, _total: None)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    report("train", 0, 1)
    model = fit_forecaster(panel, first, params=params, calibration_days=calibration_days)
    seconds["train"] = time.perf_counter() - t0
    report("train", 1, 1)

    t0 = time.perf_counter()
    positions = origin_positions(panel, first, last, 24)
    n_dev, n_org = len(panel.device_ids), len(positions)
    quant = np.full((n_dev, n_org, HORIZON_HOURS, 3), np.nan)
    for d in range(n_dev):
        temp = panel.temp_rows(d)
        kwh_w = windows_at(panel.kwh[d], positions)
        temp_w = windows_at(temp, positions) if temp is not None else None
        origin_times = panel.index[0] + pd.to_timedelta(positions, unit="h")
        quant[d] = model.predict_windows(kwh_w, temp_w, origin_times)
        report("forecast", d + 1, n_dev)
    seconds["forecast"] = time.perf_counter() - t0

    total = panel.kwh.shape[1]
    idx = positions[:, None] + np.arange(HORIZON_HOURS)[None, :]
    inside = idx < total
    safe = np.minimum(idx, total - 1)
    actual = np.where(inside[None], panel.kwh[:, safe], np.nan)
    snaive24 = panel.kwh[:, idx - 24]
    snaive168 = panel.kwh[:, idx - 168]
    mase_scale = np.full((n_dev, n_org), np.nan)
    for o, pos in enumerate(positions):
        hist = panel.kwh[:, max(0, pos - MASE_HISTORY_HOURS) : pos]
        mase_scale[:, o] = np.nanmean(np.abs(hist[:, 24:] - hist[:, :-24]), axis=1)
    mase_scale = np.where(mase_scale > 0, mase_scale, np.nan)

    scores = [
        _score("gridsight", actual, quant[..., 1], mase_scale, band=(quant[..., 0], quant[..., 2])),
        _score("seasonal_naive_24h", actual, snaive24, mase_scale),
        _score("seasonal_naive_168h", actual, snaive168, mase_scale),
    ]
    if mstl:
        t0 = time.perf_counter()
        report("mstl", 0, 1)
        scores.append(_score("mstl", actual, _mstl_forecasts(panel, positions, cache_dir), mase_scale))
        seconds["mstl"] = time.perf_counter() - t0
        report("mstl", 1, 1)

    times = panel.index[0] + pd.to_timedelta(idx.reshape(-1), unit="h")
    origins = panel.index[0] + pd.to_timedelta(np.repeat(positions, HORIZON_HOURS), unit="h")
    forecasts = pd.DataFrame(
        {
            "meter_id": np.repeat(panel.device_ids, n_org * HORIZON_HOURS),
            "origin_utc": np.tile(origins, n_dev),
            "timestamp_utc": np.tile(times, n_dev),
            "p10": quant[..., 0].reshape(-1),
            "p50": quant[..., 1].reshape(-1),
            "p90": quant[..., 2].reshape(-1),
        }
    ).dropna(subset=["p50"])
    return BacktestResult(
        forecasts=forecasts, scores=scores, interval_scale=model.interval_scale, seconds=seconds
    )
