"""Alerts end to end against a local HTTP receiver: the anomaly service's push routes turn
anomalies-detected / anomalies-withdrawn into signed webhook calls, once per incident, one per
device, quiet at night, retried (honouring Retry-After), and followed up when late data withdraws
the incident."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import functions_framework
import pandas as pd
import pytest
from alert_receiver import SECRET, Receiver, expected_signature, put_incident
from anomaly_fleet import (
    Ctx,
    FleetFactory,
    fault_hour,
    fleet_with_shift,
    load_hourly,
    published,
    published_on,
    read_anomalies,
    refresh_event,
)
from flask.testing import FlaskClient

from services.anomaly import alert_channels
from services.anomaly.alert_channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_alert_settings,
    retry_after_seconds,
)
from services.anomaly.alerts import AlertSettings, deliver_alert, in_quiet_hours
from services.anomaly.scoring import score_window
from shared.bus import open_publisher
from shared.errors import TransientError
from shared.events import AnomaliesDetected, AnomaliesWithdrawn
from shared.settings import REPO_ROOT, SECRET_PLACEHOLDER, Settings
from tests.pushing import authorized, push_envelope

NOW = datetime(2024, 2, 15, 12, tzinfo=UTC)


@pytest.fixture
def receiver(live_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_URL", live_receiver.url)
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "low")
    monkeypatch.setenv("GRIDSIGHT_ALERT_BACKOFF_S", "0.01")
    return live_receiver


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the webhook asks for between attempts (recorded, and really slept when short)."""
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(min(seconds, 0.05))

    monkeypatch.setattr(alert_channels, "_sleep", sleep)
    return asked


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    return authorized(app.test_client(), settings)  # presents the local push token, as the dispatcher does


def _push(
    client: FlaskClient, event: AnomaliesDetected | AnomaliesWithdrawn, message_id: str
) -> tuple[int, str]:
    path = (
        "/pubsub/anomalies-detected"
        if isinstance(event, AnomaliesDetected)
        else "/pubsub/anomalies-withdrawn"
    )
    body = push_envelope(event, message_id=message_id, subscription="anomaly-alerts")
    response = client.post(path, json=body)
    return int(response.status_code), response.get_data(as_text=True)


def _scored_shift(settings: Settings, fleet: FleetFactory) -> AnomaliesDetected:
    load_hourly(settings, fleet_with_shift(fleet))
    score_window(
        refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0)), Ctx(settings, open_publisher(settings))
    )
    (sent,) = published(settings)
    return sent


def _ctx(settings: Settings) -> Ctx:
    return Ctx(settings, open_publisher(settings))


def _row(settings: Settings, incident_id: str) -> pd.Series:
    rows = read_anomalies(settings)
    return rows[rows["incident_id"] == incident_id].iloc[0]


