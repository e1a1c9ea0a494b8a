"""Alerts held in quiet hours go out after them, and an incident that escalates past the alerting
floor is alerted: end to end against the local receiver, times chosen through `now`."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from alert_receiver import SECRET, Receiver, put_incident
from anomaly_fleet import Ctx, published, read_anomalies

from services.anomaly.alerts import AlertSettings, deliver_alert
from services.anomaly.scoring import WindowIncidents, _reconcile, publish_new, release_quiet_alerts
from shared.bus import open_publisher
from shared.errors import TransientError
from shared.events import AnomaliesDetected
from shared.settings import Settings
from shared.warehouse import open_warehouse

# 23:30 and 07:30 in London in July (BST = UTC+1); quiet hours 22:00-07:00 local.
NIGHT = datetime(2024, 7, 15, 22, 30, tzinfo=UTC)
MORNING = datetime(2024, 7, 16, 6, 30, tzinfo=UTC)


def _cfg(receiver: Receiver, min_severity: str = "low") -> AlertSettings:
    return AlertSettings(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        min_severity=min_severity,  # type: ignore[arg-type]
        quiet_start_hour=22,
        quiet_end_hour=7,
        quiet_timezone="Europe/London",
    )


def _release(settings: Settings, cfg: AlertSettings, now: datetime) -> list[AnomaliesDetected]:
    """Run the release as a scoring push does; return what it announced."""
    before = len(published(settings))
    publisher = open_publisher(settings)
    try:
        with open_warehouse(settings) as wh:
            count = release_quiet_alerts(wh, publisher, now, None, cfg)
    finally:
        publisher.close()
    announced = published(settings)[before:]
    assert len(announced) == count
    return announced


def _status(settings: Settings, incident_id: str) -> str:
    rows = read_anomalies(settings)
    return str(rows.loc[rows["incident_id"] == incident_id, "alert_status"].iloc[0])


def test_a_quiet_alert_is_sent_once_after_quiet_hours(settings: Settings, live_receiver: Receiver) -> None:
    cfg = _cfg(live_receiver)
    ctx = Ctx(settings, open_publisher(settings))
    held = put_incident(settings, "inc-a", severity="medium", detected_at=NIGHT)
    assert deliver_alert(held, ctx, cfg=cfg, now=NIGHT).status == "quiet"
    assert _release(settings, cfg, NIGHT) == []  # still night: nothing announced
    assert live_receiver.calls == []

    (released,) = _release(settings, cfg, MORNING)
    assert (released.incident_id, released.reason) == ("inc-a", "released")
    assert released.dedupe_key() == "inc-a/released/2024-07-16T06"
    assert deliver_alert(released, ctx, cfg=cfg, now=MORNING).status == "sent"
    assert [b["incident_id"] for b in live_receiver.bodies()] == ["inc-a"]
    assert _status(settings, "inc-a") == "sent"

    # The next push (15 minutes later) finds nothing held; a redelivery of the release sends nothing.
    assert _release(settings, cfg, MORNING.replace(minute=45)) == []
    assert deliver_alert(released, ctx, cfg=cfg, now=MORNING).status == "already sent"
    assert len(live_receiver.calls) == 1


@pytest.mark.parametrize("reverse", [False, True])
def test_several_quiet_alerts_of_one_device_send_one_and_withdrawn_ones_none(
    settings: Settings, live_receiver: Receiver, reverse: bool
) -> None:
    """Released together and delivered in either order, the device's first incident (most severe,
    then earliest, then smallest id) is its one alert."""
    cfg = _cfg(live_receiver)
    ctx = Ctx(settings, open_publisher(settings))
    low = put_incident(settings, "inc-a", severity="low", detected_at=NIGHT)
    assert deliver_alert(low, ctx, cfg=cfg, now=NIGHT).status == "quiet"
    # later that night a more severe one on the same meter: it goes first, so it is held too
    medium = put_incident(settings, "inc-b", severity="medium", detected_at=NIGHT, start="2024-02-13 09:00")
    assert deliver_alert(medium, ctx, cfg=cfg, now=NIGHT).status == "quiet"
    # a less severe one after it is simply suppressed: the held medium will be this meter's alert
    later = put_incident(settings, "inc-c", severity="low", detected_at=NIGHT, start="2024-02-14 09:00")
    assert deliver_alert(later, ctx, cfg=cfg, now=NIGHT).status == "suppressed"
    other = put_incident(settings, "inc-d", severity="medium", detected_at=NIGHT, device_id="dev-4")
    assert deliver_alert(other, ctx, cfg=cfg, now=NIGHT).status == "quiet"
    with open_warehouse(settings) as wh:  # late data withdrew dev-4's incident overnight
        withdrawn = pd.DataFrame([{"incident_id": "inc-d", "status": "withdrawn"}])
        wh.merge("anomalies", withdrawn, key=["incident_id"])

    released = _release(settings, cfg, MORNING)
    assert sorted(e.incident_id for e in released) == ["inc-a", "inc-b"]
    order = sorted(released, key=lambda e: e.incident_id, reverse=reverse)
    outcomes = {e.incident_id: deliver_alert(e, ctx, cfg=cfg, now=MORNING).status for e in order}
    assert outcomes == {"inc-a": "suppressed", "inc-b": "sent"}
    assert [b["incident_id"] for b in live_receiver.bodies()] == ["inc-b"]
    assert _status(settings, "inc-d") == "quiet"  # withdrawn: never released
    assert _release(settings, cfg, MORNING.replace(minute=15)) == []


def test_an_incident_that_escalates_past_the_floor_is_alerted_once(
    settings: Settings, live_receiver: Receiver
) -> None:
    cfg = _cfg(live_receiver, min_severity="high")
    ctx = Ctx(settings, open_publisher(settings))
    noon = datetime(2024, 7, 15, 11, tzinfo=UTC)
    first = put_incident(settings, "inc-a", severity="medium", detected_at=noon)
    assert deliver_alert(first, ctx, cfg=cfg, now=noon).status == "below_severity"
    # A redelivery of the first announcement changes nothing.
    assert deliver_alert(first, ctx, cfg=cfg, now=noon).status == "already below_severity"

    escalated = first.model_copy(update={"severity": "high", "reason": "escalated"})
    # Announced before the scoring MERGE wrote the new severity: retried, not decided on stale data.
    with pytest.raises(TransientError):
        deliver_alert(escalated, ctx, cfg=cfg, now=noon)
    put_incident(settings, "inc-a", severity="high", detected_at=noon)
    assert deliver_alert(escalated, ctx, cfg=cfg, now=noon).status == "sent"
    assert [(b["incident_id"], b["severity"]) for b in live_receiver.bodies()] == [("inc-a", "high")]
    assert deliver_alert(escalated, ctx, cfg=cfg, now=noon).status == "already sent"
    assert len(live_receiver.calls) == 1
    assert escalated.dedupe_key() == "inc-a/escalated/high" != first.dedupe_key()


def test_scoring_announces_escalated_incidents_with_their_reason(settings: Settings) -> None:
    row = {
        "incident_id": "inc-a",
        "device_id": "dev-2",
        "anomaly_type": "level_shift",
        "severity": "high",
        "score": 0.95,
        "start_hour": pd.Timestamp("2024-02-12 09:00", tz="UTC"),
        "end_hour": pd.Timestamp("2024-02-12 15:00", tz="UTC"),
        "explanation": "level shift",
    }
    new = {**row, "incident_id": "inc-b", "severity": "low"}
    incidents = WindowIncidents(
        rows=pd.DataFrame([row, new]),
        new_ids=["inc-b"],
        escalated_ids=["inc-a"],
        devices_scored=1,
        hours_scored=6,
    )
    publisher = open_publisher(settings)
    try:
        assert publish_new(incidents, publisher, None) == 2
    finally:
        publisher.close()
    assert sorted((e.incident_id, e.reason, e.severity) for e in published(settings)) == [
        ("inc-a", "escalated", "high"),
        ("inc-b", "new", "low"),
    ]


def test_invalid_alert_settings_skip_the_release_without_failing_the_scoring_push(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken GRIDSIGHT_ALERT_* setting is the alert route's 503 to report; the scoring push that
    runs the release must not fail (and roll back its incidents) because of it."""
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "loud")
    put_incident(settings, "inc-a", severity="medium", detected_at=NIGHT)
    publisher = open_publisher(settings)
    try:
        with open_warehouse(settings) as wh:
            assert release_quiet_alerts(wh, publisher, MORNING, None) == 0
    finally:
        publisher.close()


