"""The service ranks only its window's hours (`rank_hours(from_hour=...)`), not the weeks of
history it loads for the baseline; the hours it returns must carry exactly what ranking every
hour gives, including an incident already running when the window opens."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anomaly_fleet import FleetFactory, fault_hour

from services.anomaly.calibrate import context_row, load_calibration
from services.anomaly.combine import rank_hours
from services.anomaly.detectors import panel_from_long, run_detectors


def test_context_reaches_back_to_the_first_hour_of_a_run_still_going_and_its_four_weeks() -> None:
    ratio = np.zeros((2000, 3))
    ratio[800:1500:2, 0] = 1.0  # candidates 2 h apart (within the 3 h gap): one run, rows 800-1498
    ratio[1000:1390, 1] = 1.0  # a run that ended 10 h before row 1400: not reaching it
    # device 2: never a candidate
    assert context_row(ratio, 0.6, 1400) == 800 - 672 - 1  # the run's first row, less 28 days
    ratio[:, 0] = 0.0
    assert context_row(ratio, 0.6, 1400) == 1400 - 672 - 1  # no run reaches row 1400
    assert context_row(ratio, 0.6, 300) == 0  # never before the grid


def test_ranking_from_an_hour_gives_those_hours_what_ranking_every_hour_gives(fleet: FleetFactory) -> None:
    assert load_calibration() is not None  # the calibrated rule, whose features read back in time
    frame = fleet()
    stuck = (frame["device_id"] == "dev-2") & (frame["hour"] >= fault_hour(50, 2))
    stuck &= frame["hour"] < fault_hour(51, 20)
    frame.loc[stuck, "energy_kwh"] = float(frame.loc[stuck, "energy_kwh"].iloc[0])
    spike = (frame["device_id"] == "dev-4") & (frame["hour"] == fault_hour(52, 13))
    frame.loc[spike, "energy_kwh"] *= 6
    panel = panel_from_long(frame)
    _, findings = run_detectors(panel)
    since = fault_hour(51, 0)  # the stuck meter's incident is under way at this hour

    whole = rank_hours(panel, findings, include_missing=True)
    part = rank_hours(panel, findings, include_missing=True, from_hour=since)

    expected = whole[whole["hour"] >= since].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    flagged = part[part["is_anomaly"]]
    assert {"flatline", "spike"} <= set(flagged["anomaly_type"])
    assert flagged[flagged["anomaly_type"] == "flatline"]["hour"].min() == since  # latched before `since`
