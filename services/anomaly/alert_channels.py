"""The two ways an incident reaches people, and their settings: a signed webhook and SMTP e-mail.

Kept apart from the decisions (alerts.py: severity, dedupe, quiet hours, state) so each channel can
be tested against a real receiver on its own. Both raise the project's errors: TransientError
(503) when trying again later can help (connection refused, timeout, 5xx/429 from the receiver,
4xx from the relay), InvalidEvent (400) when it cannot until somebody changes the configuration
(webhook 4xx, SMTP login refused, relay without STARTTLS while TLS is required, certificate not
trusted, recipient refused with 5xx). Pub/Sub redelivers either, then dead-letters it; neither is
retried in a tight loop here (a wrong password is tried once per delivery, not hammered).

Webhook signature (what a receiver checks; README "Alerts" has the same):
    X-Gridsight-Timestamp: <unix seconds when this attempt was signed>
    X-Gridsight-Signature-256: hex(HMAC-SHA256(secret, timestamp + "." + raw body))
    X-Gridsight-Delivery: <incident_id>:<type>   (same on every retry: the receiver's dedupe key)

    import hashlib, hmac, time


    def verify(raw_body: bytes, headers: dict[str, str], secret: bytes, tolerance_s: int = 300) -> bool:
        ts = headers["X-Gridsight-Timestamp"]
        if abs(time.time() - int(ts)) > tolerance_s:  # an old, replayed delivery
            return False
        expected = hmac.new(secret, ts.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers["X-Gridsight-Signature-256"])

Signing the timestamp with the body lets a receiver refuse a captured delivery replayed later;
the delivery id lets it drop the duplicate an at-least-once sender cannot rule out (a timeout after
the receiver had already stored the alert).
"""

from __future__ import annotations

import email.utils
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from pydantic import BaseModel, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import InvalidEvent, TransientError
from shared.webhook import sign_body

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertSettings",
    "load_alert_settings",
    "post_webhook",
    "send_mail",
    "signed_headers",
    "smtp_security",
]

SIGNATURE_HEADER = "X-Gridsight-Signature-256"
TIMESTAMP_HEADER = "X-Gridsight-Timestamp"
DELIVERY_HEADER = "X-Gridsight-Delivery"
SMTPS_PORT = 465


