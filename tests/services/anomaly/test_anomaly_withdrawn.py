"""Late data (issue 12, item 4): a 6-hourly backlog device's missing hours are flagged as a
dropout once the fleet is 3 h past them; when the backlog lands the incident is withdrawn (kept,
status 'withdrawn'), AnomaliesWithdrawn is published once, and no redelivery brings it back."""

from __future__ import annotations

import pandas as pd
from anomaly_fleet import (
    Ctx,
    FleetFactory,
    fault_hour,
    load_hourly,
    published,
    published_on,
    read_anomalies,
    refresh_event,
)

from services.anomaly.scoring import score_window
from shared.bus import open_publisher
from shared.events import AnomaliesWithdrawn
from shared.settings import Settings
from shared.warehouse import open_warehouse

BACKLOG_START = fault_hour(50, 6)
BACKLOG_END = fault_hour(50, 12)  # six hours the device uploads late, in one go
DATA_END = fault_hour(50, 16)  # the rest of the fleet is four hours past the backlog


def _backlog_fleet(fleet: FleetFactory) -> tuple[pd.DataFrame, pd.Series]:
    frame = fleet()
    frame = frame[frame["hour"] < DATA_END]
    late = (frame["device_id"] == "dev-3") & (frame["hour"] >= BACKLOG_START) & (frame["hour"] < BACKLOG_END)
    return frame, late


def test_backlog_landing_withdraws_the_dropout_once_and_for_good(
    settings: Settings, fleet: FleetFactory
) -> None:
    frame, late = _backlog_fleet(fleet)
    ctx = Ctx(settings, open_publisher(settings))
    load_hourly(settings, frame[~late])
    first = refresh_event("r1", fault_hour(50, 0), DATA_END)
    flagged = score_window(first, ctx)
    rows = read_anomalies(settings)
    assert list(rows["anomaly_type"]) == ["dropout"]
    dropout = rows.iloc[0]
    assert dropout["device_id"] == "dev-3"
    assert pd.to_datetime(dropout["start_hour"], utc=True) == BACKLOG_START
    assert pd.to_datetime(dropout["end_hour"], utc=True) == BACKLOG_END
    assert dropout["status"] == "open"
    assert flagged.new_incidents == [dropout["incident_id"]]

    load_hourly(settings, frame[late])  # the backlog lands
    backlog = refresh_event("r2", BACKLOG_START, BACKLOG_END)
    result = score_window(backlog, ctx)
    assert result.withdrawn_incidents == [dropout["incident_id"]]
    assert result.new_incidents == []
    after = read_anomalies(settings)
    assert len(after) == 1  # kept for audit, not deleted
    row = after.iloc[0]
    assert row["incident_id"] == dropout["incident_id"]
    assert row["status"] == "withdrawn"
    assert pd.notna(row["withdrawn_at"])
    assert row["detected_at"] == dropout["detected_at"]
    (sent,) = published_on(settings, AnomaliesWithdrawn)
    assert sent.incident_id == dropout["incident_id"]
    assert (sent.start_hour, sent.end_hour) == (BACKLOG_START, BACKLOG_END)

    # Redelivery of either event, or a later window, changes nothing and publishes nothing.
    for event in (backlog, first, refresh_event("r3", fault_hour(50, 0), DATA_END)):
        again = score_window(event, ctx)
        assert again.withdrawn_incidents == []
        assert again.new_incidents == []
        pd.testing.assert_frame_equal(read_anomalies(settings), after)
    assert len(published_on(settings, AnomaliesWithdrawn)) == 1
    assert len(published(settings)) == 1


def test_zero_readings_in_the_backlog_keep_the_dropout_open(settings: Settings, fleet: FleetFactory) -> None:
    frame, late = _backlog_fleet(fleet)
    ctx = Ctx(settings, open_publisher(settings))
    load_hourly(settings, frame[~late])
    score_window(refresh_event("r1", fault_hour(50, 0), DATA_END), ctx)
    zeros = frame[late].assign(energy_kwh=0.0)  # the late upload is empty: still no data
    load_hourly(settings, zeros)
    result = score_window(refresh_event("r2", BACKLOG_START, BACKLOG_END), ctx)
    assert result.withdrawn_incidents == []
    rows = read_anomalies(settings)
    assert list(rows["status"]) == ["open"]
    assert published_on(settings, AnomaliesWithdrawn) == []


def test_withdrawn_incident_is_not_shown_by_the_device_plot_query(
    settings: Settings, fleet: FleetFactory
) -> None:
    from services.anomaly.scoring import device_view

    frame, late = _backlog_fleet(fleet)
    ctx = Ctx(settings, open_publisher(settings))
    load_hourly(settings, frame[~late])
    score_window(refresh_event("r1", fault_hour(50, 0), DATA_END), ctx)
    with open_warehouse(settings) as wh:
        _, before = device_view(
            wh, "dev-3", start=fault_hour(49, 0).to_pydatetime(), end=DATA_END.to_pydatetime()
        )
    load_hourly(settings, frame[late])
    score_window(refresh_event("r2", BACKLOG_START, BACKLOG_END), ctx)
    with open_warehouse(settings) as wh:
        _, after = device_view(
            wh, "dev-3", start=fault_hour(49, 0).to_pydatetime(), end=DATA_END.to_pydatetime()
        )
    assert list(before["anomaly_type"]) == ["dropout"]
    assert after.empty


def test_dashboard_stops_listing_the_withdrawn_incident_as_open(
    settings: Settings, fleet: FleetFactory
) -> None:
    from services.chat.dashboard.data import device_detail, fleet_overview

    frame, late = _backlog_fleet(fleet)
    ctx = Ctx(settings, open_publisher(settings))
    load_hourly(settings, frame[~late])
    score_window(refresh_event("r1", fault_hour(50, 0), DATA_END), ctx)
    with open_warehouse(settings) as wh:
        assert [i.anomaly_type for i in fleet_overview(wh).open_incidents] == ["dropout"]
    load_hourly(settings, frame[late])
    score_window(refresh_event("r2", BACKLOG_START, BACKLOG_END), ctx)
    with open_warehouse(settings) as wh:
        assert fleet_overview(wh).open_incidents == []
        assert device_detail(wh, "dev-3").anomalies == []
