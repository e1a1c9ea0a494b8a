"""Severity from what an operator weighs: how likely the incident is a real fault, and how much
energy (and money, at the flat tariff) is at stake.

`probability` is the calibrated probability of `calibrate.py` (the incident's highest latched
value); energy at stake is the sum over the incident's flagged hours of |actual - expected| kWh, and
its cost that times `chat_flat_tariff_per_kwh` (the one tariff setting, reused). The expected cost
of ignoring the incident, probability x cost, sets the severity. Data-quality and supply findings
(dropouts, voltage, impossible values) put no energy at stake and have no labelled examples to
calibrate on: they keep the detectors' rule (how far over threshold).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = ["RULE_TYPES", "SeverityPolicy", "incident_severity", "rule_severity"]

RULE_TYPES = ("dropout", "voltage", "impossible_value")


class SeverityPolicy(BaseModel):
    """Expected cost (probability x cost at stake, in tariff currency) for medium and high; an
    incident below `min_probability_high` is never high however much energy it involves."""

    model_config = ConfigDict(frozen=True)
    medium_expected_cost: float = 5.0
    high_expected_cost: float = 50.0
    min_probability_high: float = 0.6


# Order of the severities (alerting floors, escalation).
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def rule_severity(ratio: float) -> str:
    """At threshold is low; 1.5x over it medium; 2.5x high (a zero reading, a stuck day, a 10x spike)."""
    return "high" if ratio >= 2.5 else "medium" if ratio >= 1.5 else "low"


def incident_severity(
    anomaly_type: str,
    *,
    probability: float,
    peak_ratio: float,
    energy_at_stake_kwh: float,
    tariff_per_kwh: float,
    policy: SeverityPolicy | None = None,
) -> str:
    policy = policy or SeverityPolicy()
    if anomaly_type in RULE_TYPES or not np.isfinite(energy_at_stake_kwh):
        return rule_severity(peak_ratio)
    expected_cost = probability * energy_at_stake_kwh * tariff_per_kwh
    if expected_cost >= policy.high_expected_cost and probability >= policy.min_probability_high:
        return "high"
    if expected_cost >= policy.medium_expected_cost:
        return "medium"
    return "low"
