"""A small synthetic fleet with known faults at known hours, and the warehouse loaders the anomaly
tests share (a uniquely named module: every test folder has its own `conftest`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
import pandas as pd

from shared.bus import Publisher
from shared.bus.local import queue_path
from shared.events import AnomaliesDetected, Event, FeaturesRefreshed
from shared.settings import Settings
from shared.warehouse import open_warehouse

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


SHIFT_START = fault_hour(43, 9)
SHIFT_END = fault_hour(45, 9)
NOW = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class Ctx:
    """The part of shared.push.PushContext that scoring reads, around the real local bus."""

    settings: Settings
    publisher: Publisher
    correlation_id: str | None = "corr-1"


E = TypeVar("E", bound=Event)


def published_on(settings: Settings, kind: type[E]) -> list[E]:
    """Messages of one event type on the local bus (read straight from its durable store)."""
    path = queue_path(settings)
    if not path.exists():
        return []
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT data, attributes FROM messages WHERE topic = ?", [kind.TOPIC]).fetchall()
    assert all(json.loads(a)["type"] == kind.TYPE for _, a in rows)
    return [kind.model_validate_json(d) for d, _ in rows]


def published(settings: Settings) -> list[AnomaliesDetected]:
    return published_on(settings, AnomaliesDetected)


def fleet_with_shift(fleet: FleetFactory) -> pd.DataFrame:
    frame = fleet()
    shifted = (frame["device_id"] == "dev-2") & (frame["hour"] >= SHIFT_START) & (frame["hour"] < SHIFT_END)
    frame.loc[shifted, "energy_kwh"] *= 1.7
    return frame


def load_hourly(settings: Settings, frame: pd.DataFrame) -> None:
    devices = sorted(frame["device_id"].unique())
    hourly = frame.assign(
        site_id="site-1",
        max_power_w=frame["energy_kwh"] * 1000 * 1.3,
        reading_count=4,
        coverage=1.0,
    )
    with open_warehouse(settings) as wh:
        wh.merge(
            "dim_device",
            pd.DataFrame(
                {"device_id": devices, "site_id": "site-1", "name": devices, "nominal_voltage": 230.0}
            ),
            key=["device_id"],
        )
        wh.merge("hourly_consumption", hourly, key=["device_id", "hour"])


def refresh_event(refresh_id: str, start: pd.Timestamp, end: pd.Timestamp) -> FeaturesRefreshed:
    return FeaturesRefreshed(
        refresh_id=refresh_id,
        window_start=start.to_pydatetime(),
        window_end=end.to_pydatetime(),
        device_ids=[f"dev-{i}" for i in range(6)],
    )


def read_anomalies(settings: Settings) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        rows = wh.query_df("SELECT * FROM energy_analytics.anomalies ORDER BY incident_id")
    return rows
