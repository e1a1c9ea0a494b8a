"""The service path on the embedded DuckDB warehouse: window scoring, idempotent MERGE into
`anomalies`, one row per ongoing incident, one AnomaliesDetected per new incident."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import START, FleetFactory, fault_hour

from services.anomaly.scoring import detect_window, score_window, write_incidents
from shared.events import AnomaliesDetected, Event, FeaturesRefreshed
from shared.settings import Settings
from shared.warehouse import open_warehouse

SHIFT_START = fault_hour(43, 9)
SHIFT_END = fault_hour(45, 9)
NOW = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class RecordingPublisher:
    """Stands in for the bus: the scoring code only calls `publish`."""

    sent: list[Event] = field(default_factory=list)

    def publish(self, event: Event, *, correlation_id: str | None = None) -> str:
        self.sent.append(event)
        return f"m{len(self.sent)}"

    def close(self) -> None:
        return None


@dataclass
class Ctx:
    settings: Settings
    publisher: RecordingPublisher
    correlation_id: str | None = "corr-1"


def _fleet_with_shift(fleet: FleetFactory) -> pd.DataFrame:
    frame = fleet()
    shifted = (frame["device_id"] == "dev-2") & (frame["hour"] >= SHIFT_START) & (frame["hour"] < SHIFT_END)
    frame.loc[shifted, "energy_kwh"] *= 1.7
    return frame


def _load(settings: Settings, frame: pd.DataFrame) -> None:
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


def _event(refresh_id: str, start: pd.Timestamp, end: pd.Timestamp) -> FeaturesRefreshed:
    return FeaturesRefreshed(
        refresh_id=refresh_id,
        window_start=start.to_pydatetime(),
        window_end=end.to_pydatetime(),
        device_ids=[f"dev-{i}" for i in range(6)],
    )


def _anomalies(settings: Settings) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        rows = wh.query_df("SELECT * FROM energy_analytics.anomalies ORDER BY incident_id")
    return rows


def _score(settings: Settings, event: FeaturesRefreshed) -> list[str]:
    with open_warehouse(settings) as wh:
        incidents = detect_window(event, wh, now=NOW)
        write_incidents(wh, incidents)
    return incidents.new_ids


def test_window_scoring_writes_one_incident_row(settings: Settings, fleet: FleetFactory) -> None:
    _load(settings, _fleet_with_shift(fleet))
    new = _score(settings, _event("r1", fault_hour(42, 0), fault_hour(47, 0)))
    rows = _anomalies(settings)
    assert len(rows) == 1
    assert new == list(rows["incident_id"])
    row = rows.iloc[0]
    assert (row["device_id"], row["anomaly_type"]) == ("dev-2", "level_shift")
    assert pd.to_datetime(row["start_hour"], utc=True) == SHIFT_START
    assert pd.to_datetime(row["end_hour"], utc=True) >= SHIFT_END - pd.Timedelta(hours=2)
    assert row["severity"] in {"low", "medium", "high", "critical"}
    assert row["actual"] > row["expected"]
    assert row["explanation"].startswith("Consumption has stayed at a different level")


def test_redelivered_event_leaves_anomalies_unchanged(settings: Settings, fleet: FleetFactory) -> None:
    _load(settings, _fleet_with_shift(fleet))
    event = _event("r1", fault_hour(42, 0), fault_hour(47, 0))
    assert len(_score(settings, event)) == 1
    before = _anomalies(settings)
    assert _score(settings, event) == []
    pd.testing.assert_frame_equal(_anomalies(settings), before)


def test_ongoing_incident_updates_its_one_row(settings: Settings, fleet: FleetFactory) -> None:
    frame = _fleet_with_shift(fleet)
    cut = fault_hour(44, 3)  # the shift is still going on when the first window ends
    _load(settings, frame[frame["hour"] < cut])
    first = _score(settings, _event("r1", fault_hour(43, 0), cut))
    early = _anomalies(settings)
    assert len(early) == 1
    assert len(first) == 1
    assert pd.to_datetime(early.iloc[0]["end_hour"], utc=True) == cut

    _load(settings, frame[frame["hour"] >= cut])
    second = _score(settings, _event("r2", cut, fault_hour(47, 0)))
    late = _anomalies(settings)
    assert second == []
    assert list(late["incident_id"]) == list(early["incident_id"])
    assert pd.to_datetime(late.iloc[0]["start_hour"], utc=True) == SHIFT_START
    assert pd.to_datetime(late.iloc[0]["end_hour"], utc=True) > cut + pd.Timedelta(hours=24)
    assert late.iloc[0]["detected_at"] == early.iloc[0]["detected_at"]


def test_score_window_publishes_once_per_new_incident(settings: Settings, fleet: FleetFactory) -> None:
    _load(settings, _fleet_with_shift(fleet))
    ctx = Ctx(settings, RecordingPublisher())
    event = _event("r1", fault_hour(42, 0), fault_hour(47, 0))
    result = score_window(event, ctx)
    assert result.published == 1
    assert result.devices_scored == 6
    assert result.hours_scored == 6 * 5 * 24
    (sent,) = ctx.publisher.sent
    assert isinstance(sent, AnomaliesDetected)
    assert sent.incident_id == result.new_incidents[0]
    assert sent.device_id == "dev-2"
    again = score_window(event, ctx)
    assert again.published == 0
    assert again.incidents_written == 0
    assert len(ctx.publisher.sent) == 1


def test_window_without_data_scores_nothing(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        result = detect_window(_event("r0", START, START + pd.Timedelta(hours=5)), wh, now=NOW)
    assert result.rows.empty
    assert result.new_ids == []


@pytest.mark.parametrize("kind", ["voltage"])
def test_voltage_from_readings_becomes_an_incident(
    settings: Settings, fleet: FleetFactory, kind: str
) -> None:
    frame = fleet()
    _load(settings, frame)
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
    _score(settings, _event("r1", fault_hour(50, 0), fault_hour(51, 0)))
    rows = _anomalies(settings)
    assert list(rows["anomaly_type"]) == [kind]
    assert (rows.iloc[0]["expected"], rows.iloc[0]["actual"]) == (230.0, 265.0)
