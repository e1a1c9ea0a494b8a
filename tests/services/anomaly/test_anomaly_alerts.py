"""Alerts end to end against a local HTTP receiver: the anomaly service's push routes turn
anomalies-detected / anomalies-withdrawn into signed webhook calls, once per incident, one per
device, quiet at night, retried, and followed up when late data withdraws the incident."""

from __future__ import annotations

import hashlib
import hmac
import json
import socketserver
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import functions_framework
import pandas as pd
import pytest
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

from services.anomaly.alerts import SIGNATURE_HEADER, AlertSettings, deliver_alert
from services.anomaly.scoring import score_window
from shared.bus import open_publisher
from shared.errors import TransientError
from shared.events import AnomaliesDetected, AnomaliesWithdrawn
from shared.settings import REPO_ROOT, Settings
from tests.pushing import authorized, push_envelope

SECRET = "test-alert-secret"


class Receiver:
    """A local webhook endpoint: records each POST; answers with the next scripted status."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(receiver.script.pop(0) if receiver.script else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.calls]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_URL", r.url)
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "low")
    monkeypatch.setenv("GRIDSIGHT_ALERT_BACKOFF_S", "0.01")
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    return authorized(app.test_client(), settings)  # the push token the dispatcher presents


def _push(client: FlaskClient, event: AnomaliesDetected | AnomaliesWithdrawn, message_id: str) -> int:
    path = (
        "/pubsub/anomalies-detected"
        if isinstance(event, AnomaliesDetected)
        else "/pubsub/anomalies-withdrawn"
    )
    body = push_envelope(event, message_id=message_id, subscription="anomaly-alerts")
    return int(client.post(path, json=body).status_code)


def _scored_shift(settings: Settings, fleet: FleetFactory) -> AnomaliesDetected:
    load_hourly(settings, fleet_with_shift(fleet))
    score_window(
        refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0)), Ctx(settings, open_publisher(settings))
    )
    (sent,) = published(settings)
    return sent


def test_new_incident_reaches_the_webhook_once_signed(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    event = _scored_shift(settings, fleet)
    assert _push(client, event, "a1") == 204
    assert _push(client, event, "a2") == 204  # redelivered: nothing more is sent
    (headers, raw) = receiver.calls[0]
    assert len(receiver.calls) == 1
    expected_sig = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected_sig
    body = json.loads(raw)
    assert (body["type"], body["incident_id"], body["device_id"]) == ("incident", event.incident_id, "dev-2")
    assert body["anomaly_type"] == "level_shift"
    row = read_anomalies(settings).iloc[0]
    assert row["alert_status"] == "sent"
    # Even the plain function, called again, sends nothing for an alerted incident.
    again = deliver_alert(event, Ctx(settings, open_publisher(settings)))
    assert again.status == "already sent"
    assert len(receiver.calls) == 1


def test_one_device_sends_one_alert_in_the_dedupe_window(
    settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    first = _scored_shift(settings, fleet)
    ctx = Ctx(settings, open_publisher(settings))
    now = datetime(2024, 2, 15, 12, tzinfo=UTC)
    assert deliver_alert(first, ctx, now=now).status == "sent"
    # A second incident of the same device (a flapping meter) two hours later.
    later = fault_hour(46, 0)
    row = (
        read_anomalies(settings)
        .iloc[[0]]
        .assign(
            incident_id="second", start_hour=later, end_hour=later + pd.Timedelta(hours=3), alert_status=None
        )
    )
    from shared.warehouse import open_warehouse

    with open_warehouse(settings) as wh:
        wh.merge("anomalies", row, key=["incident_id"])
    second = first.model_copy(update={"incident_id": "second"})
    assert deliver_alert(second, ctx, now=now + pd.Timedelta(hours=2)).status == "suppressed"
    assert len(receiver.calls) == 1


def test_quiet_hours_hold_back_all_but_high(
    settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    event = _scored_shift(settings, fleet)
    ctx = Ctx(settings, open_publisher(settings))
    cfg = AlertSettings(quiet_start_hour=22, quiet_end_hour=7, quiet_timezone="Europe/London")
    severity = read_anomalies(settings).iloc[0]["severity"]
    night = datetime(2024, 2, 15, 23, 30, tzinfo=UTC)  # 23:30 in London (GMT in February)
    outcome = deliver_alert(event, ctx, cfg=cfg, now=night)
    assert outcome.status == ("sent" if severity == "high" else "quiet")
    assert len(receiver.calls) == (1 if severity == "high" else 0)


def test_failing_webhook_is_retried_then_left_to_pubsub(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    event = _scored_shift(settings, fleet)
    receiver.script = [503, 503, 503, 503]  # every one of the 4 attempts fails
    assert _push(client, event, "b1") == 503  # Pub/Sub redelivers, then dead-letters
    assert len(receiver.calls) == 4
    assert pd.isna(read_anomalies(settings).iloc[0]["alert_status"])
    receiver.script = [500]  # the next delivery: one failure, then the retry gets through
    assert _push(client, event, "b2") == 204
    assert len(receiver.calls) == 6
    assert read_anomalies(settings).iloc[0]["alert_status"] == "sent"


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
        deliver_alert(event, Ctx(settings, open_publisher(settings)))
    assert receiver.calls == []


def test_withdrawn_incident_sends_one_follow_up(
    client: FlaskClient, settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    frame = fleet()
    data_end = fault_hour(50, 16)
    frame = frame[frame["hour"] < data_end]
    late = (frame["device_id"] == "dev-3") & frame["hour"].between(fault_hour(50, 6), fault_hour(50, 11))
    ctx = Ctx(settings, open_publisher(settings))
    load_hourly(settings, frame[~late])
    score_window(refresh_event("r1", fault_hour(50, 0), data_end), ctx)
    (dropout,) = published(settings)
    assert _push(client, dropout, "c1") == 204
    load_hourly(settings, frame[late])
    score_window(refresh_event("r2", fault_hour(50, 6), fault_hour(50, 12)), ctx)
    (withdrawn,) = published_on(settings, AnomaliesWithdrawn)
    assert _push(client, withdrawn, "c2") == 204
    assert _push(client, withdrawn, "c3") == 204
    kinds = [b["type"] for b in receiver.bodies()]
    assert kinds == ["incident", "withdrawn"]
    assert receiver.bodies()[1]["incident_id"] == dropout.incident_id
    assert pd.notna(read_anomalies(settings).iloc[0]["followup_sent_at"])


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib to hand over one message."""

    def handle(self) -> None:
        self.wfile.write(b"220 test\r\n")
        while line := self.rfile.readline():
            verb = line.strip().split(b" ")[0].upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.messages.append(data)  # type: ignore[attr-defined]
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_alert_also_goes_by_email_through_the_relay(
    settings: Settings, fleet: FleetFactory, receiver: Receiver
) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        event = _scored_shift(settings, fleet)
        cfg = AlertSettings(
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            min_severity="low",
            smtp_host="127.0.0.1",
            smtp_port=server.server_address[1],
            mail_to="ops@example.org",
        )
        assert deliver_alert(event, Ctx(settings, open_publisher(settings)), cfg=cfg).status == "sent"
    finally:
        server.shutdown()
        server.server_close()
    (mail,) = server.messages  # type: ignore[attr-defined]
    text = mail.decode()
    assert "To: ops@example.org" in text
    assert "level_shift on dev-2" in text
    assert "kWh" in text  # the explanation keeps expected vs actual with units
    assert len(receiver.calls) == 1


def test_without_a_channel_the_incident_says_so(settings: Settings, fleet: FleetFactory) -> None:
    event = _scored_shift(settings, fleet)
    outcome = deliver_alert(
        event, Ctx(settings, open_publisher(settings)), cfg=AlertSettings(min_severity="low")
    )
    assert outcome.status == "no_channel"
    assert read_anomalies(settings).iloc[0]["alert_status"] == "no_channel"
