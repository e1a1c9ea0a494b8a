"""Runs of identical values: the raw material of the flatline detector, and of the mask that keeps
a stuck stretch out of the history later hours are judged against."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["WEEK_ROWS", "flatline_ratio", "run_lengths", "stuck_history"]

WEEK_ROWS = 168


def run_lengths(x: np.ndarray, rel_tol: float = 1e-4, abs_tol: float = 1e-5) -> np.ndarray:
    """Per cell, how many consecutive hours up to and including this one carry the same value.

    "Same" allows the rounding noise of an hour summed from a register kept to 1 mWh (a frozen
    power reading still yields hourly sums that differ in the sixth decimal), far below any real
    meter's resolution step."""
    same = np.zeros_like(x, dtype=bool)
    with np.errstate(invalid="ignore"):
        same[1:] = np.abs(x[1:] - x[:-1]) <= np.maximum(abs_tol, rel_tol * np.abs(x[1:]))
    runs = np.zeros(x.shape, dtype=np.int64)
    count = np.ones(x.shape[1], dtype=np.int64)
    runs[0] = 1
    for t in range(1, len(x)):
        count = np.where(same[t], count + 1, 1)
        runs[t] = count
    return runs


def flatline_ratio(
    x: np.ndarray, *, window_h: int, min_run: int, surprise: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, run length): a run is scored by its surprise (run - 1) * -log(p), p the meter's
    trailing share of hours that repeated the previous value (coarse registers repeat often)."""
    runs = run_lengths(x)
    repeat = (runs > 1).astype(float)
    repeat[~np.isfinite(x)] = np.nan
    p = pd.DataFrame(repeat).rolling(window_h, min_periods=48).mean().shift(1).to_numpy()
    p = np.clip(np.nan_to_num(p, nan=0.05), 0.01, 0.9)
    with np.errstate(invalid="ignore"):
        ratio = np.where((runs >= min_run) & (x > 0), (runs - 1) * -np.log(p) / surprise, 0.0)
    return ratio, runs


def stuck_history(ratio: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Cells of a run that was flagged (ratio >= 1) less than a week after the cell.

    A week-old hour is only ever used as history a week or more later, so by then that flag is
    known: masking the run from its first hour stays causal, and the stuck value never becomes
    next week's "normal"."""
    rows, cols = ratio.shape
    run_id = np.cumsum(runs == 1, axis=0) + np.arange(cols) * (rows + 1)  # unique per run, all columns
    row = np.broadcast_to(np.arange(rows)[:, None], ratio.shape)
    flagged = ratio >= 1
    first_flag = np.full(cols * (rows + 1) + rows + 1, np.iinfo(np.int64).max // 2, dtype=np.int64)
    np.minimum.at(first_flag, run_id[flagged], row[flagged])
    return first_flag[run_id] - row < WEEK_ROWS
