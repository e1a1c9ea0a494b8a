"""An hour's score may use only data up to that hour: cutting the input after hour h must leave
every score up to h exactly as it was."""

from __future__ import annotations

import pandas as pd
import pytest
from anomaly_fleet import FleetFactory, fault_hour

from services.anomaly.csvscore import score_energy


@pytest.mark.parametrize("cut_day", [20, 43, 44])
def test_truncating_after_hour_h_leaves_scores_up_to_h_unchanged(fleet: FleetFactory, cut_day: int) -> None:
    frame = fleet()
    dev = frame["device_id"] == "dev-1"
    frame.loc[dev & frame["hour"].between(fault_hour(43, 5), fault_hour(44, 20)), "energy_kwh"] *= 1.7
    frame.loc[dev & (frame["hour"] == fault_hour(20, 13)), "energy_kwh"] *= 5
    full = score_energy(frame)
    cut = fault_hour(cut_day, 13)
    part = score_energy(frame[frame["hour"] <= cut])
    keep = pd.to_datetime(full["timestamp_utc"], utc=True) <= cut
    expected = full[keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.reset_index(drop=True), expected)
    assert expected["is_anomaly"].any()  # the cut falls inside or after a fault, so it is a real check