def test_new_incident_reaches_the_webhook_once_signed(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    event = _scored_shift(settings, fleet)
    before = int(time.time())
    assert _push(client, event, "a1")[0] == 204
    assert _push(client, event, "a2")[0] == 204  # redelivered: nothing more is sent
    assert len(receiver.calls) == 1
    (headers, raw) = receiver.calls[0]
    assert headers[SIGNATURE_HEADER] == expected_signature(headers, raw)
    assert before <= int(headers[TIMESTAMP_HEADER]) <= int(time.time())
    assert headers[DELIVERY_HEADER] == f"{event.incident_id}:incident"
    body = receiver.bodies()[0]
    assert (body["type"], body["incident_id"], body["device_id"]) == ("incident", event.incident_id, "dev-2")
    assert body["anomaly_type"] == "level_shift"
    row = _row(settings, event.incident_id)
    assert body["severity"] == row["severity"]
    assert body["energy_at_stake_kwh"] == pytest.approx(row["energy_at_stake_kwh"])
    assert pd.Timestamp(body["start_hour"]) == pd.Timestamp(row["start_hour"])
    assert "alert_status" not in body  # the receiver gets the incident, not our bookkeeping
    assert row["alert_status"] == "sent"
    assert pd.notna(row["alert_webhook_at"])
    assert pd.isna(row["alert_mail_at"])
    # Even the plain function, called again, sends nothing for an alerted incident.
    assert deliver_alert(event, _ctx(settings)).status == "already sent"
    assert len(receiver.calls) == 1


def test_the_documented_verification_snippet_accepts_ours_and_refuses_forgeries(
    settings: Settings, receiver: Receiver
) -> None:
    """The receiver example in alert_channels' docstring (and README "Alerts") is run as written."""
    doc = alert_channels.__doc__ or ""
    snippet = doc[doc.index("    import hashlib") : doc.index("\n\n", doc.index("def verify"))]
    scope: dict[str, object] = {}
    exec(compile(re.sub(r"(?m)^    ", "", snippet), "snippet", "exec"), scope)  # noqa: S102 (our own doc)
    verify = scope["verify"]
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.sub(r"(?m)^    ", "", snippet).strip() in readme  # one example, the same in both places
    deliver_alert(put_incident(settings, "inc-a", detected_at=NOW), _ctx(settings), now=NOW)
    (headers, raw) = receiver.calls[0]
    assert verify(raw, headers, SECRET.encode())  # type: ignore[operator]
    assert not verify(raw.replace(b"dev-2", b"dev-9"), headers, SECRET.encode())  # type: ignore[operator]
    assert not verify(raw, headers, b"another-secret")  # type: ignore[operator]
    old = {**headers, TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) - 600)}
    old[SIGNATURE_HEADER] = expected_signature(old, raw)  # validly signed, but 10 minutes old: a replay
    assert not verify(raw, old, SECRET.encode())  # type: ignore[operator]


def test_one_device_sends_one_alert_in_the_dedupe_window(settings: Settings, receiver: Receiver) -> None:
    first = put_incident(settings, "inc-a", detected_at=NOW - timedelta(hours=1))
    assert deliver_alert(first, _ctx(settings), now=NOW).status == "sent"
    # A second incident of the same device (a flapping meter), detected and delivered 2 h later.
    second = put_incident(settings, "inc-b", detected_at=NOW + timedelta(hours=2), start="2024-02-13 09:00")
    assert deliver_alert(second, _ctx(settings), now=NOW + timedelta(hours=2)).status == "suppressed"
    # Another device is not held back; nor is this one once the 24 h window has passed.
    other = put_incident(settings, "inc-c", detected_at=NOW, device_id="dev-4")
    assert deliver_alert(other, _ctx(settings), now=NOW + timedelta(hours=2)).status == "sent"
    third = put_incident(settings, "inc-d", detected_at=NOW + timedelta(hours=25), start="2024-02-14 09:00")
    assert deliver_alert(third, _ctx(settings), now=NOW + timedelta(hours=25)).status == "sent"
    assert [b["incident_id"] for b in receiver.bodies()] == ["inc-a", "inc-c", "inc-d"]


@pytest.mark.parametrize("order", [("inc-a", "inc-b", "inc-c"), ("inc-c", "inc-b", "inc-a")])
def test_incidents_of_one_device_published_together_send_one_alert_in_any_order(
    settings: Settings, receiver: Receiver, order: tuple[str, ...]
) -> None:
    """A backfill publishes a device's incidents at once and Pub/Sub delivers them in parallel, in
    any order: each undecided rival that comes first (most severe, then earliest detected) holds a
    later one back, so exactly the first of them is sent whichever is delivered first."""
    events = {
        "inc-a": put_incident(settings, "inc-a", severity="medium", detected_at=NOW),
        "inc-b": put_incident(settings, "inc-b", severity="high", detected_at=NOW, start="2024-02-13 09:00"),
        "inc-c": put_incident(settings, "inc-c", severity="high", detected_at=NOW, start="2024-02-14 09:00"),
    }
    outcomes = {i: deliver_alert(events[i], _ctx(settings), now=NOW).status for i in order}
    # inc-b and inc-c are both high and detected together: the smaller id, inc-b, goes first.
    assert outcomes == {"inc-a": "suppressed", "inc-b": "sent", "inc-c": "suppressed"}
    assert [b["incident_id"] for b in receiver.bodies()] == ["inc-b"]


