"""Incidents that reach people: anomalies-detected (and anomalies-withdrawn) pushes in, a signed
webhook (and optionally an e-mail) out.

Rules, in order, for a new incident:
1. below `min_severity` -> not sent (`alert_status` 'below_severity');
2. another incident of the same device was alerted less than `dedupe_hours` ago -> 'suppressed'
   (one stuck meter sends one alert, not one per incident it flaps into);
3. inside quiet hours (local time of `quiet_timezone`) only 'high' goes out; the rest is 'quiet'
   (kept on the incident row, visible on the dashboard, not pushed at night);
4. otherwise POST the JSON body to `webhook_url`, signed with HMAC-SHA256 of the raw body under
   `webhook_secret` in `X-Gridsight-Signature-256` (the receiver verifies in constant time, as our
   ingest does for Fivetran), retried with exponential backoff; when every attempt fails the
   handler raises TransientError, so Pub/Sub redelivers and, after the subscription's max delivery
   attempts, dead-letters it. With `smtp_host` set the same alert also goes by e-mail; with neither
   configured the decision is 'no_channel'.
   The webhook is skipped (one warning line) while its secret is still Terraform's placeholder version
   (shared/settings.py SECRET_PLACEHOLDER, a public constant): a body signed with it proves nothing and
   anyone could forge one. With no other channel the decision is then 'secret_placeholder'.

The outcome is stored on the incident (`alert_status`, `alerted_at`): a redelivery of an alerted
incident sends nothing. A withdrawn incident that was alerted gets one follow-up
(`followup_sent_at`); one that never reached anybody needs none. The incident row is written after
its message is published, so an alert that arrives first is a TransientError (retried) too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import pandas as pd
import requests
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.errors import InvalidEvent, TransientError
from shared.events import AnomaliesDetected, AnomaliesWithdrawn
from shared.logging import get_logger
from shared.settings import SECRET_PLACEHOLDER, Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = [
    "SIGNATURE_HEADER",
    "AlertOutcome",
    "AlertSettings",
    "deliver_alert",
    "deliver_followup",
    "sign_alert",
]

SIGNATURE_HEADER = "X-Gridsight-Signature-256"
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
log = get_logger(__name__)


class AlertSettings(BaseSettings):
    """GRIDSIGHT_ALERT_* (the secret from Secret Manager in the cloud, the environment locally)."""

    model_config = SettingsConfigDict(env_prefix="GRIDSIGHT_ALERT_", extra="ignore")
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr("local-dev-alert-secret")
    min_severity: Literal["low", "medium", "high"] = "medium"
    dedupe_hours: float = 24.0
    quiet_start_hour: int | None = None  # e.g. 22 (local); None = no quiet hours
    quiet_end_hour: int | None = None  # e.g. 7 (local, exclusive)
    quiet_timezone: str = "UTC"
    timeout_s: float = 10.0
    attempts: int = 4
    backoff_s: float = 1.0
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "gridsight@localhost"
    mail_to: str | None = None


class AlertOutcome(BaseModel):
    incident_id: str
    status: str
    rows_written: int = 0


class AlertContext(Protocol):
    """The part of `shared.push.PushContext` alerting needs (read-only, as PushContext is frozen)."""

    @property
    def settings(self) -> Settings: ...


def sign_alert(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def in_quiet_hours(now: datetime, cfg: AlertSettings) -> bool:
    if cfg.quiet_start_hour is None or cfg.quiet_end_hour is None:
        return False
    hour = now.astimezone(ZoneInfo(cfg.quiet_timezone)).hour
    start, end = cfg.quiet_start_hour, cfg.quiet_end_hour
    return start <= hour < end if start <= end else hour >= start or hour < end


def webhook_ready(cfg: AlertSettings) -> bool:
    """A webhook URL is set and its signing secret is a real one. The placeholder is public, so a
    receiver could not tell our alerts from forged ones: refuse it, loudly, rather than sign with it."""
    if not cfg.webhook_url:
        return False
    if cfg.webhook_secret.get_secret_value().strip() == SECRET_PLACEHOLDER:
        log.warning(
            "alert webhook skipped: GRIDSIGHT_ALERT_WEBHOOK_SECRET is still the placeholder version; "
            "add the real one (gcloud secrets versions add <prefix>-alert-webhook-secret, infra/README.md)",
            extra={"webhook_url": cfg.webhook_url},
        )
        return False
    return True


def _post(body: dict[str, object], cfg: AlertSettings) -> None:
    if not webhook_ready(cfg):
        return
    raw = json.dumps(body, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_alert(raw, cfg.webhook_secret.get_secret_value()),
    }

    def once() -> None:
        response = requests.post(cfg.webhook_url, data=raw, headers=headers, timeout=cfg.timeout_s)  # type: ignore[arg-type]
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"alert webhook answered {response.status_code}")
        if response.status_code >= 400:  # retrying here will not help: 400, Pub/Sub dead-letters it
            raise InvalidEvent(
                f"alert webhook refused the alert: {response.status_code} {response.text[:200]}"
            )

    try:
        for attempt in Retrying(
            stop=stop_after_attempt(cfg.attempts),
            wait=wait_exponential(multiplier=cfg.backoff_s, max=30 * cfg.backoff_s),
            retry=retry_if_exception_type((TransientError, requests.RequestException)),
            reraise=False,
        ):
            with attempt:
                once()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        raise TransientError(f"alert webhook failed after {cfg.attempts} attempts: {cause}") from cause


def _mail(subject: str, text: str, cfg: AlertSettings) -> None:
    if not cfg.smtp_host or not cfg.mail_to:
        return
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, cfg.mail_from, cfg.mail_to
    msg.set_content(text)
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(f"SMTP relay {cfg.smtp_host}:{cfg.smtp_port} failed: {exc}") from exc


INCIDENT_SQL = """
SELECT incident_id, device_id, start_hour, end_hour, anomaly_type, severity, probability,
  energy_at_stake_kwh, cost_at_stake, expected, actual, explanation, status, alert_status, alerted_at,
  followup_sent_at
