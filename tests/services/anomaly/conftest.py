"""A small synthetic fleet with known faults at known hours, shared by the anomaly tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

START = pd.Timestamp("2024-01-01", tz="UTC")
WEEKS = 8
DEVICES = [f"dev-{i}" for i in range(6)]

FleetFactory = Callable[..., pd.DataFrame]


def clean_fleet(weeks: int = WEEKS, seed: int = 7) -> pd.DataFrame:
    """Office-like load: a daytime hump on weekdays, low nights and weekends, 2 % noise."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(START, periods=weeks * 168, freq="h", tz="UTC")
    hod = hours.hour.to_numpy()
    weekday = hours.dayofweek.to_numpy() < 5
    shape = 1.0 + 2.0 * np.exp(-((hod - 13) ** 2) / 12.0) * weekday
    frames = []
    for i, device in enumerate(DEVICES):
        level = 5.0 * (i + 1)
        kwh = level * shape * (1 + 0.02 * rng.standard_normal(len(hours)))
        frames.append(pd.DataFrame({"device_id": device, "hour": hours, "energy_kwh": kwh}))
    return pd.concat(frames, ignore_index=True)


def fault_hour(day: int, hour: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=day, hours=hour)


@pytest.fixture
def fleet() -> FleetFactory:
    return clean_fleet
