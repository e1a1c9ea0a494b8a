"""The dashboard's plain functions against a real DuckDB warehouse, checked with independent pandas sums."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from services.chat.dashboard.data import device_detail, fleet_overview
from shared.errors import NotFound
from shared.warehouse import open_warehouse


def test_empty_warehouse_gives_an_empty_overview(settings):
    with open_warehouse(settings) as wh:
        overview = fleet_overview(wh)
    assert overview.as_of is None
    assert overview.devices == []
    assert overview.totals.device_count == 0
    assert overview.totals.change_pct is None


def test_overview_energy_today_matches_an_independent_sum(settings, demo_fleet, last_hour):
    with open_warehouse(settings) as wh:
        overview = fleet_overview(wh)
    as_of = last_hour + timedelta(hours=1)
    today_start = as_of.replace(hour=0)
    hourly = demo_fleet.hourly
    today = hourly[(hourly.hour >= today_start) & (hourly.hour < as_of)].groupby("device_id").energy_kwh.sum()
    week = (
        hourly[(hourly.hour >= today_start - timedelta(days=7)) & (hourly.hour < as_of - timedelta(days=7))]
        .groupby("device_id")
        .energy_kwh.sum()
    )

    assert overview.as_of == as_of
    assert [d.device_id for d in overview.devices] == ["dev-001", "dev-002", "dev-003"]
    for device in overview.devices:
        assert device.energy_today_kwh == pytest.approx(today[device.device_id], abs=1e-3)
        assert device.energy_same_day_last_week_kwh == pytest.approx(week[device.device_id], abs=1e-3)
    assert overview.totals.energy_today_kwh == pytest.approx(today.sum(), abs=1e-2)
    expected_change = 100 * (today.sum() - week.sum()) / week.sum()
    assert overview.totals.change_pct == pytest.approx(expected_change, abs=0.1)


def test_overview_last_reading_is_per_device(settings, demo_fleet, last_hour):
    with open_warehouse(settings) as wh:
        devices = {d.device_id: d for d in fleet_overview(wh).devices}
    assert devices["dev-001"].last_reading_hour == last_hour
    assert devices["dev-003"].last_reading_hour == last_hour - timedelta(hours=5)
    assert devices["dev-001"].site_name == "Harbour Office"


def test_open_incidents_are_recent_and_of_installed_devices_only(settings, demo_fleet):
    with open_warehouse(settings) as wh:
        overview = fleet_overview(wh)
    assert [i.incident_id for i in overview.open_incidents] == ["inc-open-spike"]
    assert overview.totals.open_incidents == 1
    assert {d.device_id: d.open_incidents for d in overview.devices} == {
        "dev-001": 1,
        "dev-002": 0,
        "dev-003": 0,
    }


def test_device_detail_has_load_forecast_band_and_anomalies(settings, demo_fleet, last_hour):
    with open_warehouse(settings) as wh:
        detail = device_detail(wh, "dev-001", hours=72)
    assert detail.window_end == last_hour + timedelta(hours=1)
    assert len(detail.load) == 72
    assert detail.load[-1].hour == last_hour
    # forecasts start 47 h before the end of the data and run 24 h past it
    assert len(detail.forecast) == 72
    assert all(p.p10 <= p.p50 <= p.p90 for p in detail.forecast)
    assert max(p.target_hour for p in detail.forecast) > detail.window_end
    assert [a.incident_id for a in detail.anomalies] == ["inc-open-spike"]
    assert "6.2 sigma" in detail.anomalies[0].explanation


def test_device_detail_window_includes_older_incidents_when_asked(settings, demo_fleet):
    with open_warehouse(settings) as wh:
        detail = device_detail(wh, "dev-001", hours=7 * 24)
    assert [a.incident_id for a in detail.anomalies] == ["inc-old-flat", "inc-open-spike"]


def test_unknown_and_decommissioned_devices_are_not_found(settings, demo_fleet):
    with open_warehouse(settings) as wh, pytest.raises(NotFound, match="dev-999"):
        device_detail(wh, "dev-999")


def test_device_without_readings_still_has_a_page(settings, demo_fleet):
    extra = pd.DataFrame([{"device_id": "dev-new", "site_id": "site-b", "name": "Fresh install"}])
    with open_warehouse(settings) as wh:
        wh.merge("dim_device", extra, key=["device_id"])
        detail = device_detail(wh, "dev-new")
    assert detail.device.name == "Fresh install"
    assert detail.load == []
    assert detail.anomalies == []


def test_open_incidents_list_the_most_severe_first(settings, demo_fleet, last_hour):
    critical = pd.DataFrame(
        [
            {"incident_id": "inc-critical", "device_id": "dev-002",
             "start_hour": last_hour - timedelta(hours=10), "end_hour": last_hour - timedelta(hours=8),
             "anomaly_type": "baseload_rise", "severity": "critical", "explanation": "Baseload tripled."},
        ]
    )  # fmt: skip
    critical["start_hour"] = pd.to_datetime(critical.start_hour, utc=True)
    critical["end_hour"] = pd.to_datetime(critical.end_hour, utc=True)
    with open_warehouse(settings) as wh:
        wh.merge("anomalies", critical, key=["incident_id"])
        overview = fleet_overview(wh)
    assert [i.incident_id for i in overview.open_incidents] == ["inc-critical", "inc-open-spike"]
