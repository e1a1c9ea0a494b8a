"""The validation protocol that cannot flatter (issue #16): fixed windows on every year, a fresh model
per window trained only on data before it, development and held-out windows kept apart.

Windows (Cambridge University calendar; each 14 days, origins at 00:00 UTC):
- `lent`: 1–14 Feb, inside Lent full term every year (mid-Jan to mid-Mar);
- `exams`: 1–14 Jun, Easter term examinations (late May to mid-June);
- `summer`: 1–14 Aug, the long vacation;
- `michaelmas`: 17–30 Nov, Michaelmas full term (early Oct to early Dec);
- `christmas`: 18–31 Dec, the run-down into and the Christmas closure itself (24 Dec – 1 Jan).
With `origins=7` every other day of the 14 is an origin (still one per weekday); that halves the
cost of the MSTL baseline, which is what limits a full run.

Splits: `development` (2012–2016, 2019 Jan–Sep) is the only place to tune; `held-out` (2017) is
reported, never tuned on; `tuned-before` (2019 Nov–Dec) is held out now but was tuned on in the past.

A meter counts in a window only with ≥ 90 % of the 8 weeks before it observed (the history MSTL and
the MASE scale are computed on); a window with no such meter is reported as skipped. The model is
trained on all the data before the window's first origin, as the live service trains on all history
(or on the `train_days` before it; either way a slice of the panel that ends there, so nothing at or
after the window can reach it) and forecasts each origin from the four weeks
(672 h) before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from services.forecast.backtest import (
    MSTL_HISTORY_HOURS,
    Progress,
    baseline_arrays,
    build_panel,
    fit_forecaster,
    forecast_at,
    load_energy_csv,
    load_weather_csv,
    mstl_forecasts,
    score_units,
    slice_panel,
    unit_arrays,
)
from services.forecast.dataset import Panel
from services.forecast.features import HORIZON_HOURS
from services.forecast.metrics import ModelScore
from services.forecast.model import QuantileForecaster, TrainParams

__all__ = [
    "SPLITS",
    "WINDOW_KINDS",
    "ProtocolResult",
    "Window",
    "WindowResult",
    "load_public_panel",
    "protocol_windows",
    "run_protocol",
]

# kind -> (label, month, first day); 14 days from there
WINDOW_KINDS: dict[str, tuple[str, int, int]] = {
    "lent": ("Lent term 1–14 Feb", 2, 1),
    "exams": ("exams 1–14 Jun", 6, 1),
    "summer": ("summer 1–14 Aug", 8, 1),
    "michaelmas": ("Michaelmas term 17–30 Nov", 11, 17),
    "christmas": ("Christmas 18–31 Dec", 12, 18),
}
TERM_KINDS = ("lent", "michaelmas")
SPLITS = ("development", "held-out", "tuned-before")
YEARS = (2012, 2013, 2014, 2015, 2016, 2017, 2019)
WINDOW_DAYS = 14
MIN_HISTORY_SHARE = 0.9
Fitter = Callable[..., QuantileForecaster]


def split_of(year: int, month: int) -> str:
    if year == 2017:
        return "held-out"
    if year == 2019 and month >= 10:
        return "tuned-before"
    return "development"


@dataclass(frozen=True)
class Window:
    year: int
    kind: str
    origins: int = 14

    @property
    def label(self) -> str:
        return WINDOW_KINDS[self.kind][0]

    @property
    def start(self) -> date:
        _, month, day = WINDOW_KINDS[self.kind]
        return date(self.year, month, day)

    @property
    def split(self) -> str:
        return split_of(self.year, self.start.month)

    @property
    def origin_days(self) -> list[date]:
        step = WINDOW_DAYS // self.origins
        return [self.start + timedelta(days=i * step) for i in range(self.origins)]


def protocol_windows(
    years: Sequence[int] = YEARS,
    kinds: Sequence[str] = tuple(WINDOW_KINDS),
    split: str = "all",
    origins: int = 14,
) -> list[Window]:
    """The protocol's windows, optionally only one split ('development', 'held-out', 'tuned-before')."""
    if origins not in (7, 14):
        raise ValueError(f"origins must be 7 or 14 (every day or every other day of 14), got {origins}")
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split must be 'all' or one of {', '.join(SPLITS)}, got {split!r}")
    unknown = set(kinds) - set(WINDOW_KINDS)
    if unknown:
        raise ValueError(f"unknown window(s) {sorted(unknown)}; choose from {', '.join(WINDOW_KINDS)}")
    ordered = [k for k in WINDOW_KINDS if k in kinds]  # calendar order, whatever order was asked
    windows = [Window(y, k, origins) for y in sorted(years) for k in ordered]
    return [w for w in windows if split == "all" or w.split == split]


@dataclass
class WindowResult:
    window: Window
    meters: int
    train_from: pd.Timestamp | None = None
    trained_before: pd.Timestamp | None = None
    scores: list[ModelScore] = field(default_factory=list)
    skipped: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    units: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def score(self, model: str) -> ModelScore | None:
        return next((s for s in self.scores if s.model == model), None)


