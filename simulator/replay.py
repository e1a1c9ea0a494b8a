"""Replay mode: serve a real data set (the Cambridge building meters in ../shared/data) as devices.

Each building meter becomes one device on its own commercial site. Measured: hourly kWh (as
average power and a cumulative register) and outside temperature. Not in the data, so derived and
documented here: voltage is a steady nominal 230 V with a small deterministic ripple, and
occupancy is "weekday 08:00-18:00". A missing hour in the file is a missing reading (a dropout).
Received time is one hour and 30 s after the reading's start, so the change feed works unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.fleet import DAY_S, RawRecord, _iso_array

_CAMBRIDGE = (52.2053, 0.1218)
_RECEIVE_DELAY_S = 3600 + 30


class Replay:
    """A `simulator.feed.Source` over hourly meter CSVs; the whole file is small (300k rows)."""

    def __init__(self, meters_csv: Path, weather_csv: Path | None, days: float) -> None:
        meters = pd.read_csv(meters_csv, parse_dates=["timestamp_utc"])
        meters["ts"] = meters["timestamp_utc"].astype("int64") // 10**9
        temps: dict[int, float] = {}
        if weather_csv is not None and weather_csv.exists():
            weather = pd.read_csv(weather_csv, parse_dates=["timestamp_utc"])
            temps = dict(
                zip(
                    (weather["timestamp_utc"].astype("int64") // 10**9).tolist(),
                    weather["air_temperature_c"].round(2).tolist(),
                    strict=True,
                )
            )
        self._series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for meter_id, group in meters.sort_values(["meter_id", "ts"]).groupby("meter_id"):
            ts = group["ts"].to_numpy(dtype=np.int64)
            wh = group["kwh"].to_numpy(dtype=float) * 1000.0
            register = 1_000_000.0 + np.concatenate(([0.0], np.cumsum(wh)[:-1]))
            self._series[f"meter-{meter_id}"] = (ts, wh, register)
        self._temps = temps
        self.start = int(meters["ts"].min()) // DAY_S * DAY_S
        self.initial_now = self.start + int(days * DAY_S)
        self.max_delay_s = _RECEIVE_DELAY_S
        self.feed_lag_s = 0  # published as soon as received

    def site_bodies(self) -> list[dict]:
        return [
            {
                "site_id": f"site-{device_id}",
                "name": f"Building {device_id.removeprefix('meter-')}",
                "site_type": "commercial",
                "timezone": "Europe/London",
                "latitude": _CAMBRIDGE[0],
                "longitude": _CAMBRIDGE[1],
            }
            for device_id in sorted(self._series)
        ]

    def device_bodies(self, now: int) -> list[dict]:
        return [
            {
                "device_id": device_id,
                "site_id": f"site-{device_id}",
                "name": f"Building {device_id.removeprefix('meter-')} electricity",
                "meter_type": "three_phase",
                "nominal_voltage": 230.0,
                "interval_minutes": 60,
                "installed_at": _iso_array(np.array([self.start - 365 * DAY_S]))[0],
                "status": "active",
                "decommissioned_at": None,
            }
            for device_id in sorted(self._series)
        ]

    def fleet_ids(self) -> list[str]:
        return sorted(self._series)

    def receipts(self, device_id: str, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(timestamp, received, visible) of the device-day (the file is small: built from records)."""
        recs = self.records(device_id, day)
        ts = np.array([r.ts for r in recs], dtype=np.int64)
        received = np.array([r.received for r in recs], dtype=np.int64)
        return ts, received, received.copy()

    def records_at(self, device_id: str, day: int, timestamps: set[int]) -> list[RawRecord]:
        return [r for r in self.records(device_id, day) if r.ts in timestamps]

    def first_day(self, device_id: str) -> int | None:
        series = self._series.get(device_id)
        return None if series is None else int(series[0][0]) // DAY_S

    def records(self, device_id: str, day: int) -> list[RawRecord]:
        series = self._series.get(device_id)
        if series is None:
            return []
        ts_all, wh_all, reg_all = series
        lo, hi = np.searchsorted(ts_all, [day * DAY_S, (day + 1) * DAY_S])
        ts, wh, reg = ts_all[lo:hi], wh_all[lo:hi], reg_all[lo:hi]
        received = ts + _RECEIVE_DELAY_S
        hour = (ts % DAY_S) // 3600
        weekday = (ts // DAY_S + 3) % 7
        voltage = 230.0 * (1 + 0.006 * np.sin(2 * np.pi * (hour - 18) / 24))
        out = []
        for t, r, t_iso, r_iso, power, energy, volt, h, wd in zip(
            ts.tolist(),
            received.tolist(),
            _iso_array(ts),
            _iso_array(received),
            np.round(wh, 3).tolist(),  # one hour of Wh is the hour's average power in W
            np.round(reg, 3).tolist(),
            np.round(voltage, 2).tolist(),
            hour.tolist(),
            weekday.tolist(),
            strict=True,
        ):
            body = {
                "device_id": device_id,
                "timestamp": t_iso,
                "power_w": power,
                "energy_wh": energy,
                "voltage": volt,
                "temp_c": self._temps.get(t),
                "occupancy": wd < 5 and 8 <= h < 18,
                "received_at": r_iso,
            }
            out.append(RawRecord(r, t, r, body, None))
        return out
