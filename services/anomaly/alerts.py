"""Incidents that reach people: anomalies-detected (and anomalies-withdrawn) pushes in, a signed
webhook and/or an e-mail out (alert_channels.py: signing scheme, Retry-After, SMTP with TLS/AUTH).

Rules, in order, for a new incident:
1. below `min_severity` -> not sent (`alert_status` 'below_severity');
2. another incident of the same device claimed an alert less than `dedupe_hours` ago ('pending' or
   'sent'), or is still undecided, was detected in that window and comes first (higher severity,
   then earlier detected, then smaller id) -> 'suppressed'. One stuck or flapping meter sends one
   alert, even when a backfill publishes all its incidents at once and they are delivered in parallel;
3. inside quiet hours (local time of `quiet_timezone`, DST included) only high (and critical) goes
   out; the rest is 'quiet' (kept on the incident row, visible on the dashboard, not pushed at night);
4. otherwise the decision is claimed ('pending', `alerted_at`), then each ready channel delivers and
   is stamped on the row (`alert_webhook_at`, `alert_mail_at`), then 'sent'. A failing channel raises
   (TransientError 503 / InvalidEvent 400): Pub/Sub redelivers, and a redelivery only retries the
   channels not yet stamped, so the receiver that got the webhook does not get it again because
   the e-mail failed; after max delivery attempts the message is dead-lettered (the row stays
   'pending': true, nobody was told by that channel).
   With no channel configured the decision is 'no_channel'. A channel whose secret is still
   Terraform's placeholder version (shared/settings.py SECRET_PLACEHOLDER, a public constant) is
   skipped with one warning line: a body signed with it proves nothing. With no other channel the
   decision is then 'secret_placeholder'.

An incident decided 'below_severity' or 'quiet' is decided again when it escalates (scoring finds it
going on at a higher severity and announces it with reason 'escalated') and when its alert is
released after quiet hours (each scoring push outside them announces every held alert with reason
'released', scoring.py release_quiet_alerts). Any other decision stands.
A redelivery of a decided incident sends nothing. A withdrawn incident gets one follow-up on each
channel that delivered its alert (`followup_webhook_at`, `followup_mail_at`, then
`followup_sent_at`); one that never reached anybody needs none. The incident row is written after
its message is published, so an alert that arrives first is a TransientError (retried) too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel

from services.anomaly.alert_channels import (
    SIGNATURE_HEADER,
    AlertSettings,
    load_alert_settings,
    post_webhook,
    send_mail,
)
from services.anomaly.severity import SEVERITY_RANK
from shared.errors import GridsightError, TransientError
from shared.events import AnomaliesDetected, AnomaliesWithdrawn
from shared.logging import get_logger
from shared.settings import SECRET_PLACEHOLDER, Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = [
    "SIGNATURE_HEADER",
    "AlertOutcome",
    "AlertPayload",
    "AlertSettings",
    "deliver_alert",
    "deliver_followup",
]

Channel = Literal["webhook", "mail"]
CHANNELS: tuple[Channel, ...] = ("webhook", "mail")
CLAIMED = ("pending", "sent")
# Decisions an escalation or a release after quiet hours may change; any other decision stands.
DECIDED_AGAIN = ("below_severity", "quiet")
log = get_logger(__name__)


class AlertOutcome(BaseModel):
    incident_id: str
    status: str
    rows_written: int = 0


class AlertPayload(BaseModel):
    """What the webhook receiver gets (JSON; README "Alerts"). Times are ISO 8601 UTC; energy in
    kWh, cost in the tariff's currency; expected/actual are the detector's headline values."""

    type: Literal["incident", "withdrawn"]
    incident_id: str
    device_id: str
    anomaly_type: str
    severity: str
    probability: float | None
    start_hour: datetime
    end_hour: datetime
    expected: float | None
    actual: float | None
    explanation: str
    energy_at_stake_kwh: float | None
    cost_at_stake: float | None
    alerted_at: datetime | None
    reason: str | None = None  # withdrawn only: why
    withdrawn_at: datetime | None = None


class AlertContext(Protocol):
    """The part of `shared.push.PushContext` alerting needs (read-only, as PushContext is frozen)."""

    @property
    def settings(self) -> Settings: ...


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


def mail_ready(cfg: AlertSettings) -> bool:
    """A relay and a recipient are set and, with a login, its password is a real one."""
    if not (cfg.smtp_host and cfg.mail_to):
        return False
    password = cfg.smtp_password.get_secret_value().strip()
    if cfg.smtp_username and password in ("", SECRET_PLACEHOLDER):
        log.warning(
            "alert e-mail skipped: GRIDSIGHT_ALERT_SMTP_PASSWORD is empty or still the placeholder version; "
            "add the real one (gcloud secrets versions add <prefix>-alert-smtp-password, infra/README.md)",
            extra={"smtp_host": cfg.smtp_host},
        )
        return False
    return True


def ready_channels(cfg: AlertSettings) -> list[Channel]:
    ready = {"webhook": webhook_ready(cfg), "mail": mail_ready(cfg)}
    return [c for c in CHANNELS if ready[c]]


INCIDENT_SQL = """
SELECT incident_id, device_id, start_hour, end_hour, anomaly_type, severity, probability,
  energy_at_stake_kwh, cost_at_stake, expected, actual, explanation, detected_at, status, alert_status,
  alerted_at, alert_webhook_at, alert_mail_at, followup_webhook_at, followup_mail_at, followup_sent_at