@dataclass
class ProtocolResult:
    windows: list[WindowResult]

    def scored(self) -> list[WindowResult]:
        return [w for w in self.windows if w.skipped is None]

    def pooled(self, keep: Callable[[WindowResult], bool] = lambda _w: True) -> list[ModelScore]:
        """Scores over all units of the kept windows (MASE/pinball: mean over units; CV(RMSE): median
        over building-windows; coverage: share of all hours)."""
        parts = [w.units for w in self.scored() if keep(w)]
        return score_units(parts) if parts else []

    def summary(self) -> dict[str, list[ModelScore]]:
        """Overall per split, per year (all windows and term-time only), over everything, and the
        Christmas windows with and without the closure calendar. The no-closure model runs on the
        Christmas windows only, so it appears only in that group (same units as the others there)."""
        out: dict[str, list[ModelScore]] = {}
        for split in SPLITS:
            out[f"split {split}"] = self.pooled(lambda w, s=split: w.window.split == s)
        for year in sorted({w.window.year for w in self.scored()}):
            out[f"{year} all windows"] = self.pooled(lambda w, y=year: w.window.year == y)
            out[f"{year} term time"] = self.pooled(
                lambda w, y=year: w.window.year == y and w.window.kind in TERM_KINDS
            )
        out["all windows"] = self.pooled()
        out = {k: [s for s in v if s.model != "gridsight_no_closure"] for k, v in out.items()}
        out["Christmas windows"] = self.pooled(lambda w: w.window.kind == "christmas")
        return {k: v for k, v in out.items() if v}


def load_public_panel(data: Path) -> Panel:
    """The public buildings 2012–2017 and 2019 on one hourly index (2018 is all missing)."""
    energy = pd.concat(
        [
            load_energy_csv(data / "meters_history_hourly.csv.gz"),
            load_energy_csv(data / "meters_2019_hourly.csv.gz"),
        ],
        ignore_index=True,
    )
    weather = pd.concat(
        [
            load_weather_csv(data / "weather_history_hourly.csv.gz"),
            load_weather_csv(data / "weather_2019_hourly.csv.gz"),
        ],
        ignore_index=True,
    )
    return build_panel(energy, weather)


def eligible_meters(panel: Panel, start: pd.Timestamp) -> np.ndarray:
    """Devices with at least 90 % of the 8 weeks before `start` observed."""
    pos = panel.position(start)
    if pos - MSTL_HISTORY_HOURS < 0 or pos >= panel.kwh.shape[1]:
        return np.array([], int)
    seen = np.isfinite(panel.kwh[:, pos - MSTL_HISTORY_HOURS : pos]).mean(axis=1)
    return np.flatnonzero(seen >= MIN_HISTORY_SHARE)


def run_window(
    panel: Panel,
    window: Window,
    *,
    mstl: bool = True,
    cache_dir: Path | None = None,
    params: TrainParams | None = None,
    train_days: int | None = None,
    closure_variant: bool = True,
    fitter: Fitter = fit_forecaster,
    progress: Progress | None = None,
) -> WindowResult:
    """One window: train on the data before it (all of it, or the last `train_days`), forecast its
    origins, score all models."""
    start = pd.Timestamp(window.start)
    devices = eligible_meters(panel, start)
    result = WindowResult(window=window, meters=len(devices))
    if not len(devices):
        result.skipped = "no meter has 90 % of the 8 weeks before it observed"
        return result
    since = panel.index[0] if train_days is None else start - pd.Timedelta(days=train_days)
    train = slice_panel(panel, since, start)
    result.train_from, result.trained_before = train.index[0], start
    positions = np.array([panel.position(pd.Timestamp(d)) for d in window.origin_days])
    positions = positions[positions < panel.kwh.shape[1]]  # the data may end inside the window
    base = baseline_arrays(panel, positions, devices)
    variants = [("gridsight", True)]
    if closure_variant and window.kind == "christmas":
        variants.append(("gridsight_no_closure", False))
    parts = []
    for name, closure in variants:
        t0 = time.perf_counter()
        try:
            model = fitter(train, start, params=params, closure_calendar=closure)
        except ValueError as exc:
            result.skipped = f"cannot train: {exc}"
            return result
        quant = forecast_at(model, panel, positions, devices, closure_calendar=closure)
        result.seconds[name] = time.perf_counter() - t0
        parts.append(unit_arrays(base, quant, group=f"{window.year}-{window.kind}-", name=name))
    units = parts[0]
    for extra in parts[1:]:
        units.update({k: v for k, v in extra.items() if k.startswith("gridsight")})
    if mstl:
        t0 = time.perf_counter()
        units["mstl"] = mstl_forecasts(panel, positions, cache_dir, devices, progress=progress).reshape(
            -1, HORIZON_HOURS
        )
        result.seconds["mstl"] = time.perf_counter() - t0
    result.units = units
    result.scores = score_units([units])
    return result


def run_protocol(
    panel: Panel,
    *,
    split: str = "all",
    years: Sequence[int] = YEARS,
    kinds: Sequence[str] = tuple(WINDOW_KINDS),
    origins: int = 14,
    mstl: bool = True,
    cache_dir: Path | None = None,
    params: TrainParams | None = None,
    train_days: int | None = None,
    closure_variant: bool = True,
    fitter: Fitter = fit_forecaster,
    progress: Progress | None = None,
) -> ProtocolResult:
    """Every window of `split`; e.g. for a candidate model, quickly, on development only:
    `run_protocol(load_public_panel(data), split="development", mstl=False)`.

    `fitter(train_panel, first_origin, params=, closure_calendar=)` builds the model (default: the
    production trainer); it only ever sees the data before the window."""
    windows = protocol_windows(years, kinds, split, origins)
    report = progress or (lambda _step, _done, _total: None)
    results = []
    for i, window in enumerate(windows):
        report("windows", i, len(windows))
        results.append(
            run_window(
                panel,
                window,
                mstl=mstl,
                cache_dir=cache_dir,
                params=params,
                train_days=train_days,
                closure_variant=closure_variant,
                fitter=fitter,
                progress=progress,
            )
        )
    report("windows", len(windows), len(windows))
    return ProtocolResult(results)
