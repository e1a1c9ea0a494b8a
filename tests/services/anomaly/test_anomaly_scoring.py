"""The service path on the embedded DuckDB warehouse: window scoring, idempotent MERGE into
`anomalies`, one row per ongoing incident, one AnomaliesDetected per new incident."""

from __future__ import annotations

import pandas as pd
import pytest
from anomaly_fleet import (
    NOW,
    SHIFT_END,
    SHIFT_START,
    START,
    Ctx,
    FleetFactory,
    fault_hour,
    fleet_with_shift,
    load_hourly,
    published,
    read_anomalies,
    refresh_event,
)

from services.anomaly.detectors import DetectorConfig
from services.anomaly.scoring import detect_window, score_window, write_incidents
from shared.bus import open_publisher
from shared.events import AnomaliesDetected, FeaturesRefreshed
from shared.settings import Settings
from shared.warehouse import open_warehouse


def _score(settings: Settings, event: FeaturesRefreshed) -> list[str]:
    with open_warehouse(settings) as wh:
        incidents = detect_window(event, wh, now=NOW)
        write_incidents(wh, incidents)
    return incidents.new_ids


def test_window_scoring_writes_one_incident_row(settings: Settings, fleet: FleetFactory) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    new = _score(settings, refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0)))
    rows = read_anomalies(settings)
    assert len(rows) == 1
    assert new == list(rows["incident_id"])
    row = rows.iloc[0]
    assert (row["device_id"], row["anomaly_type"]) == ("dev-2", "level_shift")
    # A lone x1.7 hour is no fault on real buildings, and too small a spike to raise (it adds less
    # than the calibration's minimum of typical hours), so the incident starts once the shift
    # detector has seen its 6 hours.
    start = pd.to_datetime(row["start_hour"], utc=True)
    assert SHIFT_START <= start <= SHIFT_START + pd.Timedelta(hours=DetectorConfig().shift_window_h - 1)
    assert pd.to_datetime(row["end_hour"], utc=True) >= SHIFT_END - pd.Timedelta(hours=2)
    assert row["severity"] in {"low", "medium", "high"}
    assert row["actual"] > row["expected"]
    assert row["explanation"].startswith("Consumption has stayed at a different level")


def test_redelivered_event_leaves_anomalies_unchanged(settings: Settings, fleet: FleetFactory) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    event = refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0))
    assert len(_score(settings, event)) == 1
    before = read_anomalies(settings)
    assert _score(settings, event) == []
    pd.testing.assert_frame_equal(read_anomalies(settings), before)


def test_ongoing_incident_updates_its_one_row(settings: Settings, fleet: FleetFactory) -> None:
    frame = fleet_with_shift(fleet)
    cut = fault_hour(44, 3)  # the shift is still going on when the first window ends
    load_hourly(settings, frame[frame["hour"] < cut])
    first = _score(settings, refresh_event("r1", fault_hour(43, 0), cut))
    early = read_anomalies(settings)
    assert len(early) == 1
    assert len(first) == 1
    assert pd.to_datetime(early.iloc[0]["end_hour"], utc=True) == cut

    load_hourly(settings, frame[frame["hour"] >= cut])
    second = _score(settings, refresh_event("r2", cut, fault_hour(47, 0)))
    late = read_anomalies(settings)
    assert second == []
    assert list(late["incident_id"]) == list(early["incident_id"])
    assert pd.to_datetime(late.iloc[0]["start_hour"], utc=True) == pd.to_datetime(
        early.iloc[0]["start_hour"], utc=True
    )
    assert pd.to_datetime(late.iloc[0]["end_hour"], utc=True) > cut + pd.Timedelta(hours=24)
    assert late.iloc[0]["detected_at"] == early.iloc[0]["detected_at"]


def test_score_window_publishes_once_per_new_incident(settings: Settings, fleet: FleetFactory) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    ctx = Ctx(settings, open_publisher(settings))
    event = refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0))
    result = score_window(event, ctx)
    assert result.published == 1
    assert result.devices_scored == 6
    assert result.hours_scored == 6 * 5 * 24
    (sent,) = published(settings)
    assert isinstance(sent, AnomaliesDetected)
    assert sent.incident_id == result.new_incidents[0]
    assert sent.device_id == "dev-2"
    again = score_window(event, ctx)
    assert again.published == 0
    assert again.incidents_written == 0
    assert len(published(settings)) == 1


def test_window_without_data_scores_nothing(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        result = detect_window(refresh_event("r0", START, START + pd.Timedelta(hours=5)), wh, now=NOW)
    assert result.rows.empty
    assert result.new_ids == []


@pytest.mark.parametrize("kind", ["voltage"])
def test_voltage_from_readings_becomes_an_incident(
    settings: Settings, fleet: FleetFactory, kind: str
) -> None:
    frame = fleet()
    load_hourly(settings, frame)
    at = fault_hour(50, 18)
    readings = pd.DataFrame(
        {
            "device_id": "dev-4",
            "reading_at": [at + pd.Timedelta(minutes=m) for m in (0, 15, 30, 45)],
            "hour": at,
            "power_w": 5000.0,
            "voltage": [231.0, 265.0, 232.0, 230.0],
        }
    )
    with open_warehouse(settings) as wh:
        wh.merge("fct_reading", readings, key=["device_id", "reading_at"])
    _score(settings, refresh_event("r1", fault_hour(50, 0), fault_hour(51, 0)))
    rows = read_anomalies(settings)
    assert list(rows["anomaly_type"]) == [kind]
    assert (rows.iloc[0]["expected"], rows.iloc[0]["actual"]) == (230.0, 265.0)