FROM energy_analytics.anomalies
WHERE incident_id = @incident_id
"""
RECENT_ALERT_SQL = """
SELECT COUNT(*) AS n
FROM energy_analytics.anomalies
WHERE device_id = @device_id AND incident_id != @incident_id AND alert_status = 'sent'
  AND alerted_at >= @since
"""


def _incident(wh: Warehouse, incident_id: str) -> dict[str, object]:
    rows = wh.query_df(INCIDENT_SQL, {"incident_id": incident_id})
    if rows.empty:
        raise TransientError(f"incident {incident_id} is not in the warehouse yet")
    return {
        k: (None if v is pd.NaT or (isinstance(v, float) and pd.isna(v)) else v)
        for k, v in rows.iloc[0].items()
    }


def _record(wh: Warehouse, incident_id: str, **columns: object) -> int:
    return wh.merge("anomalies", pd.DataFrame([{"incident_id": incident_id, **columns}]), key=["incident_id"])


def _decide(inc: dict[str, object], wh: Warehouse, now: datetime, cfg: AlertSettings) -> str:
    severity = str(inc["severity"])
    if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK[cfg.min_severity]:
        return "below_severity"
    since = now - timedelta(hours=cfg.dedupe_hours)
    recent = wh.query_df(
        RECENT_ALERT_SQL, {"device_id": inc["device_id"], "incident_id": inc["incident_id"], "since": since}
    )
    if int(recent["n"].iloc[0]):
        return "suppressed"
    if in_quiet_hours(now, cfg) and severity != "high":
        return "quiet"
    return "sent"


def deliver_alert(
    event: AnomaliesDetected,
    ctx: AlertContext,
    *,
    cfg: AlertSettings | None = None,
    now: datetime | None = None,
) -> AlertOutcome:
    cfg = cfg or AlertSettings()
    now = now or datetime.now(UTC)
    with open_warehouse(ctx.settings) as wh:
        inc = _incident(wh, event.incident_id)
        if inc["alert_status"] is not None or inc["status"] == "withdrawn":
            return AlertOutcome(
                incident_id=event.incident_id, status=f"already {inc['alert_status'] or 'withdrawn'}"
            )
        decision = _decide(inc, wh, now, cfg)
    if decision == "sent" and not (cfg.smtp_host and cfg.mail_to) and not webhook_ready(cfg):
        # nothing to deliver to: say so rather than "sent" (and why, when only the secret is missing)
        decision = "secret_placeholder" if cfg.webhook_url else "no_channel"
    if decision == "sent":
        body = {"type": "incident", **inc, "alerted_at": now.isoformat()}
        _post(body, cfg)
        _mail(f"[gridsight] {inc['severity']} {inc['anomaly_type']} on {inc['device_id']}", _text(inc), cfg)
    with open_warehouse(ctx.settings) as wh:
        written = _record(wh, event.incident_id, alert_status=decision, alerted_at=now)
    log.info(
        "alert", extra={"incident_id": event.incident_id, "device_id": event.device_id, "decision": decision}
    )
    return AlertOutcome(incident_id=event.incident_id, status=decision, rows_written=written)


def deliver_followup(
    event: AnomaliesWithdrawn,
    ctx: AlertContext,
    *,
    cfg: AlertSettings | None = None,
    now: datetime | None = None,
) -> AlertOutcome:
    cfg = cfg or AlertSettings()
    now = now or datetime.now(UTC)
    with open_warehouse(ctx.settings) as wh:
        inc = _incident(wh, event.incident_id)
    if inc["alert_status"] != "sent":
        return AlertOutcome(incident_id=event.incident_id, status="nobody was alerted")
    if inc["followup_sent_at"] is not None:
        return AlertOutcome(incident_id=event.incident_id, status="follow-up already sent")
    body = {
        "type": "withdrawn",
        **inc,
        "reason": event.reason,
        "withdrawn_at": event.withdrawn_at.isoformat(),
    }
    _post(body, cfg)
    _mail(f"[gridsight] withdrawn: {inc['anomaly_type']} on {inc['device_id']}", event.reason, cfg)
    with open_warehouse(ctx.settings) as wh:
        written = _record(wh, event.incident_id, followup_sent_at=now)
    return AlertOutcome(incident_id=event.incident_id, status="follow-up sent", rows_written=written)


def _text(inc: dict[str, object]) -> str:
    stake = inc.get("energy_at_stake_kwh")
    money = f"; {stake:.1f} kWh at stake (cost {inc.get('cost_at_stake'):.2f})" if stake is not None else ""
    return f"{inc['explanation']}\nFrom {inc['start_hour']} to {inc['end_hour']} (UTC){money}."
