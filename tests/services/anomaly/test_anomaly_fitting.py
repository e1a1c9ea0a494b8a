"""Fitting the calibration on labelled data keeps the recall it promises on the data it was fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomaly_fleet import clean_fleet

from services.anomaly.calibrate import CALIBRATED_TYPES
from services.anomaly.fitting import fit_on_labels
from services.anomaly.inject import inject_faults


@pytest.mark.slow  # the greedy cut-off search runs ~100 evaluations: ~40 s on the shared machine
def test_fit_freezes_cut_offs_that_keep_event_recall_on_development_meters(tmp_path: Path) -> None:
    clean = clean_fleet(weeks=40).rename(
        columns={"device_id": "meter_id", "hour": "timestamp_utc", "energy_kwh": "kwh"}
    )
    # Everyday surprises the labels do not call faults, so the model has both classes to tell apart.
    rng = np.random.default_rng(5)
    clean["kwh"] *= np.clip(1 + 0.12 * rng.standard_t(3, len(clean)), 0.3, None)
    rows, _ = inject_faults(clean, seed=3)
    path = tmp_path / "labelled.csv"
    rows.to_csv(path, index=False)
    cal, dev = fit_on_labels(
        str(path), [clean], seeds=(11,), cut_seeds=(), min_event_recall=0.9, min_kind_recall=0.8
    )
    assert set(cal.alert_probability) == set(CALIBRATED_TYPES)
    assert all(0.0 <= c < 1.0 for c in cal.alert_probability.values())
    assert dev.event_recall >= 0.9
    knots = np.array(cal.isotonic)
    assert (np.diff(knots[:, 0]) >= 0).all()  # a monotone map
    assert (np.diff(knots[:, 1]) >= 0).all()
    assert "development half" in cal.fitted_on
    assert cal.trees
    assert 0 < cal.min_alert_ratio <= 1


def test_exported_trees_reproduce_the_fitted_model() -> None:
    """calibration.json holds the trees as node tables; walking them must give the library's own
    log-odds (a wrong branch direction or a dropped NaN rule would not)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from services.anomaly.fitting import export_trees

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1], nan=2.0) ** 2) > 0.8).astype(int)
    model = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=7, random_state=0).fit(x, y)
    intercept, trees = export_trees(model)
    log_odds = intercept + sum(t.predict(x) for t in trees)
    assert np.allclose(log_odds, model.decision_function(x), atol=1e-9)


def test_candidate_features_of_a_run_by_hand() -> None:
    """Four steady weeks at 1 kWh, then three candidate hours at 2, 2 and 4 kWh against 1 expected,
    at 04-06 UTC: size, range and run-so-far features checked by hand."""
    import pandas as pd

    from services.anomaly.calibrate import candidate_features

    hours = pd.date_range("2024-01-01", periods=29 * 24 + 7, freq="h", tz="UTC")  # ends 06:00 on day 30
    energy = np.ones(len(hours))
    energy[-3:] = [2.0, 2.0, 4.0]
    ratio = np.zeros(len(hours))
    ratio[-3:] = 1.0
    ranked = pd.DataFrame(
        {"device_id": "m", "hour": hours, "ratio": ratio, "kind": "level_shift", "energy_kwh": energy,
         "expected": 1.0}
    )  # fmt: skip
    features, run = candidate_features(ranked, 0.6)
    assert list(features.index) == [len(hours) - 3, len(hours) - 2, len(hours) - 1]
    assert (run[-3:] == run[-1]).all()
    assert (run[:-3] == -1).all()
    f = features.to_dict("list")
    lae = np.log(np.array([2.001, 2.001, 4.001]) / 1.001)
    assert f["log_ae"] == pytest.approx(lae)
    assert f["excess"] == pytest.approx([1.0, 1.0, 3.0])  # (actual - expected) / typical 1 kWh
    assert f["over_high"] == pytest.approx([1.0, 1.0, 3.0])  # the past 4 weeks' 99th percentile is 1
    assert f["under_low"] == pytest.approx([-1.0, -1.0, -3.0])
    assert f["level"] == pytest.approx([2.0, 2.0, 4.0])
    assert f["run_hours"] == [1.0, 2.0, 3.0]
    means = [lae[0], lae[:2].mean(), lae.mean()]
    assert f["run_mean_log_ae"] == pytest.approx(means)
    assert f["run_spread_log_ae"] == pytest.approx([0.0, 0.0, lae.std()], abs=1e-6)
    assert f["run_night_share"] == pytest.approx([1.0, 1.0, 2 / 3])  # 04 and 05 UTC are night, 06 is not
    assert f["hour_of_day"] == [4.0, 5.0, 6.0]
    assert f["is_level_shift"] == [1.0, 1.0, 1.0]
    assert f["fleet_share"] == [0.0, 0.0, 0.0]  # a fleet of one
    assert f["prev_log_ratio"] == pytest.approx([0.0, np.log(2), np.log(2)])


