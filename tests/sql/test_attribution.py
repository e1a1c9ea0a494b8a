"""Hand-computed meters: every expected kWh below is register arithmetic written out in the test.

A reading at t closes the interval (previous reading, t]; its energy is spread over the UTC hours
that interval covers in proportion to the time spent in each, and its power sample counts in the
hour the interval ends in. Coverage is the share of the hour covered by intervals of known energy.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime

import pandas as pd
import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from tests.sql.agreement import hourly_kwh_from_registers
from tests.sql.landing import land_rows, utc


def _hourly(settings: Settings, device_id: str) -> dict[datetime, dict[str, object]]:
    with open_warehouse(settings) as wh:
        frame = wh.query_df(
            "SELECT * FROM energy_analytics.hourly_consumption WHERE device_id = @d ORDER BY hour",
            {"d": device_id},
        )
    return {row["hour"].to_pydatetime(): row for row in frame.to_dict("records")}


def _kwh(hours: dict[datetime, dict[str, object]]) -> dict[datetime, float]:
    return {h: float(r["energy_kwh"]) for h, r in hours.items()}  # type: ignore[arg-type]


def test_fifteen_minute_meter_files_each_quarter_in_the_hour_it_was_used(settings: Settings) -> None:
    land_rows(
        settings,
        devices=[{"device_id": "q"}],
        readings=[
            ("q", "2026-03-01 10:00", 1000, 999),  # first reading: closes no known interval
            ("q", "2026-03-01 10:15", 1100, 400),  # (10:00, 10:15]: 100 Wh
            ("q", "2026-03-01 10:30", 1250, 600),  # 150 Wh
            ("q", "2026-03-01 10:45", 1300, 200),  # 50 Wh
            ("q", "2026-03-01 11:00", 1400, 400),  # (10:45, 11:00]: 100 Wh, still the 10:00 hour
            ("q", "2026-03-01 11:15", 1500, 800),  # (11:00, 11:15]: 100 Wh
        ],
    )
    refresh_features(settings)
    hours = _hourly(settings, "q")
    ten, eleven = utc("2026-03-01 10:00"), utc("2026-03-01 11:00")
    assert list(hours) == [ten, eleven]
    assert _kwh(hours) == pytest.approx({ten: 0.4, eleven: 0.1})
    assert hours[ten]["coverage"] == pytest.approx(1.0)
    assert hours[eleven]["coverage"] == pytest.approx(0.25)
    # power describes the same hour as the energy: the samples at 10:15, 10:30, 10:45 and 11:00
    assert hours[ten]["reading_count"] == 4
    assert hours[ten]["avg_power_w"] == pytest.approx((400 + 600 + 200 + 400) / 4)
    assert hours[ten]["max_power_w"] == pytest.approx(600)
    assert hours[eleven]["avg_power_w"] == pytest.approx(800)


def test_hourly_meter_energy_is_not_an_hour_late(settings: Settings) -> None:
    land_rows(
        settings,
        devices=[{"device_id": "h", "interval_minutes": 60}],
        readings=[
            ("h", "2026-03-01 00:00", 5000, 0),
            ("h", "2026-03-01 01:00", 5800, 800),  # 00:00-01:00: 800 Wh
            ("h", "2026-03-01 02:00", 6500, 700),  # 01:00-02:00: 700 Wh
            ("h", "2026-03-01 03:00", 7100, 600),  # 02:00-03:00: 600 Wh
        ],
    )
    refresh_features(settings)
    hours = _hourly(settings, "h")
    h0, h1, h2 = (utc(f"2026-03-01 0{i}:00") for i in range(3))
    assert _kwh(hours) == pytest.approx({h0: 0.8, h1: 0.7, h2: 0.6})
    assert [hours[h]["coverage"] for h in (h0, h1, h2)] == pytest.approx([1.0, 1.0, 1.0])
    assert [hours[h]["avg_power_w"] for h in (h0, h1, h2)] == pytest.approx([800, 700, 600])


def test_missed_reading_spanning_the_hour_is_split_pro_rata(settings: Settings) -> None:
    land_rows(
        settings,
        devices=[{"device_id": "m"}],
        readings=[
            ("m", "2026-03-01 10:30", 2000, 0),
            ("m", "2026-03-01 10:45", 2100, 400),  # 100 Wh in hour 10
            # 11:00 never arrived: (10:45, 11:15] holds 300 Wh, 15 min in each hour -> 150 + 150
            ("m", "2026-03-01 11:15", 2400, 600),
            ("m", "2026-03-01 11:30", 2500, 400),  # 100 Wh in hour 11
        ],
    )
    refresh_features(settings)
    hours = _hourly(settings, "m")
    ten, eleven = utc("2026-03-01 10:00"), utc("2026-03-01 11:00")
    assert _kwh(hours) == pytest.approx({ten: 0.25, eleven: 0.25})
    assert hours[ten]["coverage"] == pytest.approx(0.5)  # 10:30-11:00 of 60 min
    assert hours[eleven]["coverage"] == pytest.approx(0.5)  # 11:00-11:30
    assert hours[ten]["reading_count"] == 1  # 10:45
    assert hours[eleven]["reading_count"] == 2  # 11:15 (its interval ends in hour 11) and 11:30


def test_irregular_meter_spreads_each_interval_over_the_hours_it_covers(settings: Settings) -> None:
    land_rows(
        settings,
        devices=[{"device_id": "i", "interval_minutes": 30}],
        readings=[
            ("i", "2026-03-01 12:10", 10000, 0),
            ("i", "2026-03-01 12:50", 10400, 600),  # 40 min, 400 Wh, all in hour 12
            ("i", "2026-03-01 13:20", 11000, 1200),  # 30 min, 600 Wh: 10 min in 12 (200), 20 in 13 (400)
            # 105 min, 700 Wh: 40 min in 13, 60 in 14, 5 in 15
            ("i", "2026-03-01 15:05", 11700, 400),
        ],
    )
    refresh_features(settings)
    hours = _hourly(settings, "i")
    h12, h13, h14, h15 = (utc(f"2026-03-01 {h}:00") for h in (12, 13, 14, 15))
    assert _kwh(hours) == pytest.approx(
        {h12: 0.6, h13: (400 + 700 * 40 / 105) / 1000, h14: 700 * 60 / 105 / 1000, h15: 700 * 5 / 105 / 1000}
    )
    assert [hours[h]["coverage"] for h in (h12, h13, h14, h15)] == pytest.approx([50 / 60, 1.0, 1.0, 5 / 60])
    # hour 14 is covered by an interval ending later: energy, but no sample of its own
    assert hours[h14]["reading_count"] == 0
    assert pd.isna(hours[h14]["avg_power_w"])
    assert hours[h15]["avg_power_w"] == pytest.approx(400)
    assert sum(_kwh(hours).values()) == pytest.approx((11700 - 10000) / 1000)


def test_gap_longer_than_a_day_stays_unknown(settings: Settings) -> None:
    land_rows(
        settings,
        devices=[{"device_id": "g"}],
        readings=[
            ("g", "2026-03-01 10:00", 1000, 0),
            ("g", "2026-03-01 10:15", 1100, 400),
            ("g", "2026-03-02 11:00", 9000, 400),  # 24 h 45 min later: no energy, no hours between
            ("g", "2026-03-02 11:15", 9100, 400),
        ],
    )
    refresh_features(settings)
    hours = _hourly(settings, "g")
    assert _kwh(hours) == pytest.approx({utc("2026-03-01 10:00"): 0.1, utc("2026-03-02 11:00"): 0.1})


def test_site_days_are_local_days_across_the_spring_dst_change(settings: Settings) -> None:
    # Amsterdam: CET (UTC+1) until 2026-03-29 01:00 UTC, then CEST (UTC+2). An hourly meter using
    # 1 kWh every hour from 2026-03-27 00:00 UTC to 2026-03-31 00:00 UTC.
    start = utc("2026-03-27 00:00")
    readings = [
        ("dst", (start + pd.Timedelta(hours=i)).strftime("%Y-%m-%d %H:%M"), 10000 + 1000 * i, 1000)
        for i in range(4 * 24 + 1)
    ]
    land_rows(settings, devices=[{"device_id": "dst", "interval_minutes": 60}], readings=readings)
    refresh_features(settings)
    with open_warehouse(settings) as wh:
        days = wh.query_df("SELECT day, energy_kwh FROM energy_analytics.daily_site_consumption ORDER BY day")
    by_day = {str(d): float(e) for d, e in zip(days["day"], days["energy_kwh"], strict=True)}
    assert by_day == pytest.approx(
        {
            "2026-03-27": 23.0,  # local 01:00-24:00 (data starts at 01:00 CET)
            "2026-03-28": 24.0,  # UTC 27 23:00 - 28 23:00
            "2026-03-29": 23.0,  # the short day: UTC 28 23:00 - 29 22:00
            "2026-03-30": 24.0,  # UTC 29 22:00 - 30 22:00
            "2026-03-31": 2.0,  # UTC 30 22:00 - 31 00:00
        }
    )


def test_random_irregular_meter_matches_the_python_recomputation_and_conserves_energy(
    settings: Settings,
) -> None:
    rng = random.Random(5)
    at, register, readings = utc("2026-03-01 00:07"), 20_000.0, []
    for _ in range(300):
        readings.append(("r", at.strftime("%Y-%m-%d %H:%M"), register, 500))
        gap = rng.choice([1, 7, 15, 15, 15, 45, 60, 95, 180]) if rng.random() > 0.01 else 25 * 60
        at += pd.Timedelta(minutes=gap).to_pytimedelta()
        register = round(register + rng.uniform(0, 3) * gap, 3)
    land_rows(settings, devices=[{"device_id": "r"}], readings=readings)
    refresh_features(settings)
    hours = _hourly(settings, "r")
    frame = pd.DataFrame(readings, columns=["device_id", "timestamp", "energy_wh", "power_w"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    truth = {h: kwh for (_, h), kwh in hourly_kwh_from_registers(frame).items()}
    assert _kwh(hours) == pytest.approx(truth, rel=1e-9, abs=1e-12)
    assert all(0 <= float(r["coverage"]) <= 1 + 1e-12 for r in hours.values())  # type: ignore[arg-type]
    # conserved: everything but the intervals longer than a day is in some hour
    skipped = sum(
        b[2] - a[2] for a, b in itertools.pairwise(readings) if utc(b[1]) - utc(a[1]) > pd.Timedelta(hours=24)
    )
    assert skipped > 0  # the seed has gaps over a day
    assert sum(_kwh(hours).values()) == pytest.approx((readings[-1][2] - readings[0][2] - skipped) / 1000)