def test_below_the_configured_severity_nothing_is_sent(
    client: FlaskClient, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "high")
    low = put_incident(settings, "inc-a", severity="medium", detected_at=NOW)
    assert _push(client, low, "s1")[0] == 204
    assert _row(settings, "inc-a")["alert_status"] == "below_severity"
    high = put_incident(settings, "inc-b", severity="high", detected_at=NOW, device_id="dev-4")
    assert _push(client, high, "s2")[0] == 204
    assert [b["incident_id"] for b in receiver.bodies()] == ["inc-b"]


def test_quiet_hours_follow_the_local_clock_including_summer_time() -> None:
    """22:00-07:00 in London. By hand: January is GMT (UTC+0), July BST (UTC+1)."""
    cfg = AlertSettings(quiet_start_hour=22, quiet_end_hour=7, quiet_timezone="Europe/London")
    assert in_quiet_hours(datetime(2024, 1, 15, 6, 30, tzinfo=UTC), cfg)  # 06:30 GMT
    assert not in_quiet_hours(datetime(2024, 7, 15, 6, 30, tzinfo=UTC), cfg)  # 07:30 BST
    assert not in_quiet_hours(datetime(2024, 1, 15, 21, 30, tzinfo=UTC), cfg)  # 21:30 GMT
    assert in_quiet_hours(datetime(2024, 7, 15, 21, 30, tzinfo=UTC), cfg)  # 22:30 BST
    day = AlertSettings(quiet_start_hour=12, quiet_end_hour=14, quiet_timezone="Asia/Kolkata")  # UTC+5:30
    assert in_quiet_hours(datetime(2024, 3, 1, 7, 0, tzinfo=UTC), day)  # 12:30 IST
    assert not in_quiet_hours(datetime(2024, 3, 1, 8, 30, tzinfo=UTC), day)  # 14:00 IST, end exclusive


def test_quiet_hours_hold_back_all_but_high(settings: Settings, receiver: Receiver) -> None:
    cfg = AlertSettings(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        min_severity="low",
        quiet_start_hour=22,
        quiet_end_hour=7,
        quiet_timezone="Europe/London",
    )
    night = datetime(2024, 7, 15, 22, 30, tzinfo=UTC)  # 23:30 in London (BST)
    medium = put_incident(settings, "inc-a", severity="medium", detected_at=night)
    high = put_incident(settings, "inc-b", severity="high", detected_at=night, device_id="dev-4")
    assert deliver_alert(medium, _ctx(settings), cfg=cfg, now=night).status == "quiet"
    assert deliver_alert(high, _ctx(settings), cfg=cfg, now=night).status == "sent"
    assert [b["incident_id"] for b in receiver.bodies()] == ["inc-b"]
    assert _row(settings, "inc-a")["alert_status"] == "quiet"


def test_failing_webhook_is_retried_then_left_to_pubsub(
    client: FlaskClient, settings: Settings, receiver: Receiver, waits: list[float]
) -> None:
    event = put_incident(settings, "inc-a", detected_at=NOW)
    receiver.script = [503, 503, 503, 503]  # every one of the 4 attempts fails
    assert _push(client, event, "b1")[0] == 503  # Pub/Sub redelivers, then dead-letters
    assert len(receiver.calls) == 4
    assert waits == [0.01, 0.02, 0.04]  # backoff_s x 2^n between the 4 attempts
    assert _row(settings, "inc-a")["alert_status"] == "pending"  # claimed, not delivered: not "sent"
    receiver.script = [500]  # the next delivery: one failure, then the retry gets through
    assert _push(client, event, "b2")[0] == 204
    assert len(receiver.calls) == 6
    assert _row(settings, "inc-a")["alert_status"] == "sent"
    assert receiver.all_signed()
    assert {h[DELIVERY_HEADER] for h, _ in receiver.calls} == {"inc-a:incident"}  # one dedupe key