def _incident_row(incident_id: str, severity: str, score: float, start: str, hours: int) -> dict[str, object]:
    begin = pd.Timestamp(start, tz="UTC")
    return {
        "incident_id": incident_id,
        "device_id": "dev-2",
        "start_hour": begin,
        "end_hour": begin + pd.Timedelta(hours=hours),
        "anomaly_type": "level_shift",
        "severity": severity,
        "score": score,
        "expected": 10.0,
        "actual": 17.0,
        "explanation": "level shift",
        "probability": 0.8,
        "energy_at_stake_kwh": 7.0 * hours,
        "cost_at_stake": 2.1 * hours,
        "hours_flagged": hours,
    }


@pytest.mark.parametrize(
    ("severity", "score", "escalated"),
    [("high", 0.95, ["inc-a"]), ("medium", 0.95, []), ("high", 0.5, [])],
)
def test_an_incident_going_on_at_a_higher_severity_is_escalated(
    severity: str, score: float, escalated: list[str]
) -> None:
    """Stored: inc-a, medium at score 0.9, 09:00-12:00. Found again running to 15:00: at a higher
    severity and score it escalates; at the same severity, or with a lower score (the stored worst
    moment stays the headline, severity included), it does not."""
    stored = _incident_row("inc-a", "medium", 0.9, "2024-02-12 09:00", 3)
    stored |= {"detected_at": pd.Timestamp("2024-02-12 12:00", tz="UTC"), "status": "open"}
    found = pd.DataFrame([_incident_row("inc-new", severity, score, "2024-02-12 09:00", 6)])
    rows, new_ids, ups = _reconcile(found, pd.DataFrame([stored]), NIGHT, taken=set())
    assert (new_ids, ups) == ([], escalated)
    assert list(rows["incident_id"]) == ["inc-a"]
