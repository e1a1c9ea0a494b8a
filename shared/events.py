"""Versioned event contracts and the Pub/Sub push envelope.

Every message on the bus is one of the `Event` subclasses below, serialised as JSON in the
message data, with CloudEvents-style attributes (`type`, `source`, `id`, `time`) plus the
`correlation_id` that follows one sync through every service. A breaking change to a payload is a
new `type` (`...v2`), never an edit of `v1`.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from abc import abstractmethod
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import InvalidEvent
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = [
    "EVENT_TYPES",
    "AnomaliesDetected",
    "AnomaliesWithdrawn",
    "Event",
    "FeaturesRefreshed",
    "ForecastsWritten",
    "PubsubMessage",
    "PushEnvelope",
    "SyncCompleted",
    "check_event",
    "decode_event",
    "encode_event",
    "parse_envelope",
    "refresh_of",
    "shard_refresh_id",
]


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every payload; `TYPE` and `TOPIC` tie a payload to its topic in infra/events.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    @abstractmethod
    def dedupe_key(self) -> str:
        """The business key a redelivery is recognised by (besides the messageId)."""


class SyncCompleted(Event):
    TYPE: ClassVar[str] = "gridsight.sync.completed.v1"
    TOPIC: ClassVar[str] = "sync-completed"
    connection_id: str
    sync_id: str
    sync_started_at: datetime | None = None
    sync_ended_at: datetime

    def dedupe_key(self) -> str:
        return f"{self.connection_id}/{self.sync_id}"


class FeaturesRefreshed(Event):
    TYPE: ClassVar[str] = "gridsight.features.refreshed.v1"
    TOPIC: ClassVar[str] = "features-refreshed"
    refresh_id: str = Field(description="Unique per refresh run; the business key downstream.")
    window_start: datetime = Field(description="First affected hour (inclusive, UTC).")
    window_end: datetime = Field(description="Last affected hour + 1 h (exclusive, UTC).")
    device_ids: list[str]
    rows_changed: dict[str, int] = Field(default_factory=dict)

    def dedupe_key(self) -> str:
        return self.refresh_id


_SHARD_SUFFIX = re.compile(r"-\d+of\d+$")


def shard_refresh_id(refresh_id: str, k: int, n: int) -> str:
    """The refresh_id of shard `k` of `n` of one refresh (`n == 1`: the refresh's own)."""
    return refresh_id if n == 1 else f"{refresh_id}-{k}of{n}"


def refresh_of(refresh_id: str) -> str:
    """The refresh a shard's refresh_id (`shard_refresh_id`) belongs to."""
    return _SHARD_SUFFIX.sub("", refresh_id)


class ForecastsWritten(Event):
    TYPE: ClassVar[str] = "gridsight.forecasts.written.v1"
    TOPIC: ClassVar[str] = "forecasts-written"
    refresh_id: str
    model_version: str
    device_ids: list[str]
    first_target_hour: datetime
    last_target_hour: datetime
    rows: int

    def dedupe_key(self) -> str:
        return f"{self.refresh_id}/{self.model_version}"


DetectedReason = Literal["new", "escalated", "released"]


class AnomaliesDetected(Event):
    """One message per new incident, for alert fan-out; again when it escalates (its severity
    rises while it goes on) and when an alert held in quiet hours is released after them.

    Each of those is its own delivery (dedupe key): a new incident once, an escalation once per
    severity reached, a release once per hour (a release that lands in quiet hours again, because
    they began meanwhile, is not used up for good)."""

    TYPE: ClassVar[str] = "gridsight.anomalies.detected.v1"
    TOPIC: ClassVar[str] = "anomalies-detected"
    incident_id: str
    device_id: str
    anomaly_type: str
    severity: Literal["low", "medium", "high", "critical"]
    score: float
    start_hour: datetime
    end_hour: datetime
    explanation: str
    reason: DetectedReason = "new"
    released_for: datetime | None = Field(default=None, description="reason 'released': the hour (UTC).")

    @model_validator(mode="after")
    def _release_names_its_hour(self) -> AnomaliesDetected:
        if (self.reason == "released") != (self.released_for is not None):
            raise ValueError("released_for is set exactly when reason is 'released'")
        return self

    def dedupe_key(self) -> str:
        if self.reason == "escalated":
            return f"{self.incident_id}/escalated/{self.severity}"
        if self.released_for is not None:
            return f"{self.incident_id}/released/{self.released_for:%Y-%m-%dT%H}"
        return self.incident_id


class AnomaliesWithdrawn(Event):
    """One message per incident withdrawn because late data filled the hours it was raised on, so
    whoever was alerted gets a follow-up; the row stays in `anomalies` with status 'withdrawn'."""

    TYPE: ClassVar[str] = "gridsight.anomalies.withdrawn.v1"
    TOPIC: ClassVar[str] = "anomalies-withdrawn"
    incident_id: str
    device_id: str
    anomaly_type: str
    start_hour: datetime
    end_hour: datetime
    withdrawn_at: datetime
    reason: str

    def dedupe_key(self) -> str:
        return self.incident_id


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (SyncCompleted, FeaturesRefreshed, ForecastsWritten, AnomaliesDetected, AnomaliesWithdrawn)
}


class PubsubMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(alias="messageId", min_length=1)
    publish_time: datetime | None = Field(default=None, alias="publishTime")


class PushEnvelope(BaseModel):
    """What Pub/Sub POSTs to a push endpoint (and what the local dispatcher POSTs too)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    message: PubsubMessage
    subscription: str
    delivery_attempt: int | None = Field(default=None, alias="deliveryAttempt")


E = TypeVar("E", bound="Event")


def encode_event(
    event: Event, *, correlation_id: str | None = None, source: str = "gridsight"
) -> tuple[bytes, dict[str, str]]:
    """Data bytes and attributes for publishing `event`."""
    event_id = str(uuid.uuid4())
    attributes = {
        "specversion": "1.0",
        "type": event.TYPE,
        "source": source,
        "id": event_id,
        "time": _now().isoformat(),
        "correlation_id": correlation_id or event_id,
    }
    return event.model_dump_json().encode(), attributes


def decode_event(envelope: PushEnvelope, expected: type[E]) -> E:
    """Parse the envelope's payload as `expected`; anything else is an InvalidEvent (400)."""
    event_type = envelope.message.attributes.get("type")
    if event_type != expected.TYPE:
        raise InvalidEvent(f"expected event type {expected.TYPE!r}, got {event_type!r}")
    try:
        raw = base64.b64decode(envelope.message.data, validate=True)
        return expected.model_validate_json(raw)
    except (binascii.Error, ValueError, ValidationError) as exc:
        raise InvalidEvent(f"message data is not a valid {expected.__name__}: {exc}") from exc


def parse_envelope(body: Any) -> PushEnvelope:
    try:
        return PushEnvelope.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(f"not a Pub/Sub push envelope: {exc.errors(include_url=False)}") from exc


log = get_logger(__name__)


def check_event(
    event: E, attributes: dict[str, str], settings: Settings, *, now: datetime | None = None
) -> E:
    """Refuse (InvalidEvent, 400: dead-lettered, never retried) or clamp an event before any work
    allocates for it, against the limits in settings:

    - the `source` attribute must be ours (`event_source`, or `event_source/<handler>`), and a
      SyncCompleted must name our Fivetran connection: a forged or misrouted event does nothing;
    - a window must not be inverted, must not end after now + `event_max_future_hours` (no data
      can exist there: the 2099 reading of #18), and is clamped to its most recent
      `event_max_window_hours` (a 1970 start cannot make a service build a 129-year grid);
    - at most `event_max_devices` device ids (with the window, this bounds hours x devices).
    """
    source = attributes.get("source", "")
    prefix = settings.event_source
    if source != prefix and not source.startswith(prefix + "/"):
        raise InvalidEvent(f"event source {source[:100]!r} is not {prefix!r}: not published by gridsight")
    if isinstance(event, SyncCompleted) and event.connection_id != settings.fivetran_connection_id:
        raise InvalidEvent(
            f"sync of connection {event.connection_id[:100]!r},"
            f" not ours ({settings.fivetran_connection_id!r})"
        )
    devices = getattr(event, "device_ids", None)
    if devices is not None and len(devices) > settings.event_max_devices:
        raise InvalidEvent(
            f"event names {len(devices)} devices; the limit is {settings.event_max_devices}"
            " (GRIDSIGHT_EVENT_MAX_DEVICES)"
        )
    if isinstance(event, FeaturesRefreshed):
        return _bounded_window(event, settings, now or _now())  # type: ignore[return-value]
    return event


def _bounded_window(event: FeaturesRefreshed, settings: Settings, now: datetime) -> FeaturesRefreshed:
    start, end = event.window_start, event.window_end
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidEvent("window_start and window_end must carry a timezone (UTC)")
    if end < start:  # (an empty window, end == start, still names the forecast origin)
        raise InvalidEvent(f"inverted window: window_end {end.isoformat()} < start {start.isoformat()}")
    latest = now + timedelta(hours=settings.event_max_future_hours)
    if end > latest:
        raise InvalidEvent(
            f"window_end {end.isoformat()} is in the future (after {latest.isoformat()});"
            " no reading can exist there"
        )
    span = timedelta(hours=settings.event_max_window_hours)
    if end - start <= span:
        return event
    log.warning(
        "event window clamped",
        extra={
            "dedupe_key": event.dedupe_key(),
            "window": [start.isoformat(), end.isoformat()],
            "clamped_start": (end - span).isoformat(),
        },
    )
    return event.model_copy(update={"window_start": end - span})