class AlertSettings(BaseSettings):
    """GRIDSIGHT_ALERT_* (secrets from Secret Manager in the cloud, the environment locally)."""

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
    # auto: implicit TLS on port 465; otherwise STARTTLS when the relay offers it, required when a
    # login is configured. starttls: always required. tls: implicit TLS. none: plain (no login allowed).
    smtp_security: Literal["auto", "starttls", "tls", "none"] = "auto"
    smtp_username: str | None = None
    smtp_password: SecretStr = SecretStr("")
    smtp_ca_file: str | None = None  # PEM bundle to trust instead of the system's (private relays, tests)
    mail_from: str = "gridsight@localhost"
    mail_to: str | None = None  # one address or several, comma-separated

    @field_validator("quiet_start_hour", "quiet_end_hour")
    @classmethod
    def _hour(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 23:
            raise ValueError("a quiet hour is a whole hour 0-23")
        return value

    @field_validator("quiet_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/London)") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertSettings:
        if (self.quiet_start_hour is None) != (self.quiet_end_hour is None):
            raise ValueError("quiet_start_hour and quiet_end_hour are set together or not at all")
        if self.smtp_username and self.smtp_security == "none":
            raise ValueError("smtp_username with smtp_security=none would send the password in clear")
        if self.attempts < 1 or self.timeout_s <= 0 or self.backoff_s < 0 or self.dedupe_hours < 0:
            raise ValueError("attempts >= 1, timeout_s > 0, backoff_s >= 0, dedupe_hours >= 0")
        return self


def load_alert_settings() -> AlertSettings:
    """The environment's settings, or one plain line naming what is wrong. 503: the push is
    redelivered (then dead-lettered) and succeeds once the configuration is fixed."""
    try:
        return AlertSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise TransientError(f"GRIDSIGHT_ALERT_* settings are invalid: {problems}") from None


# --- webhook -------------------------------------------------------------------------------------


def signed_headers(raw: bytes, secret: str, delivery_id: str, now: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_body(stamp.encode() + b"." + raw, secret),
        DELIVERY_HEADER: delivery_id,
    }


@dataclass(frozen=True)
class _Failure:
    """One failed attempt worth retrying, and how long the receiver asked us to wait (if it did)."""

    reason: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3); None if
    absent or unreadable (then our own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_waits(cfg: AlertSettings) -> list[float]:
    """Our own waits between attempts: backoff_s x 2^n, capped at 30 x backoff_s. Their sum is also
    the most a Retry-After may make us wait in one request (Terraform's worst case counts it)."""
    return [min(cfg.backoff_s * 2**n, 30 * cfg.backoff_s) for n in range(cfg.attempts - 1)]


_sleep: Callable[[float], None] = time.sleep  # the waits between attempts (tests record them)


def post_webhook(body: BaseModel, delivery_id: str, cfg: AlertSettings) -> None:
    """POST `body` signed; retry 5xx, 429 and connection errors with backoff, waiting at least what
    the receiver's Retry-After asks. A Retry-After longer than this request's remaining wait budget
    ends the attempts at once (TransientError): Pub/Sub's redelivery backoff takes over instead of
    holding the push open past its ack deadline. Other 3xx/4xx: InvalidEvent, no retry."""
    assert cfg.webhook_url
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    secret = cfg.webhook_secret.get_secret_value()
    waits, budget = backoff_waits(cfg), sum(backoff_waits(cfg))
    for attempt in range(cfg.attempts):
        try:
            response = requests.post(
                cfg.webhook_url,
                data=raw,
                headers=signed_headers(raw, secret, delivery_id),
                timeout=cfg.timeout_s,
                allow_redirects=False,  # a redirect is a wrong URL: say so, never re-send elsewhere
            )
        except requests.RequestException as exc:
            failure = _Failure(f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code < 300:
                return
            if response.status_code != 429 and response.status_code < 500:
                raise InvalidEvent(
                    f"alert webhook refused the alert: {response.status_code} {response.text[:200]}"
                )
            failure = _Failure(
                f"answered {response.status_code}", retry_after_seconds(response.headers.get("Retry-After"))
            )
        if attempt == cfg.attempts - 1:
            break
        wait = waits[attempt]
        if failure.retry_after is not None:
            if failure.retry_after > budget:
                raise TransientError(
                    f"alert webhook {failure}, Retry-After {failure.retry_after:g} s exceeds this delivery's "
                    f"{budget:g} s; left to Pub/Sub redelivery"
                )
            wait = max(wait, failure.retry_after)
        wait = min(wait, budget)
        budget -= wait
        _sleep(wait)
    raise TransientError(f"alert webhook failed after {cfg.attempts} attempts: {failure}")


# --- e-mail --------------------------------------------------------------------------------------


def smtp_security(cfg: AlertSettings) -> Literal["starttls", "starttls-if-offered", "tls", "none"]:
    if cfg.smtp_security == "auto":
        if cfg.smtp_port == SMTPS_PORT:
            return "tls"
        return "starttls" if cfg.smtp_username else "starttls-if-offered"
    return cfg.smtp_security


def _tls_context(cfg: AlertSettings) -> ssl.SSLContext:
    """Certificate and host name verified (the default context); smtp_ca_file replaces the system
    trust store, it does not switch verification off."""
    try:
        return ssl.create_default_context(cafile=cfg.smtp_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidEvent(f"GRIDSIGHT_ALERT_SMTP_CA_FILE {cfg.smtp_ca_file!r} is unreadable: {exc}") from exc


def send_mail(subject: str, text: str, cfg: AlertSettings) -> None:
    assert cfg.smtp_host
    assert cfg.mail_to
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, cfg.mail_from, cfg.mail_to
    msg.set_content(text)
    relay = f"SMTP relay {cfg.smtp_host}:{cfg.smtp_port}"
    security = smtp_security(cfg)
    context = _tls_context(cfg) if security != "none" else None
    try:
        smtp = (
            smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s, context=context)
            if security == "tls"
            else smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s)
        )
        with smtp:
            smtp.ehlo()
            offered = smtp.has_extn("starttls")
            if security == "starttls" and not offered:
                raise InvalidEvent(
                    f"{relay} does not offer STARTTLS, which is required"
                    f"{' before logging in' if cfg.smtp_username else ''}: nothing was sent"
                )
            if security in ("starttls", "starttls-if-offered") and offered:
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.smtp_username:
                _login(smtp, cfg.smtp_username, cfg.smtp_password.get_secret_value())
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise InvalidEvent(
            f"{relay} refused the login of {cfg.smtp_username!r} ({exc.smtp_code}): "
            "check GRIDSIGHT_ALERT_SMTP_USERNAME / the alert-smtp-password secret"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise InvalidEvent(f"{relay}: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise InvalidEvent(
            f"{relay}: certificate not trusted ({exc.verify_message}); "
            "set GRIDSIGHT_ALERT_SMTP_CA_FILE for a private CA"
        ) from None
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        code = getattr(exc, "smtp_code", None) or _first_code(exc)
        error = InvalidEvent if code and code >= 500 else TransientError
        raise error(f"{relay} refused the message: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(f"{relay} failed: {type(exc).__name__}: {exc}") from None


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """One login attempt per delivery: AUTH PLAIN when offered (the connection is encrypted by now).
    smtplib's login() would try each offered mechanism in turn, so a wrong password counted twice
    or more against the relay's lockout."""
    if "PLAIN" in smtp.esmtp_features.get("auth", "").upper().split():
        smtp.user, smtp.password = user, password
        smtp.auth("PLAIN", smtp.auth_plain)
    else:
        smtp.login(user, password)


def _first_code(exc: smtplib.SMTPException) -> int | None:
    recipients = getattr(exc, "recipients", None) or {}
    return next((code for code, _ in recipients.values()), None)
