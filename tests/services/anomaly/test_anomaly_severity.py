"""Severity from calibrated probability and the energy at stake, checked with hand arithmetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.anomaly.combine import group_incidents
from services.anomaly.detectors import Finding
from services.anomaly.severity import incident_severity


@pytest.mark.parametrize(
    ("probability", "kwh", "expected"),
    [
        (0.9, 300.0, "high"),  # 0.9 x 300 kWh x 0.30 = 81 >= 50
        (0.5, 300.0, "medium"),  # 45: below 50, and 0.5 < 0.6 could never be high
        (0.9, 30.0, "medium"),  # 8.1 >= 5
        (0.9, 10.0, "low"),  # 2.7 < 5
    ],
)
def test_severity_is_the_expected_cost_of_ignoring_it(probability: float, kwh: float, expected: str) -> None:
    got = incident_severity(
        "level_shift", probability=probability, peak_ratio=1.2, energy_at_stake_kwh=kwh, tariff_per_kwh=0.30
    )
    assert got == expected


def test_data_quality_findings_keep_the_rule_severity() -> None:
    kw = {"probability": 0.1, "energy_at_stake_kwh": 0.0, "tariff_per_kwh": 0.30}
    assert incident_severity("dropout", peak_ratio=3.0, **kw) == "high"
    assert incident_severity("voltage", peak_ratio=1.2, **kw) == "low"


def test_incident_carries_energy_and_cost_at_stake_with_units() -> None:
    hours = pd.date_range("2024-03-01 09:00", periods=3, freq="h", tz="UTC")
    finding = Finding(
        "level_shift",
        np.zeros((3, 1)),
        np.full((3, 1), 4.0),
        np.array([[10.0], [12.0], [9.0]]),
        "kWh",
        "{actual:.1f} {unit} against about {expected:.1f} {unit} ({pct:+.0f} %).",
    )
    ranked = pd.DataFrame(
        {
            "device_id": "d",
            "hour": hours,
            "score": [0.6, 0.8, 0.7],
            "ratio": [1.5, 4.0, 2.3],
            "probability": [0.55, 0.92, 0.92],
            "is_anomaly": True,
            "anomaly_type": "level_shift",
            "finding": 0,
            "unit": "kWh",
            "row": [0, 1, 2],
            "col": 0,
            "expected": 4.0,
            "actual": [10.0, 12.0, 9.0],
        }
    )
    (inc,) = group_incidents(ranked, [finding], tariff_per_kwh=0.30).to_dict("records")
    assert inc["energy_at_stake_kwh"] == pytest.approx(6 + 8 + 5)
    assert inc["cost_at_stake"] == pytest.approx(19 * 0.30)
    assert inc["probability"] == pytest.approx(0.92)
    assert inc["severity"] == "medium"  # 0.92 x 5.70 = 5.24: at least 5, below 50
    assert inc["explanation"] == "12.0 kWh against about 4.0 kWh (+200 %)."


def test_isotonic_map_turns_latched_scores_into_probabilities() -> None:
    from services.anomaly.calibrate import Calibration, recalibrate

    cal = Calibration(
        candidate_ratio=0.6,
        alert_probability={},
        intercept=0.0,
        coefficients={},
        isotonic=[(0.0, 0.0), (0.5, 0.2), (1.0, 1.0)],
    )
    got = recalibrate(np.array([0.25, 0.5, 0.75, 1.0]), cal)
    # Linear between knots: 0.25 -> 0.1, 0.75 -> 0.2 + 0.5 x 0.8 = 0.6.
    assert got == pytest.approx([0.1, 0.2, 0.6, 1.0])