def _gated(values: list[float], kind: str, min_size: dict[str, float]) -> tuple[list[bool], np.ndarray]:
    """(may alert, departure size) of candidate hours at `values` kWh, one per run, after four
    weeks at 1 kWh (expected 1), under the frozen calibration with `min_size` as its gates."""
    from services.anomaly.calibrate import latched_probability, load_calibration

    hours = pd.date_range("2024-01-01", periods=28 * 24 + 2 * len(values), freq="h", tz="UTC")
    energy = np.ones(len(hours))
    ratio = np.zeros(len(hours))
    energy[28 * 24 :: 2] = values  # a steady hour between them keeps the runs apart
    ratio[28 * 24 :: 2] = 2.0
    ranked = pd.DataFrame(
        {
            "device_id": "m",
            "hour": hours,
            "ratio": ratio,
            "kind": kind,
            "energy_kwh": energy,
            "expected": 1.0,
            "unit": "kWh",
        }
    )
    cal = load_calibration()
    assert cal is not None
    gated = cal.model_copy(update={"min_size": min_size, "min_alert_ratio": 1.0})
    _, calibrated, may_alert, size = latched_probability(ranked, gated)
    at = np.flatnonzero(ratio > 0)
    assert calibrated[at].all()
    return may_alert[at].tolist(), size[at]


def test_a_spike_alerts_only_when_it_adds_enough_typical_hours() -> None:
    """Typical hour 1 kWh: spikes of 2, 3.4 and 5 kWh add 1, 2.4 and 4 typical hours; with a minimum
    of 2.4 the first cannot alert, the other two can (cut-off 0: the gate alone decides)."""
    may_alert, size = _gated([2.0, 3.4, 5.0], "spike", {"spike": 2.4})
    assert size == pytest.approx([1.0, 2.4, 4.0])
    assert may_alert == [False, True, True]
    assert _gated([2.0, 3.4, 5.0], "spike", {})[0] == [True, True, True]


def test_a_dip_alerts_only_when_it_falls_far_enough_below_expected() -> None:
    """Expected 1 kWh: dips to 0.5, 0.2 and 0 kWh are -log((a + 0.001) / 1.001) = 0.69, 1.60 and
    6.91 (clipped to 6) below; with a minimum of 1.2 only the last two may alert."""
    may_alert, size = _gated([0.5, 0.2, 0.0], "dip", {"dip": 1.2})
    assert size == pytest.approx([-np.log(0.501 / 1.001), -np.log(0.201 / 1.001), 6.0])
    assert may_alert == [False, True, True]
    # A spike's gate does not touch dips, and a level shift is never sized.
    assert _gated([0.5, 0.2, 0.0], "dip", {"spike": 100.0})[0] == [True, True, True]
    may_alert, size = _gated([0.5, 0.2, 0.0], "level_shift", {"spike": 100.0, "dip": 100.0})
    assert may_alert == [True, True, True]
    assert np.isinf(size).all()
