"""`with_columns` puts a few hours of readings onto a panel's grid as a left join of the panel's
rows would: a value where both have the device-hour, NaN elsewhere, nothing from hours or devices
the panel does not hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.anomaly.detectors import panel_from_long, with_columns

H0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")


def _hour(h: float) -> pd.Timestamp:
    return H0 + pd.Timedelta(hours=h)


def test_readings_land_on_the_cells_the_panel_has_and_nowhere_else() -> None:
    hourly = pd.DataFrame(
        {
            "device_id": ["a", "a", "a", "b", "b"],
            "hour": [_hour(0), _hour(1), _hour(3), _hour(0), _hour(1)],  # a has no row at hour 2
            "energy_kwh": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    panel = panel_from_long(hourly)
    readings = pd.DataFrame(
        {
            "device_id": ["a", "a", "b", "zz", "b"],
            "hour": [_hour(1), _hour(2), _hour(0), _hour(0), _hour(1.5)],
            "voltage_min": [229.5, 231.0, 228.0, 240.0, 250.0],
        }
    )
    got = with_columns(panel, readings, ("voltage_min",))
    want = np.full((4, 2), np.nan)  # hours 0..3 x devices a, b
    want[1, 0] = 229.5  # a at hour 1
    want[0, 1] = 228.0  # b at hour 0
    # a at hour 2 (no hourly row), unknown device zz and b at 01:30 (no such hour) join nothing
    np.testing.assert_array_equal(got.extra["voltage_min"], want)
    np.testing.assert_array_equal(got.energy_kwh, panel.energy_kwh)
    # No rows at all (no forecasts yet): the columns are still there, so the same detectors run.
    empty = with_columns(panel, pd.DataFrame(columns=["device_id", "hour"]), ("forecast_p50",))
    assert np.isnan(empty.extra["forecast_p50"]).all()
