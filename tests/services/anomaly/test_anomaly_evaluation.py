"""The second labelled set and the operator-facing metrics, checked against hand arithmetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.anomaly.evaluate import (
    evaluate_scores,
    label_events,
    same_week_z_scores,
    split_meters,
    without_natural_zeros,
)
from services.anomaly.inject import inject_faults


def _flat_meters(weeks: int = 40) -> pd.DataFrame:
    hours = pd.date_range("2013-01-01", periods=weeks * 168, freq="h", tz="UTC")
    return pd.concat(
        [pd.DataFrame({"meter_id": m, "timestamp_utc": hours, "kwh": 10.0}) for m in ("a", "b", "c")],
        ignore_index=True,
    )


def test_injected_faults_change_exactly_the_labelled_hours_as_the_public_set_does() -> None:
    clean = _flat_meters()
    rows, events = inject_faults(clean, seed=1)
    assert len(rows) == len(clean)
    assert set(events["kind"]) <= {"spike", "dip", "level_shift", "flatline", "night_surge"}
    assert len(events) > 0
    changed = rows["kwh"].to_numpy() != 10.0
    labelled = rows["label"].to_numpy() == 1
    # Every changed hour is labelled; a labelled flatline on a flat meter reads 10 and changes nothing.
    assert not (changed & ~labelled).any()
    for kind, g in rows[labelled].groupby("anomaly_kind"):
        if kind == "spike":  # + 4..7 x median (10 kWh)
            assert ((g["kwh"] >= 50) & (g["kwh"] <= 80)).all()
        elif kind == "dip":  # x 0..0.2
            assert (g["kwh"] <= 2.0).all()
        elif kind == "level_shift":  # x 0.5..0.75 or x 1.3..1.8
            assert (g["kwh"].between(5, 7.5) | g["kwh"].between(13, 18)).all()
        elif kind == "night_surge":  # + 8..14 kWh, 00:00-05:59 only
            assert g["timestamp_utc"].dt.hour.max() <= 5
            assert g["kwh"].between(18, 24).all()
        elif kind == "flatline":
            assert (g["kwh"] == 10.0).all()
    lengths = dict(zip(events["kind"], events["length_h"], strict=False))
    assert lengths.get("spike", 1) == 1
    again, _ = inject_faults(clean, seed=1)
    pd.testing.assert_frame_equal(rows, again)  # the seed fixes the set


def _joined(meter_hours: dict[str, int], labelled: dict[str, list[int]]) -> pd.DataFrame:
    frames = []
    for meter, n in meter_hours.items():
        hours = pd.date_range("2019-01-01", periods=n, freq="h", tz="UTC")
        label = np.zeros(n, dtype=int)
        label[labelled.get(meter, [])] = 1
        frames.append(
            pd.DataFrame(
                {
                    "meter_id": meter,
                    "timestamp_utc": hours,
                    "label": label,
                    "kind": np.where(label, "spike", ""),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_event_precision_and_false_incidents_per_meter_year_by_hand() -> None:
    # Two meters, half a year each = 1 meter-year. Meter x: a real spike at hour 100.
    joined = _joined({"x": 4380, "y": 4380}, {"x": [100]})
    flag = np.zeros(len(joined), dtype=bool)
    flag[[100, 101]] = True  # one incident on x touching the spike
    flag[[2000]] = True  # a false incident on x
    flag[[4380 + 10, 4380 + 12, 4380 + 500]] = True  # y: 10 and 12 are one incident (gap 2 h), 500 another
    score = flag.astype(float)
    m = evaluate_scores("t", joined, score, flag, label_events(joined))
    assert m.incidents == 4
    assert m.false_incidents == 3
    assert m.meter_years == pytest.approx(1.0)
    assert m.false_incidents_per_meter_year == pytest.approx(3.0)
    assert m.event_precision == pytest.approx(1 / 4)
    assert m.point_precision == pytest.approx(1 / 6)
    assert m.event_recall == 1.0
    # 5 of the 8,759 clean hours tie with it (each counts half): AUC = 1 - 2.5 / 8,759.
    assert m.auc_by_kind["spike"] == pytest.approx(1 - 2.5 / 8759)


def test_same_hour_last_week_z_is_the_residual_against_last_week() -> None:
    hours = pd.date_range("2019-01-01", periods=6 * 168, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    base = 10 + 5 * np.sin(np.arange(168) * 2 * np.pi / 24)
    kwh = np.tile(base, 6) + rng.normal(0, 0.1, len(hours))
    kwh[5 * 168 + 30] += 5.0  # 50 residual-sigmas over last week's same hour
    joined = pd.DataFrame({"meter_id": "m", "timestamp_utc": hours, "kwh": kwh})
    z, _ = same_week_z_scores(joined)
    assert int(np.argmax(z)) == 5 * 168 + 30
    assert z[5 * 168 + 30] > 20
    assert (z[:168] == 0).all()  # no last week yet
    # The daily cycle itself is no surprise: it repeats every week.
    assert np.median(z[2 * 168 : 5 * 168]) < 1.5


def test_splits_and_natural_zeros_are_kept_apart() -> None:
    dev, test = split_meters(["m3", "m1", "m2", "m4"])
    assert (dev, test) == ({"m1", "m3"}, {"m2", "m4"})
    joined = pd.DataFrame({"kind": ["", "zero_reading_natural", "spike"], "label": [0, 1, 1]})
    assert list(without_natural_zeros(joined)["kind"]) == ["", "spike"]