FROM energy_analytics.anomalies
WHERE incident_id = @incident_id
"""
# Same-device incidents that may take this one's alert: claimed in the window, or still undecided
# (held in quiet hours counts as undecided: released together, the first of them is the alert).
RIVALS_SQL = """
SELECT incident_id, severity, detected_at, alert_status
FROM energy_analytics.anomalies
WHERE device_id = @device_id AND incident_id != @incident_id
  AND (
    (alert_status IN ('pending', 'sent') AND alerted_at >= @since)
    OR (
      (alert_status IS NULL OR alert_status = 'quiet')
      AND (status IS NULL OR status != 'withdrawn') AND detected_at >= @since
    )
  )
"""


def _incident(wh: Warehouse, incident_id: str) -> dict[str, object]:
    rows = wh.query_df(INCIDENT_SQL, {"incident_id": incident_id})
    if rows.empty:
        raise TransientError(f"incident {incident_id} is not in the warehouse yet")
    return {
        k: (None if v is pd.NaT or (isinstance(v, float) and pd.isna(v)) else v)
        for k, v in rows.iloc[0].items()
    }


def _record(settings: Settings, incident_id: str, **columns: object) -> int:
    """One alert stamp, its own unit of work (committed before the next channel is tried); no
    snapshot copy, as nothing reads the stamps to act (the dedupe reads them under the lock)."""
    with open_warehouse(settings, publish=False) as wh:
        return wh.merge(
            "anomalies", pd.DataFrame([{"incident_id": incident_id, **columns}]), key=["incident_id"]
        )


def _order(severity: object, detected_at: object, incident_id: object) -> tuple[int, pd.Timestamp, str]:
    """Who goes first among undecided incidents of one device: most severe, earliest, smallest id."""
    when = (
        pd.Timestamp(detected_at) if detected_at is not None and pd.notna(detected_at) else pd.Timestamp.max
    )
    when = when.tz_localize(UTC) if when.tzinfo is None else when
    return (-SEVERITY_RANK.get(str(severity), 0), when, str(incident_id))


def _decide(inc: dict[str, object], wh: Warehouse, now: datetime, cfg: AlertSettings) -> str:
    severity = str(inc["severity"])
    floor = SEVERITY_RANK[cfg.min_severity]
    if SEVERITY_RANK.get(severity, 0) < floor:
        return "below_severity"
    since = now - timedelta(hours=cfg.dedupe_hours)
    rivals = wh.query_df(
        RIVALS_SQL, {"device_id": inc["device_id"], "incident_id": inc["incident_id"], "since": since}
    )
    mine = _order(severity, inc.get("detected_at"), inc["incident_id"])
    for r in rivals.itertuples(index=False):
        if r.alert_status in CLAIMED:
            return "suppressed"
        if (
            SEVERITY_RANK.get(str(r.severity), 0) >= floor
            and _order(r.severity, r.detected_at, r.incident_id) < mine
        ):
            return "suppressed"  # it is undecided but goes first: it will be the device's alert
    if in_quiet_hours(now, cfg) and SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK["high"]:
        return "quiet"
    return "sent"


def _payload(inc: dict[str, object], kind: Literal["incident", "withdrawn"], **extra: object) -> AlertPayload:
    fields = {k: inc.get(k) for k in AlertPayload.model_fields if k not in ("type", *extra)}
    return AlertPayload.model_validate({**fields, "type": kind, **extra})


def _deliver(
    channels: list[Channel],
    stamps: dict[Channel, str],
    inc: dict[str, object],
    payload: AlertPayload,
    subject: str,
    text: str,
    settings: Settings,
    cfg: AlertSettings,
    now: datetime,
    *,
    final: dict[str, object],
) -> int:
    """Each channel not yet stamped delivers, then is stamped; the first failure is raised after
    every channel had its try (a wrong SMTP password does not hold back the webhook).

    `final` (the columns that close the delivery) goes with the last stamp when every channel got
    through: each warehouse write is a unit of work (and on DuckDB a snapshot copy), so a clean
    delivery costs one write per channel, not one more."""
    todo = [c for c in channels if inc.get(stamps[c]) is None]
    written, failures = 0, list[GridsightError]()
    for i, channel in enumerate(todo):
        try:
            if channel == "webhook":
                post_webhook(payload, f"{payload.incident_id}:{payload.type}", cfg)
            else:
                send_mail(subject, text, cfg)
        except GridsightError as exc:
            log.warning(
                "alert channel failed",
                extra={"incident_id": payload.incident_id, "channel": channel, "reason": str(exc)},
            )
            failures.append(exc)
            continue
        closing = final if i == len(todo) - 1 and not failures else {}
        written += _record(settings, str(inc["incident_id"]), **{stamps[channel]: now, **closing})
    if failures:
        transient = [f for f in failures if isinstance(f, TransientError)]
        raise (transient or failures)[0]
    if not todo:  # every channel was stamped by an earlier delivery that stopped before closing
        written += _record(settings, str(inc["incident_id"]), **final)
    return written


def deliver_alert(
    event: AnomaliesDetected,
    ctx: AlertContext,
    *,
    cfg: AlertSettings | None = None,
    now: datetime | None = None,
) -> AlertOutcome:
    cfg = cfg or load_alert_settings()
    now = now or datetime.now(UTC)
    with open_warehouse(ctx.settings, publish=False) as wh:  # reads only: no snapshot publish
        inc = _incident(wh, event.incident_id)
        if (
            event.reason == "escalated"
            and SEVERITY_RANK.get(str(inc["severity"]), 0) < SEVERITY_RANK[event.severity]
        ):
            # published before the scoring MERGE wrote the new severity: retried, as for a new row
            raise TransientError(f"incident {event.incident_id} is not {event.severity} in the warehouse yet")
        again = event.reason != "new" and inc["alert_status"] in DECIDED_AGAIN
        if inc["status"] == "withdrawn" or (inc["alert_status"] not in (None, "pending") and not again):
            return AlertOutcome(
                incident_id=event.incident_id,
                status=f"already {'withdrawn' if inc['status'] == 'withdrawn' else inc['alert_status']}",
            )
        decision = "sent" if inc["alert_status"] == "pending" else _decide(inc, wh, now, cfg)
    channels = ready_channels(cfg) if decision == "sent" else []
    delivered = inc.get("alert_webhook_at") is not None or inc.get("alert_mail_at") is not None
    if decision == "sent" and not channels and not delivered:
        # nothing to deliver to: say so rather than "sent" (and why, when only a secret is missing)
        configured = cfg.webhook_url or (cfg.smtp_host and cfg.mail_to)
        decision = "secret_placeholder" if configured else "no_channel"
    written = 0
    if decision != "sent":
        written = _record(ctx.settings, event.incident_id, alert_status=decision, alerted_at=now)
    else:
        if inc["alert_status"] is None:
            written += _record(ctx.settings, event.incident_id, alert_status="pending", alerted_at=now)
        inc_time = inc["alerted_at"] or now
        payload = _payload(inc, "incident", alerted_at=inc_time)
        subject = f"[gridsight] {inc['severity']} {inc['anomaly_type']} on {inc['device_id']}"
        stamps: dict[Channel, str] = {"webhook": "alert_webhook_at", "mail": "alert_mail_at"}
        written += _deliver(
            channels,
            stamps,
            inc,
            payload,
            subject,
            _text(inc),
            ctx.settings,
            cfg,
            now,
            final={"alert_status": "sent"},
        )
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
    cfg = cfg or load_alert_settings()
    now = now or datetime.now(UTC)
    with open_warehouse(ctx.settings, publish=False) as wh:  # reads only: no snapshot publish
        inc = _incident(wh, event.incident_id)
    reached = [c for c, col in (("webhook", "alert_webhook_at"), ("mail", "alert_mail_at")) if inc[col]]
    if not reached and inc["alert_status"] == "sent":
        reached = list(CHANNELS)  # alerted before channels were stamped: follow up where it can go now
    if not reached:
        return AlertOutcome(incident_id=event.incident_id, status="nobody was alerted")
    if inc["followup_sent_at"] is not None:
        return AlertOutcome(incident_id=event.incident_id, status="follow-up already sent")
    channels = [c for c in ready_channels(cfg) if c in reached]
    if not channels:  # the channels that carried the alert are no longer configured (or secret reverted)
        return AlertOutcome(incident_id=event.incident_id, status="follow-up not sent: no channel ready")
    payload = _payload(
        inc, "withdrawn", alerted_at=inc["alerted_at"], reason=event.reason, withdrawn_at=event.withdrawn_at
    )
    subject = f"[gridsight] withdrawn: {inc['anomaly_type']} on {inc['device_id']}"
    text = f"The alert for incident {inc['incident_id']} is withdrawn: {event.reason}"
    stamps: dict[Channel, str] = {"webhook": "followup_webhook_at", "mail": "followup_mail_at"}
    written = _deliver(
        channels,
        stamps,
        inc,
        payload,
        subject,
        text,
        ctx.settings,
        cfg,
        now,
        final={"followup_sent_at": now},
    )
    return AlertOutcome(incident_id=event.incident_id, status="follow-up sent", rows_written=written)


def _text(inc: dict[str, object]) -> str:
    lines = [
        str(inc["explanation"]),
        f"From {inc['start_hour']} to {inc['end_hour']} (UTC); severity {inc['severity']}.",
    ]
    if inc.get("probability") is not None:
        lines.append(f"Estimated probability of a real fault: {float(inc['probability']):.0%}.")  # type: ignore[arg-type]
    if inc.get("energy_at_stake_kwh") is not None:
        cost = inc.get("cost_at_stake")
        money = f" (cost {float(cost):.2f})" if cost is not None else ""  # type: ignore[arg-type]
        lines.append(f"{float(inc['energy_at_stake_kwh']):.1f} kWh at stake{money}.")  # type: ignore[arg-type]
    lines.append(f"Incident {inc['incident_id']}.")
    return "\n".join(lines)
