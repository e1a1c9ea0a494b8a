"""The accuracy measures against hand arithmetic on tiny arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.forecast.backtest import baseline_arrays, score_units, unit_arrays
from services.forecast.dataset import Panel
from services.forecast.metrics import coverage, cv_rmse_by_group, mase, pinball, score

NAN = np.nan


def test_mase_is_the_mean_over_units_of_mae_over_scale_and_skips_a_zero_scale() -> None:
    actual = np.array([[1.0, 3.0], [4.0, 4.0], [9.0, 9.0]])
    point = np.array([[2.0, 2.0], [4.0, 6.0], [0.0, 0.0]])
    # unit 1: MAE 1 / 2 = 0.5; unit 2: MAE 1 / 0.5 = 2; unit 3 has no usable scale
    assert mase(actual, point, np.array([2.0, 0.5, 0.0])) == pytest.approx(1.25)


def test_cv_rmse_is_per_building_rmse_over_mean_actual_and_the_median_is_over_buildings() -> None:
    actual = np.array([[2.0, 4.0], [10.0, 10.0], [10.0, NAN]])
    point = np.array([[1.0, 5.0], [10.0, 14.0], [4.0, 3.0]])
    groups = np.array(["a", "b", "b"])
    per = cv_rmse_by_group(actual, point, groups)
    # a: errors 1, 1 -> RMSE 1, mean actual 3 -> 33.33 %
    # b: errors 0, 4, 6 (the NaN hour left out) -> RMSE sqrt(52/3), mean actual 10
    assert per == pytest.approx([100 / 3, np.sqrt(52 / 3) / 10 * 100])
    s = score("m", actual, point, np.ones(3), groups=groups)
    assert s.cv_rmse == pytest.approx((100 / 3 + np.sqrt(52 / 3) * 10) / 2)


def test_pinball_weighs_under_and_over_forecasts_by_tau_and_is_divided_by_the_scale() -> None:
    actual = np.array([[10.0, 10.0]])
    q = np.array([[8.0, 13.0]])
    # tau 0.1: under by 2 -> 0.1 * 2 = 0.2; over by 3 -> 0.9 * 3 = 2.7; mean 1.45; / scale 0.5
    assert pinball(actual, q, 0.1, np.array([0.5])) == pytest.approx(2.9)
    # tau 0.9: 0.9 * 2 = 1.8 and 0.1 * 3 = 0.3 -> mean 1.05
    assert pinball(actual, q, 0.9, np.array([1.0])) == pytest.approx(1.05)
    # tau 0.5 is half the absolute error, so p50 pinball = MASE / 2
    assert pinball(actual, q, 0.5, np.array([1.0])) == pytest.approx(mase(actual, q, np.array([1.0])) / 2)


def test_coverage_counts_the_bounds_as_inside_and_ignores_unknown_actuals() -> None:
    actual = np.array([1.0, 5.0, 9.0, NAN])
    lo = np.array([0.0, 6.0, 9.0, 0.0])
    hi = np.array([2.0, 7.0, 10.0, 1.0])
    assert coverage(actual, lo, hi) == pytest.approx(2 / 3)


def test_a_point_only_model_uses_its_point_as_every_quantile_and_reports_no_coverage() -> None:
    actual = np.array([[10.0, 10.0]])
    point = np.array([[8.0, 13.0]])
    units = {"actual": actual, "scale": np.array([1.0]), "groups": np.array(["a"]), "mstl": point}
    (s,) = score_units([units])
    assert s.model == "mstl"
    assert s.coverage is None
    assert s.pinball == pytest.approx((1.45, 1.25, 1.05))
    assert s.mase == pytest.approx(2.5)


def test_seasonal_naive_on_a_straight_line_has_mase_one_and_a_zero_width_interval_that_covers() -> None:
    """kwh(t) = t: every 24 h difference is 24, so the MASE scale is 24, the 24 h naive misses by
    exactly 24 and its in-sample errors (all 24) shift p10 = p90 onto the actual."""
    hours = 60 * 24
    panel = Panel(
        index=pd.date_range("2019-01-01", periods=hours, freq="h"),
        kwh=np.arange(hours, dtype=float)[None, :],
        device_ids=["m"],
    )
    positions = np.array([57 * 24, 58 * 24])
    base = baseline_arrays(panel, positions)
    assert base["scale"] == pytest.approx(np.full((1, 2), 24.0))
    naive24 = base["seasonal_naive_24h"]
    assert naive24[0, 0, :, 1] == pytest.approx(np.arange(57 * 24, 57 * 24 + 24) - 24)
    scores = {s.model: s for s in score_units([unit_arrays(base)])}
    assert scores["seasonal_naive_24h"].mase == pytest.approx(1.0)
    assert scores["seasonal_naive_24h"].coverage == pytest.approx(1.0)
    # 168 h naive misses by 168 = 7 scales
    assert scores["seasonal_naive_168h"].mase == pytest.approx(7.0)


def test_seasonal_naive_has_no_point_where_its_lag_falls_before_the_data() -> None:
    panel = Panel(
        index=pd.date_range("2019-01-01", periods=200, freq="h"),
        kwh=np.arange(200, dtype=float)[None, :],
        device_ids=["m"],
    )
    base = baseline_arrays(panel, np.array([48]))
    assert np.isnan(base["seasonal_naive_168h"][..., 1]).all()  # 48 + h - 168 < 0: unknown, not wrapped
    assert base["seasonal_naive_24h"][0, 0, :, 1] == pytest.approx(np.arange(24, 48))