def test_retry_after_from_the_receiver_is_honoured(
    client: FlaskClient,
    settings: Settings,
    receiver: Receiver,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """4 attempts, backoff 1 s: our waits would be 1, 2, 4 s (7 s budget). 429 with Retry-After: 3
    waits 3 s, not 1; 503 with Retry-After: 1 keeps our larger 2 s. A Retry-After beyond what is
    left (7 - 3 - 2 = 2 s) ends this delivery at once with 503: Pub/Sub's backoff takes over."""
    monkeypatch.setenv("GRIDSIGHT_ALERT_BACKOFF_S", "1")
    event = put_incident(settings, "inc-a", detected_at=NOW)
    receiver.script = [
        (429, {"Retry-After": "3"}),
        (503, {"Retry-After": "1"}),
        (503, {"Retry-After": "120"}),
    ]
    status, text = _push(client, event, "r1")
    assert status == 503
    assert "Retry-After 120 s exceeds" in text
    assert waits == [3.0, 2.0]
    assert len(receiver.calls) == 3
    assert _push(client, event, "r2")[0] == 204  # the redelivery gets through
    assert len(receiver.calls) == 4


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0  # already past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("45", now) == 45.0


def test_a_receiver_refusing_the_alert_is_not_retried(
    client: FlaskClient, settings: Settings, receiver: Receiver
) -> None:
    event = put_incident(settings, "inc-a", detected_at=NOW)
    receiver.script = [400]
    status, text = _push(client, event, "q1")
    assert status == 400  # Pub/Sub dead-letters it after its attempts; no retry inside the request
    assert "refused the alert: 400" in text
    assert len(receiver.calls) == 1


def test_alert_before_its_incident_row_exists_is_retried(settings: Settings, receiver: Receiver) -> None:
    event = AnomaliesDetected(
        incident_id="nope",
        device_id="d",
        anomaly_type="spike",
        severity="high",
        score=0.9,
        start_hour=datetime(2024, 1, 1, tzinfo=UTC),
        end_hour=datetime(2024, 1, 1, 1, tzinfo=UTC),
        explanation="x",
    )
    with pytest.raises(TransientError, match="not in the warehouse yet"):
        deliver_alert(event, _ctx(settings))
    assert receiver.calls == []


def test_withdrawn_incident_sends_one_follow_up(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    frame = fleet()
    data_end = fault_hour(50, 16)
    frame = frame[frame["hour"] < data_end]
    late = (frame["device_id"] == "dev-3") & frame["hour"].between(fault_hour(50, 6), fault_hour(50, 11))
    ctx = _ctx(settings)
    load_hourly(settings, frame[~late])
    score_window(refresh_event("r1", fault_hour(50, 0), data_end), ctx)
    (dropout,) = published(settings)
    assert _push(client, dropout, "c1")[0] == 204
    load_hourly(settings, frame[late])
    score_window(refresh_event("r2", fault_hour(50, 6), fault_hour(50, 12)), ctx)
    (withdrawn,) = published_on(settings, AnomaliesWithdrawn)
    assert _push(client, withdrawn, "c2")[0] == 204
    assert _push(client, withdrawn, "c3")[0] == 204
    kinds = [b["type"] for b in receiver.bodies()]
    assert kinds == ["incident", "withdrawn"]
    follow = receiver.bodies()[1]
    assert follow["incident_id"] == dropout.incident_id
    assert follow["reason"] == withdrawn.reason
    assert receiver.calls[1][0][DELIVERY_HEADER] == f"{dropout.incident_id}:withdrawn"
    row = _row(settings, dropout.incident_id)
    assert pd.notna(row["followup_sent_at"])
    assert pd.notna(row["followup_webhook_at"])
    assert receiver.all_signed()


def test_a_withdrawn_incident_nobody_was_told_of_sends_nothing(
    client: FlaskClient, settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "high")
    event = put_incident(settings, "inc-a", severity="medium", detected_at=NOW)
    assert _push(client, event, "w1")[0] == 204  # below_severity
    gone = AnomaliesWithdrawn(
        incident_id="inc-a",
        device_id="dev-2",
        anomaly_type="level_shift",
        start_hour=event.start_hour,
        end_hour=event.end_hour,
        withdrawn_at=NOW,
        reason="late data filled the hours",
    )
    assert _push(client, gone, "w2")[0] == 204
    assert receiver.calls == []


def test_without_a_channel_the_incident_says_so(settings: Settings) -> None:
    event = put_incident(settings, "inc-a", detected_at=NOW)
    outcome = deliver_alert(event, _ctx(settings), cfg=AlertSettings(min_severity="low"))
    assert outcome.status == "no_channel"
    assert _row(settings, "inc-a")["alert_status"] == "no_channel"


def test_placeholder_secret_sends_nothing_and_says_why(
    client: FlaskClient,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before a real version is added, Secret Manager serves Terraform's placeholder: a public
    constant anyone could sign with, so no webhook call goes out and the reason is logged and kept."""
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_SECRET", SECRET_PLACEHOLDER)
    event = put_incident(settings, "inc-a", detected_at=NOW)
    with caplog.at_level(logging.WARNING, logger="services.anomaly.alerts"):
        assert _push(client, event, "p1")[0] == 204  # acknowledged: retrying cannot make the secret real
    assert receiver.calls == []
    assert _row(settings, "inc-a")["alert_status"] == "secret_placeholder"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("placeholder" in w and "gcloud secrets versions add" in w for w in warnings)
    assert _push(client, event, "p2")[0] == 204  # redelivered: still nothing sent
    assert receiver.calls == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRIDSIGHT_ALERT_QUIET_TIMEZONE", "Europe/Londn", "unknown IANA time zone 'Europe/Londn'"),
        ("GRIDSIGHT_ALERT_QUIET_START_HOUR", "24", "quiet_start_hour: Value error, a quiet hour is a whole"),
        ("GRIDSIGHT_ALERT_MIN_SEVERITY", "urgent", "min_severity: Input should be 'low', 'medium' or 'high'"),
        ("GRIDSIGHT_ALERT_SMTP_SECURITY", "ssl", "smtp_security: Input should be"),
    ],
)
def test_bad_alert_settings_are_one_plain_line(
    client: FlaskClient,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    if name == "GRIDSIGHT_ALERT_QUIET_START_HOUR":
        monkeypatch.setenv("GRIDSIGHT_ALERT_QUIET_END_HOUR", "7")
    with pytest.raises(TransientError, match=re.escape(message)) as caught:
        load_alert_settings()
    assert "\n" not in str(caught.value)
    event = put_incident(settings, "inc-a", detected_at=NOW)
    status, text = _push(client, event, "x1")
    assert status == 503  # redelivered until the configuration is fixed, then dead-lettered
    assert message in text
    assert "Traceback" not in text
    assert receiver.calls == []


def test_a_login_over_plain_smtp_is_refused_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_USERNAME", "ops")
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_SECURITY", "none")
    with pytest.raises(TransientError, match="would send the password in clear"):
        load_alert_settings()
    monkeypatch.setenv("GRIDSIGHT_ALERT_QUIET_START_HOUR", "22")
    monkeypatch.delenv("GRIDSIGHT_ALERT_SMTP_USERNAME")
    with pytest.raises(TransientError, match="set together or not at all"):
        load_alert_settings()
