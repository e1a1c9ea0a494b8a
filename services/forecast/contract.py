"""The prediction contract between the forecast service and the model server (Vertex AI style).

Request `{"instances": [Instance, ...]}`, response `{"predictions": [Prediction, ...]}` in the same
order. An instance carries the raw history, not features: the server owns feature building, so a
new model version with new features needs no change in the service. `timezone`, `country` and
`subdiv` (optional, added compatibly) say whose calendar the hours follow; an instance without
them is read as before: a public-data building in England with the university's closure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.forecast.calendars import SiteCalendar, calendar_for
from services.forecast.features import HISTORY_HOURS, HORIZON_HOURS, MIN_HISTORY_HOURS

__all__ = ["MAX_INSTANCES", "Instance", "PredictRequest", "PredictResponse", "Prediction", "padded"]

MAX_INSTANCES = 2000


def _check_series(values: list[float | None], name: str) -> np.ndarray:
    """The series as floats (None → NaN), vectorised: a request holds hundreds of thousands of values."""
    if not MIN_HISTORY_HOURS <= len(values) <= HISTORY_HOURS:
        raise ValueError(
            f"{name} must hold {MIN_HISTORY_HOURS} to {HISTORY_HOURS} hourly values (the hours just before"
            f" the origin, oldest first), got {len(values)}"
        )
    array = np.asarray(values, dtype=float)
    bad = np.isinf(array)
    if bad.any():
        raise ValueError(f"{name}[{int(np.argmax(bad))}] is not a finite number")
    return array


class Instance(BaseModel):
    """One device: up to `HISTORY_HOURS` (at least `MIN_HISTORY_HOURS`) hours before `origin`, oldest
    first, the last value being the hour just before it (None = missing). A shorter series is read
    as missing older hours, so clients built for the two-week history keep working."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=200)
    origin: datetime = Field(description="First hour to forecast (UTC, on the hour).")
    kwh: list[float | None]
    temp_c: list[float | None] | None = None
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone of the site.")
    country: str | None = Field(
        default=None,
        min_length=2,
        max_length=3,
        description="ISO country for public holidays (else from zone).",
    )
    subdiv: str | None = Field(default=None, max_length=10, description="Holiday subdivision, e.g. ENG.")

    @model_validator(mode="after")
    def _known_calendar(self) -> Instance:
        self.calendar()  # an unknown zone or country is a 400 naming it, not a 500 at prediction
        return self

    def calendar(self) -> SiteCalendar:
        return calendar_for(self.timezone, self.country, self.subdiv)

    @field_validator("origin")
    @classmethod
    def _on_the_hour(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if value.minute or value.second or value.microsecond:
            raise ValueError("origin must be on the hour")
        return value

    @field_validator("kwh")
    @classmethod
    def _kwh(cls, values: list[float | None]) -> list[float | None]:
        array = _check_series(values, "kwh")
        if (array < 0).any():
            raise ValueError("kwh values must not be negative")
        if np.isnan(array).all():
            raise ValueError("kwh has no values: nothing to forecast from")
        return values

    @field_validator("temp_c")
    @classmethod
    def _temp(cls, values: list[float | None] | None) -> list[float | None] | None:
        if values is not None:
            _check_series(values, "temp_c")
        return values


def padded(values: list[float | None] | None, length: int) -> list[float | None]:
    """`values` left-padded with None (missing older hours) to `length`; None → all missing."""
    if values is None:
        return [None] * length
    return [None] * (length - len(values)) + list(values)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: list[Instance] = Field(min_length=1, max_length=MAX_INSTANCES)
    parameters: dict[str, object] | None = None


class Prediction(BaseModel):
    device_id: str
    origin: datetime
    model_version: str
    target_hours: list[datetime]
    p10: list[float]
    p50: list[float]
    p90: list[float]

    @model_validator(mode="after")
    def _lengths(self) -> Prediction:
        if not len(self.target_hours) == len(self.p10) == len(self.p50) == len(self.p90) == HORIZON_HOURS:
            raise ValueError(f"a prediction holds {HORIZON_HOURS} hours")
        return self

    @staticmethod
    def hours_from(origin: datetime) -> list[datetime]:
        return [origin + timedelta(hours=h) for h in range(HORIZON_HOURS)]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
