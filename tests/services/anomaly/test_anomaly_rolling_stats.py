"""The detector's lagged medians and the calibration's trailing 28-day statistics, against a plain
loop over the definition (the fast paths reshape and vectorise; these say what they must equal)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.anomaly.calibrate import _trailing
from services.anomaly.detectors.expected import _median_of_lags

WINDOW_H = 28 * 24


def _lagged_median_by_loop(a: np.ndarray, step: int, lags: int) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    for t in range(a.shape[0]):
        for c in range(a.shape[1]):
            past = [a[t - step * k, c] for k in range(1, lags + 1) if t - step * k >= 0]
            past = [v for v in past if not np.isnan(v)]
            if past:
                out[t, c] = float(np.median(past))
    return out


@pytest.mark.parametrize(
    ("rows", "step", "lags"), [(100, 24, 4), (7 * 24 + 5, 24, 14), (30, 7, 3), (5, 24, 4)]
)
def test_median_of_lags_is_the_median_of_the_same_row_in_earlier_blocks(
    rows: int, step: int, lags: int
) -> None:
    rng = np.random.default_rng(rows + step)
    a = rng.standard_normal((rows, 3))
    a[rng.random(a.shape) < 0.3] = np.nan
    a[:, 2] = np.nan  # a device that never reported: no verdict anywhere
    np.testing.assert_array_equal(_median_of_lags(a, step, lags), _lagged_median_by_loop(a, step, lags))


def test_median_of_lags_by_hand() -> None:
    # Rows 0..5, step 2, two lags: row 4 sees rows 2 and 0, row 5 rows 3 and 1 (3 is NaN).
    a = np.array([[1.0], [10.0], [3.0], [np.nan], [0.0], [0.0]])
    got = _median_of_lags(a, 2, 2)[:, 0]
    np.testing.assert_array_equal(got, [np.nan, np.nan, 1.0, 10.0, 2.0, 10.0])


def _trailing_by_loop(
    values: np.ndarray, device: np.ndarray, hours: pd.DatetimeIndex, stat: str
) -> np.ndarray:
    """Row t: the statistic of the same device's values in the 28 days before the previous row's
    hour, inclusive of that row (pandas' time window (h - 28 d, h] at the row before t)."""
    out = np.full(len(values), np.nan)
    for t in range(len(values)):
        if t == 0 or device[t - 1] != device[t]:
            continue
        prev = hours[t - 1]
        mine = (device == device[t]) & (hours > prev - pd.Timedelta(days=28)) & (hours <= prev)
        past = values[mine]
        past = past[~np.isnan(past)]
        if len(past) < (1 if stat == "mean" else 24):
            continue
        if stat == "mean":
            out[t] = past.mean()
        elif stat == "median":
            out[t] = np.median(past)
        else:
            out[t] = np.quantile(past, float(stat[1:]))
    return out


def _frame(gaps: bool) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    rng = np.random.default_rng(3)
    hours = pd.date_range("2024-01-01", periods=WINDOW_H + 60, freq="h", tz="UTC")
    parts = []
    for name in ("a", "b", "c"):
        keep = np.ones(len(hours), dtype=bool)
        if gaps and name == "b":
            keep[100:150] = False  # an uploader that missed two days: no rows at all
        energy = rng.gamma(2.0, 1.0, len(hours))
        energy[rng.random(len(hours)) < 0.1] = np.nan
        parts.append(pd.DataFrame({"device_id": name, "hour": hours[keep], "energy": energy[keep]}))
    frame = pd.concat(parts, ignore_index=True)
    return frame["energy"].to_numpy(), frame["device_id"].to_numpy(), pd.DatetimeIndex(frame["hour"])


@pytest.mark.parametrize("gaps", [False, True], ids=["same hours for every device", "a device with gaps"])
@pytest.mark.parametrize("stat", ["mean", "median", "q0.99", "q0.01"])
def test_trailing_statistics_are_the_past_28_days_of_the_same_device(gaps: bool, stat: str) -> None:
    values, device, hours = _frame(gaps)
    if stat == "mean":
        values = np.nan_to_num(values) > 2.0  # the candidate share: a 0/1 series
        values = values.astype(float)
    got = _trailing(values, device, hours, stat)
    want = _trailing_by_loop(values, device, hours, stat)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.isnan(got[0])  # nothing before a device's first hour
    assert np.isfinite(got[-1])
    # Only some rows (the calibration's candidates): the hand loop's values, and bit for bit what
    # pandas' rolling windows give (so the calibrated features, and the incidents, do not move).
    at = np.flatnonzero(np.random.default_rng(5).random(len(values)) < 0.3)
    some = _trailing(values, device, hours, stat, at)
    np.testing.assert_allclose(some, want[at], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(some, got[at])
