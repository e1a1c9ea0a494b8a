"""Alert e-mail through a real relay (aiosmtpd, tests/services/anomaly/smtp_relay.py): STARTTLS
with a verified certificate, AUTH with the password, implicit TLS, and the failures an operator
must be told about plainly (wrong password, relay without STARTTLS, untrusted certificate),
driven through the anomaly service's push route as Pub/Sub would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import functions_framework
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from alert_receiver import SECRET, Receiver, put_incident
from anomaly_fleet import read_anomalies
from flask.testing import FlaskClient
from smtp_relay import PASSWORD, USER, Relay, start_relay

from shared.events import AnomaliesDetected, AnomaliesWithdrawn
from shared.settings import REPO_ROOT, SECRET_PLACEHOLDER, Settings
from tests.pushing import authorized, push_envelope

NOW = datetime(2024, 2, 15, 12, tzinfo=UTC)
# The relays without STARTTLS accept AUTH in clear on purpose (aiosmtpd warns): the client must refuse.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "tls"
    folder.mkdir()
    return folder


@pytest.fixture
def relays() -> Iterator[list[Controller]]:
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


@pytest.fixture
def mail_env(monkeypatch: pytest.MonkeyPatch, certs: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "low")
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GRIDSIGHT_ALERT_MAIL_TO", "ops@example.org, energy@example.org")
    monkeypatch.setenv("GRIDSIGHT_ALERT_MAIL_FROM", "gridsight@example.org")
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_USERNAME", USER)
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_CA_FILE", str(certs / "ca.pem"))
    monkeypatch.setenv("GRIDSIGHT_ALERT_SMTP_PORT", "587")  # STARTTLS-style submission port
    monkeypatch.setenv("GRIDSIGHT_ALERT_TIMEOUT_S", "5")
    return monkeypatch


def _relay(certs: Path, relays: list[Controller], env: pytest.MonkeyPatch, **kwargs: bool) -> Relay:
    relay, controller = start_relay(certs, **kwargs)
    relays.append(controller)
    env.setenv("GRIDSIGHT_ALERT_SMTP_PORT", str(relay.port))
    return relay


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    return authorized(app.test_client(), settings)


def _push(
    client: FlaskClient, event: AnomaliesDetected | AnomaliesWithdrawn, message_id: str
) -> tuple[int, str]:
    path = (
        "/pubsub/anomalies-detected"
        if isinstance(event, AnomaliesDetected)
        else "/pubsub/anomalies-withdrawn"
    )
    response = client.post(
        path, json=push_envelope(event, message_id=message_id, subscription="anomaly-alerts")
    )
    return int(response.status_code), response.get_data(as_text=True)


def _row(settings: Settings, incident_id: str) -> pd.Series:
    rows = read_anomalies(settings)
    return rows[rows["incident_id"] == incident_id].iloc[0]


def test_login_over_starttls_delivers_the_alert_and_its_follow_up(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env)
    event = put_incident(settings, "inc-a", severity="high", detected_at=NOW)
    assert _push(client, event, "m1")[0] == 204
    assert relay.logins == [(USER, True)]  # the password crossed only the encrypted connection
    [(mail, tls, authenticated)] = relay.messages
    assert (tls, authenticated) == (True, True)
    assert mail["Subject"] == "[gridsight] high level_shift on dev-2"
    assert (mail["From"], mail["To"]) == ("gridsight@example.org", "ops@example.org, energy@example.org")
    body = mail.get_payload(decode=True).decode()
    # put_incident's row, by hand: 17.0 vs 10.0 kWh/h, probability 0.8, 21.0 kWh and 6.30 at stake
    assert "level shift: 17.0 kWh/h against 10.0 kWh/h expected" in body
    assert "Estimated probability of a real fault: 80%." in body
    assert "21.0 kWh at stake (cost 6.30)." in body
    assert "From 2024-02-12 09:00:00+00:00 to 2024-02-12 12:00:00+00:00 (UTC); severity high." in body
    assert "Incident inc-a." in body
    row = _row(settings, "inc-a")
    assert row["alert_status"] == "sent"
    assert pd.notna(row["alert_mail_at"])
    assert pd.isna(row["alert_webhook_at"])  # no webhook configured

    gone = AnomaliesWithdrawn(
        incident_id="inc-a",
        device_id="dev-2",
        anomaly_type="level_shift",
        start_hour=event.start_hour,
        end_hour=event.end_hour,
        withdrawn_at=NOW,
        reason="late data filled the hours it was raised on",
    )
    assert _push(client, gone, "m2")[0] == 204
    assert _push(client, gone, "m3")[0] == 204  # redelivered: one follow-up
    assert len(relay.messages) == 2
    follow = relay.mails()[1]
    assert follow["Subject"] == "[gridsight] withdrawn: level_shift on dev-2"
    assert "late data filled the hours" in follow.get_payload(decode=True).decode()


def test_implicit_tls_on_an_smtps_relay(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env, starttls=False, implicit_tls=True)
    mail_env.setenv("GRIDSIGHT_ALERT_SMTP_SECURITY", "tls")
    assert _push(client, put_incident(settings, "inc-a", detected_at=NOW), "t1")[0] == 204
    assert relay.logins == [(USER, True)]
    assert [(tls, auth) for _, tls, auth in relay.messages] == [(True, True)]


def test_wrong_password_is_one_plain_error_and_the_webhook_is_not_repeated(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env)
    receiver = Receiver()
    receiver.thread.start()
    try:
        mail_env.setenv("GRIDSIGHT_ALERT_WEBHOOK_URL", receiver.url)
        mail_env.setenv("GRIDSIGHT_ALERT_WEBHOOK_SECRET", SECRET)
        mail_env.setenv("GRIDSIGHT_ALERT_SMTP_PASSWORD", "not-the-password")
        event = put_incident(settings, "inc-a", detected_at=NOW)
        status, text = _push(client, event, "w1")
        assert status == 400  # Pub/Sub redelivers a few times, then dead-letters it
        assert f"refused the login of '{USER}' (535)" in text
        assert "not-the-password" not in text
        assert "Traceback" not in text
        assert relay.logins == [(USER, True)]  # one attempt, not one per mechanism or retry
        assert relay.messages == []
        assert len(receiver.calls) == 1  # the webhook went out regardless
        row = _row(settings, "inc-a")
        assert row["alert_status"] == "pending"  # not "sent": the e-mail did not go
        assert pd.notna(row["alert_webhook_at"])
        assert pd.isna(row["alert_mail_at"])

        assert _push(client, event, "w2")[0] == 400  # redelivered: only the e-mail is tried again
        assert len(receiver.calls) == 1
        assert len(relay.logins) == 2

        mail_env.setenv("GRIDSIGHT_ALERT_SMTP_PASSWORD", PASSWORD)  # the operator fixes the secret
        assert _push(client, event, "w3")[0] == 204
        assert len(receiver.calls) == 1
        assert len(relay.messages) == 1
        assert _row(settings, "inc-a")["alert_status"] == "sent"
    finally:
        receiver.stop()


def test_a_relay_without_starttls_gets_no_password_and_no_mail(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    """This relay would even accept AUTH in clear: the client is what refuses."""
    relay = _relay(certs, relays, mail_env, starttls=False)
    status, text = _push(client, put_incident(settings, "inc-a", detected_at=NOW), "n1")
    assert status == 400
    assert "does not offer STARTTLS, which is required before logging in: nothing was sent" in text
    assert relay.logins == []
    assert relay.messages == []


def test_starttls_required_without_a_login_too(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env, starttls=False, require_auth=False)
    mail_env.delenv("GRIDSIGHT_ALERT_SMTP_USERNAME")
    mail_env.setenv("GRIDSIGHT_ALERT_SMTP_SECURITY", "starttls")
    status, text = _push(client, put_incident(settings, "inc-a", detected_at=NOW), "s1")
    assert status == 400
    assert "does not offer STARTTLS, which is required: nothing was sent" in text
    assert relay.messages == []
    mail_env.setenv("GRIDSIGHT_ALERT_SMTP_SECURITY", "auto")  # auto without a login: plain is allowed
    assert _push(client, put_incident(settings, "inc-b", detected_at=NOW, device_id="dev-4"), "s2")[0] == 204
    assert [(tls, auth) for _, tls, auth in relay.messages] == [(False, False)]


def test_an_untrusted_certificate_is_refused(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env)
    mail_env.delenv("GRIDSIGHT_ALERT_SMTP_CA_FILE")  # the system store does not know the test CA
    status, text = _push(client, put_incident(settings, "inc-a", detected_at=NOW), "c1")
    assert status == 400
    assert "certificate not trusted" in text
    assert "GRIDSIGHT_ALERT_SMTP_CA_FILE" in text
    assert relay.logins == []
    assert relay.messages == []


def test_an_unreachable_relay_is_retried_by_pubsub(
    client: FlaskClient, settings: Settings, certs: Path, mail_env: pytest.MonkeyPatch
) -> None:
    relay, controller = start_relay(certs)
    controller.stop()  # nothing listens on its port any more
    mail_env.setenv("GRIDSIGHT_ALERT_SMTP_PORT", str(relay.port))
    status, text = _push(client, put_incident(settings, "inc-a", detected_at=NOW), "u1")
    assert status == 503
    assert f"SMTP relay 127.0.0.1:{relay.port} failed: ConnectionRefusedError" in text


def test_placeholder_password_skips_the_mail_and_says_why(
    client: FlaskClient,
    settings: Settings,
    certs: Path,
    relays: list[Controller],
    mail_env: pytest.MonkeyPatch,
) -> None:
    relay = _relay(certs, relays, mail_env)
    mail_env.setenv("GRIDSIGHT_ALERT_SMTP_PASSWORD", SECRET_PLACEHOLDER)
    assert _push(client, put_incident(settings, "inc-a", detected_at=NOW), "p1")[0] == 204
    assert _row(settings, "inc-a")["alert_status"] == "secret_placeholder"
    assert relay.logins == []
    assert relay.messages == []
