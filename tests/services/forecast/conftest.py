"""Small slices of the real meters (a few buildings × a few weeks) and a tiny trained model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from services.forecast.artefact import save_version
from services.forecast.backtest import build_panel, load_energy_csv, load_weather_csv
from services.forecast.dataset import Panel
from services.forecast.model import TrainParams
from services.forecast.training import train_panel
from shared.settings import Settings
from shared.warehouse import open_warehouse

METERS = ["UCam_Building_b1", "UCam_Building_b12", "UCam_Building_b2"]
ORIGIN = datetime(2019, 11, 18, tzinfo=UTC)
FAST = TrainParams(num_boost_round=25, interval_rounds=25, num_leaves=15, min_data_in_leaf=20, workers=1)


@pytest.fixture(scope="session")
def energy_slice(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real meters, 1 Oct – 20 Nov 2019, as a CSV in the backtest's input format."""
    frame = load_energy_csv(shared_data / "meters_2019_hourly.csv.gz")
    frame = frame[frame["meter_id"].isin(METERS)]
    frame = frame[(frame["timestamp_utc"] >= "2019-10-01") & (frame["timestamp_utc"] < "2019-11-21")]
    path = tmp_path_factory.mktemp("slice") / "energy.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def weather_slice(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = load_weather_csv(shared_data / "weather_2019_hourly.csv.gz")
    frame = frame[(frame["timestamp_utc"] >= "2019-10-01") & (frame["timestamp_utc"] < "2019-11-21")]
    path = tmp_path_factory.mktemp("slice") / "weather.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def panel_slice(energy_slice: Path, weather_slice: Path) -> Panel:
    return build_panel(load_energy_csv(energy_slice), load_weather_csv(weather_slice))


@pytest.fixture(scope="session")
def trained(panel_slice: Panel):
    return train_panel(panel_slice, source="test", params=FAST)


@pytest.fixture
def model_root(tmp_path: Path, trained) -> Path:
    root = tmp_path / "models"
    save_version(*trained, root)
    return root


def history_of(panel: Panel, meter: str, origin: pd.Timestamp, hours: int = 336) -> list[float | None]:
    """The `hours` hours of `meter` before `origin`, oldest first, None where missing (or before
    the panel starts)."""
    d = panel.device_ids.index(meter)
    pos = panel.position(origin)
    values = [None if pd.isna(v) else float(v) for v in panel.kwh[d, max(0, pos - hours) : pos]]
    return [None] * (hours - len(values)) + values


@pytest.fixture
def fleet(settings: Settings, panel_slice: Panel) -> list[str]:
    """hourly_consumption and dim_device of the slice's meters up to ORIGIN, plus one decommissioned
    device (hours, but no dim_device row)."""
    start = pd.Timestamp("2019-11-01")
    frames = []
    for d, meter in enumerate([*panel_slice.device_ids, "decommissioned"]):
        src = panel_slice.kwh[min(d, len(panel_slice.device_ids) - 1)]
        lo, hi = panel_slice.position(start), panel_slice.position(pd.Timestamp(ORIGIN.replace(tzinfo=None)))
        hours = panel_slice.index[lo:hi].tz_localize(UTC)
        frames.append(
            pd.DataFrame(
                {
                    "device_id": meter,
                    "site_id": "s1",
                    "hour": hours,
                    "energy_kwh": src[lo:hi],
                    "avg_temp_c": 8.0,
                    "reading_count": 4,
                    "coverage": 1.0,
                }
            ).dropna(subset=["energy_kwh"])
        )
    devices = pd.DataFrame(
        {"device_id": panel_slice.device_ids, "site_id": "s1", "name": panel_slice.device_ids}
    )
    with open_warehouse(settings) as wh:
        wh.merge("hourly_consumption", pd.concat(frames, ignore_index=True), key=["device_id", "hour"])
        wh.merge("dim_device", devices, key=["device_id"])
    return [*panel_slice.device_ids, "decommissioned"]
