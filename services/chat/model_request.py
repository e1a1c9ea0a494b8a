"""The typed request as Gemini fills it (structured output), and how it becomes an `Understanding`.

With Gemini configured, the model reads the question into the same typed request the rules build:
an intent over the same templates, the subjects as written, the date and hour phrases as written,
and whatever it could not map (`not_understood`, said in the reply as not applied). Names are then
resolved against the catalog and dates parsed against the data clock by the same code as the rules
path, so an unknown meter still gets "I don't know ..." and 31 February still gets a question back.
The rules remain the fallback (no model, a failed call, an invalid reply) and keep the last word on
refusals: a request they refuse is refused whatever the model says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from services.chat.periods import ImpossibleDate, parse_hours, parse_period
from services.chat.safety import normalise
from services.chat.understanding import (
    Catalog,
    Entity,
    Slots,
    Understanding,
    _match_entities,
    _timezone,
    suggest,
)

__all__ = ["MODEL_INTENTS", "ModelRequest", "from_model_request"]

ModelIntent = Literal[
    "usage", "top_k", "compare", "peak_hour", "load_profile", "base_load", "cost", "forecast",
    "anomalies", "device_facts", "silent_devices", "count", "weekday_weekend", "trend", "advice", "units",
    "out_of_scope", "unsafe", "unknown",
]  # fmt: skip
MODEL_INTENTS = ModelIntent.__args__  # type: ignore[attr-defined]
_FLEET = {"", "fleet", "the fleet", "whole fleet", "the whole fleet", "all meters", "all sites", "everything"}


class ModelRequest(BaseModel):
    """What the model may say about a question; every field maps onto the rules' Slots."""

    intent: ModelIntent
    subjects: list[str] = Field(
        default_factory=list,
        description="Meter or site names or ids exactly as written; empty = whole fleet.",
    )
    period_text: str | None = Field(default=None, description="The date words as written, e.g. 'last week'.")
    hours_text: str | None = Field(
        default=None, description="The hour words as written, e.g. 'from 5 to 7 pm'."
    )
    days: Literal["weekdays", "weekends"] | None = None
    per_device: bool = False
    metric: Literal["energy", "power"] = "energy"
    k: int | None = Field(default=None, ge=1, le=50)
    order: Literal["desc", "asc"] = "desc"
    rank_sites: bool = Field(default=False, description="A ranking of sites rather than meters.")
    not_understood: list[str] = Field(
        default_factory=list, description="Parts of the question none of these fields can express."
    )


def from_model_request(
    model: ModelRequest, catalog: Catalog, today_in: Callable[[str], date]
) -> Understanding | None:
    """The Understanding for the model's request, or None to let the rules decide (unknown intent)."""
    if model.intent == "unknown":
        return None
    if model.intent == "unsafe":
        return Understanding(intent="unsafe", slots=Slots(), reason="that would change stored data")
    if model.intent in ("units", "out_of_scope", "advice"):
        return Understanding(intent=model.intent, slots=Slots())
    devices: list[Entity] = []
    sites: list[Entity] = []
    unknown: list[str] = []
    for subject in model.subjects:
        text = normalise(subject)
        if text in _FLEET:
            continue
        found_devices, found_sites, missing = _match_entities(text, catalog)
        devices += [d for d in found_devices if d not in devices]
        sites += [s for s in found_sites if s not in sites]
        if missing or not (found_devices or found_sites):
            unknown.append(missing[0] if missing else text)
    tz, tz_note = _timezone([*devices, *sites], catalog)
    slots = Slots(
        devices=devices,
        sites=sites,
        unknown_names=unknown,
        tz=tz,
        tz_note=tz_note,
        subject="device" if devices else "site" if sites else "fleet",
        rank_group="site" if model.rank_sites else "device",
        metric=model.metric,
        k=model.k,
        order=model.order,
        days=model.days,
        per_device=model.per_device,
        count_of="sites" if model.rank_sites else "devices",
    )
    try:
        slots.period = parse_period(normalise(model.period_text), today_in(tz)) if model.period_text else None
    except ImpossibleDate as exc:
        return Understanding(intent="clarify", slots=Slots(), reason=str(exc))
    if model.period_text and slots.period is None:
        model.not_understood.append(f"the period '{model.period_text}'")
    slots.hours = parse_hours(normalise(model.hours_text)) if model.hours_text else None
    if model.hours_text and slots.hours is None:
        model.not_understood.append(f"the hours '{model.hours_text}'")
    return Understanding(
        intent=model.intent,
        slots=slots,
        suggestions=suggest(unknown, catalog) if unknown else [],
        not_applied=[f"{part} (not understood)" for part in model.not_understood],
    )
