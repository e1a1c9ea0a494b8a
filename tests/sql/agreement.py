"""Hourly energy recomputed from raw register readings in plain Python, independently of the SQL.

The truth a user would compute by hand: per device, readings in time order; each pair of
consecutive readings at most 24 h apart is an interval whose energy is the register difference
(a drop to near zero counts the new value, as a reset); that energy is spread over the UTC hours
the interval covers in proportion to the time spent in each. Nothing here reads the models' SQL.

Run on a demo-sized fleet (50 devices x 28 days, the `gridsight demo` defaults) through the real
connector:  PYTHONPATH=$PWD .venv/bin/python -m tests.sql.agreement --home /tmp/gs-agree
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

HOUR_S = 3600
MAX_GAP_S = 86400
RESET_NEAR_ZERO_WH = 50_000.0
TOLERANCE_SHARE = 0.005
TOLERANCE_KWH = 0.001


def hourly_kwh_from_registers(readings: pd.DataFrame) -> dict[tuple[str, datetime], float]:
    """(device_id, UTC hour) -> kWh from columns device_id, timestamp (tz-aware), energy_wh."""
    out: dict[tuple[str, datetime], float] = defaultdict(float)
    frame = readings.sort_values(["device_id", "timestamp"])
    for device_id, group in frame.groupby("device_id", sort=False):
        seconds = [t.timestamp() for t in group["timestamp"]]
        registers = group["energy_wh"].tolist()
        for i in range(1, len(seconds)):
            start, end = seconds[i - 1], seconds[i]
            length = end - start
            if length <= 0 or length > MAX_GAP_S:
                continue
            delta = registers[i] - registers[i - 1]
            if delta < 0:
                if registers[i] > RESET_NEAR_ZERO_WH:
                    continue  # a correction: the interval's energy is unknown
                delta = registers[i]
            hour = math.floor(start / HOUR_S) * HOUR_S
            while hour < end:
                overlap = min(end, hour + HOUR_S) - max(start, hour)
                out[(str(device_id), datetime.fromtimestamp(hour, UTC))] += delta * overlap / length / 1000
                hour += HOUR_S
    return dict(out)


def agreement(
    truth: dict[tuple[str, datetime], float], modelled: dict[tuple[str, datetime], float | None]
) -> tuple[float, int, list[tuple[str, datetime, float | None, float | None]]]:
    """Share of device-hours (in either side) where the two agree within 0.5 % or 1 Wh."""
    keys: Iterable[tuple[str, datetime]] = set(truth) | {k for k, v in modelled.items() if v is not None}
    keys = sorted(keys)
    misses = []
    for key in keys:
        expected, actual = truth.get(key), modelled.get(key)
        if expected is None or actual is None:
            misses.append((*key, expected, actual))
            continue
        if abs(expected - actual) > max(TOLERANCE_SHARE * abs(expected), TOLERANCE_KWH):
            misses.append((*key, expected, actual))
    total = len(keys)
    return (1 - len(misses) / total) if total else 1.0, total, misses


def measure(settings: object) -> tuple[float, int, list[tuple[str, datetime, float | None, float | None]]]:
    """Agreement between raw readings and energy_analytics.hourly_consumption of one warehouse."""
    from shared.warehouse import open_warehouse

    with open_warehouse(settings) as wh:  # type: ignore[arg-type]
        raw = wh.query_df(
            "SELECT device_id, `timestamp`, energy_wh FROM raw.reading"
            " WHERE _fivetran_deleted IS NULL OR NOT _fivetran_deleted"
        )
        hourly = wh.query_df("SELECT device_id, hour, energy_kwh FROM energy_analytics.hourly_consumption")
    modelled = {
        (str(r.device_id), r.hour.to_pydatetime()): (None if pd.isna(r.energy_kwh) else float(r.energy_kwh))
        for r in hourly.itertuples()
    }
    return agreement(hourly_kwh_from_registers(raw), modelled)


def _main() -> None:
    from infra.local.sync import run_sync
    from shared.refresh import refresh_features
    from shared.settings import Settings
    from simulator.faults import FaultPolicy
    from simulator.fleet import Fleet, FleetSpec
    from simulator.server import SimulatorServer, VendorApi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="Keep the landed raw file; refresh again.")
    args = parser.parse_args()
    settings = Settings(home=args.home)
    if not args.reuse:
        api = VendorApi(
            Fleet(FleetSpec(devices=args.devices, days=args.days, seed=args.seed)), "k", FaultPolicy()
        )
        server = SimulatorServer(api).start()
        try:
            config = {
                "base_url": server.url,
                "api_key": "k",
                "page_size": "1000",
                "start_date": "2026-01-01",
                "lookback_hours": "3",
            }
            result = run_sync(settings, configuration=config)
            assert result.ok, result.error
        finally:
            server.stop()
    refresh_features(settings, full=True)
    share, total, misses = measure(settings)
    print(f"device-hours: {total}  agreeing: {share:.4%}  disagreeing: {len(misses)}")
    for miss in misses[:5]:
        print("  e.g.", miss)


if __name__ == "__main__":
    _main()
