"""What a question asks: an intent plus slots (who, when, which hours, how many, which tariff).

Deterministic rules and fuzzy matching (difflib) rather than a model: it needs no weights, answers in
microseconds and is testable line by line. Devices and sites are matched by id, by the number in
"meter 17", or by a fuzzy match of their names. A follow-up ("and the day before?", "what about site
B?") starts from the previous turn's slots and overrides only what it names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date
from difflib import SequenceMatcher, get_close_matches
from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr
from rapidfuzz import fuzz, process

from services.chat.periods import (
    DATE_WORDS,
    MONTHS,
    WEEKDAYS,
    HourWindow,
    ImpossibleDate,
    Period,
    parse_hours,
    parse_period,
    shift_period,
)
from services.chat.safety import normalise, unsafe_reason

__all__ = ["Catalog", "Entity", "Intent", "Slots", "Tariff", "Understanding", "understand", "unsafe_reason"]

Intent = Literal[
    "usage",
    "top_k",
    "compare",
    "peak_hour",
    "load_profile",
    "base_load",
    "cost",
    "forecast",
    "anomalies",
    "device_facts",
    "silent_devices",
    "count",
    "weekday_weekend",
    "trend",
    "advice",
    "units",
    "clarify",
    "unsafe",
    "out_of_scope",
    "unknown",
]
# Intents whose answer is a number from the warehouse (the others are refusals or document answers).
DATA_INTENTS = {
    "usage", "top_k", "compare", "peak_hour", "load_profile", "base_load", "cost", "forecast",
    "anomalies", "device_facts", "silent_devices", "count", "weekday_weekend", "trend",
}  # fmt: skip

_ENERGY_WORDS = re.compile(
    r"\b(hours?|busiest|profile|base|flat|anomaly|incidents?|energy|kwh|wh|power|watts?|kw|load|consum\w*|use[ds]?|using|usage|draw\w*|demand|meters?|"
    r"devices?|sites?|buildings?|electric\w*|bill|cost|tariff|forecast|anomal\w*|flagged|peak|"
    r"readings?|silent|offline|reporting|efficien\w*|save|saving|reduce|standby|baseload|base load)\b"
)
_OFF_TOPIC = re.compile(
    r"\b(weather|rain|snow|joke|recipe|football|soccer|stock|president|capital of|poem|song)\b"
)
_NEEDS_ENERGY_WORDS = {
    "unknown",
    "usage",
    "top_k",
    "compare",
    "device_facts",
    "advice",
    "forecast",
    "peak_hour",
}
_WORD = re.compile(r"[a-z0-9][a-z0-9'&.-]*")
FUZZY_CUTOFF = 0.88
_STOP = {
    "the",
    "and",
    "for",
    "was",
    "what",
    "which",
    "how",
    "did",
    "use",
    "used",
    "much",
    "many",
    "last",
    "this",
    "meter",
    "meters",
    "device",
    "devices",
    "site",
    "sites",
    "energy",
    "with",
    "from",
    "about",
}
_FOLLOW_UP = re.compile(r"^\s*(and|what about|how about|same for|and for|what of|now for|ok and|then)\b")


class Entity(BaseModel):
    kind: Literal["device", "site"]
    id: str
    name: str | None = None
    site_id: str | None = None
    timezone: str | None = None


class Catalog(BaseModel):
    """Devices and sites the warehouse knows, for matching names in questions."""

    devices: list[Entity] = Field(default_factory=list)
    sites: list[Entity] = Field(default_factory=list)
    _names: dict[str, list[int]] | None = PrivateAttr(default=None)
    _ids: dict[str, Entity] | None = PrivateAttr(default=None)

    def by_id(self, tokens: set[str]) -> list[Entity]:
        """Entities whose id (lower-case) is one of `tokens`, devices first."""
        if self._ids is None:
            self._ids = {e.id.lower(): e for e in [*self.sites, *self.devices]}
        found = [self._ids[t] for t in sorted(tokens) if t in self._ids]
        return sorted(found, key=lambda e: e.kind != "device")

    def name_index(self) -> dict[str, list[int]]:
        """Name word -> positions in devices + sites, built once per catalog."""
        if self._names is None:
            index: dict[str, list[int]] = {}
            for i, entity in enumerate([*self.devices, *self.sites]):
                for word in set(_WORD.findall((entity.name or "").lower())):
                    if len(word) >= 3 and word not in _STOP and not word.isdigit():
                        index.setdefault(word, []).append(i)
            self._names = index
        return self._names

    def numbered_bases(self) -> list[str]:
        """Words that precede a number in names ("office" in "Office 5"), for "office 55" checks."""
        found = {
            m[1]
            for e in [*self.devices, *self.sites]
            if (m := re.match(r"^([a-z]+) \d+$", (e.name or "").lower()))
        }
        return sorted(found)

    def names(self) -> list[str]:
        return [e.name for e in [*self.devices, *self.sites] if e.name]

    def fleet_timezone(self) -> str:
        zones = Counter(s.timezone for s in self.sites if s.timezone)
        return zones.most_common(1)[0][0] if zones else "UTC"

    def site(self, site_id: str) -> Entity | None:
        return next((s for s in self.sites if s.id == site_id), None)


class Tariff(BaseModel):
    kind: Literal["flat", "time_of_use"] = "flat"
    flat_per_kwh: float | None = Field(default=None, description="Price the question named, if any.")


class Slots(BaseModel):
    devices: list[Entity] = Field(default_factory=list)
    sites: list[Entity] = Field(default_factory=list)
    subject: Literal["device", "site", "fleet"] = "fleet"
    rank_group: Literal["device", "site"] = Field(default="device", description="What a top-k ranks.")
    period: Period | None = None
    hours: HourWindow | None = None
    metric: Literal["energy", "power"] = "energy"
    k: int | None = Field(default=None, ge=1, le=50)
    order: Literal["desc", "asc"] = "desc"
    tariff: Tariff | None = None
    silent_hours: int | None = Field(default=None, ge=1)
    tz: str = Field(default="UTC", description="The timezone dates are read in.")
    tz_note: str | None = Field(default=None, description="Why days are read in that zone, if not obvious.")
    unknown_names: list[str] = Field(default_factory=list, description="'meter 99' that matched nothing.")
    days: Literal["weekdays", "weekends"] | None = Field(default=None, description="Only these days.")
    per_device: bool = Field(default=False, description="Normalise by the number of devices.")
    count_of: Literal["devices", "sites"] = "devices"


class Understanding(BaseModel):
    """The typed request: everything later steps may use; nothing they may not account for."""

    intent: Intent
    slots: Slots
    follow_up: bool = False
    reason: str | None = Field(default=None, description="Why a request is refused or unclear.")
    not_applied: list[str] = Field(
        default_factory=list,
        description="Parts of the question recognised but not applied, said in the reply.",
    )
    suggestions: list[str] = Field(default_factory=list, description="Closest known names to an unknown one.")


# Measures the warehouse does not hold: the chat says so instead of answering something else.
_UNSUPPORTED_MEASURES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"\b(carbon|co2|co₂|emissions?|greenhouse)\b"),
        "carbon emissions (no emission factors are stored)",
    ),
    (
        re.compile(r"\b(power factor|reactive|harmonics?|amps?|amperes?|current draw in amps|frequency)\b"),
        "power factor, current or frequency (only energy and power are stored)",
    ),
    (
        re.compile(
            r"\bvoltage\s+(drops?|dips?|sags?|levels?|readings?|measurements?|fluctuations?)\b|"
            r"\b(measured|actual|minimum|maximum|average)\s+voltage\b"
        ),
        "voltage measurements (only each meter's nominal voltage is stored)",
    ),
    (
        re.compile(r"\b(gas|water|heat meter|litres?|cubic)\b"),
        "gas, water or heat (only electricity is metered)",
    ),
]
# Qualifiers no template applies: the answer is given without them, and says so.
_UNSUPPORTED_QUALIFIERS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\bper\s+(square\s+met(er|re)s?|sq\.?\s*m|m2|m²|sqm|square\s+f(oo|ee)t|floor area)\b|"
            r"\bfloor area\b"
        ),
        "per square metre (the data has no floor areas)",
    ),
    (
        re.compile(r"\bper\s+(occupant|person|employee|head|resident)s?\b"),
        "per occupant (no headcounts are stored)",
    ),
    (re.compile(r"\b(public |bank )?holidays?\b"), "holidays only (there is no holiday calendar)"),
    (
        re.compile(r"\b(average|mean) daily\b|\bdaily average\b|\bper day\b|\ba day on average\b"),
        "the daily average (this answer gives the period's total and its average power)",
    ),
    (
        re.compile(
            r"\b(every|each) (meter|device) (at|in|of)\b|\b(in |for )?each (hour|day)\b|"
            r"\bdaily totals?\b|\bday by day\b|\bbreak(down| it down)\b"
        ),
        "the breakdown (this answer is one total)",
    ),
    (
        re.compile(r"\bin (mwh|gwh|wh|watt[- ]hours|joules?|kj|mj|gj|btus?|therms?)\b"),
        "that unit (energy is given in kWh and power in W)",
    ),
    (
        re.compile(r"\bin (dollars|usd|us\$|pounds|gbp|sterling|yen|francs)\b"),
        "that currency (costs are in the configured currency)",
    ),
    (
        re.compile(
            r"\b(median|percentiles?|p\d\d|standard deviation|std|variance|minimum|min|lowest hourly)\b"
        ),
        "that statistic (this answer gives the total and the average)",
    ),
    (
        re.compile(r"\bthan (during |in )?(the )?(day|daytime|daylight)\b"),
        "the comparison with daytime (this answer covers the night hours only)",
    ),
    (re.compile(r"\b(homes|residential) only\b|\bwhich homes?\b"), "homes only (every site is ranked)"),
    (re.compile(r"\b(offices|commercial) only\b|\bwhich offices?\b"), "offices only (every site is ranked)"),
    (
        re.compile(r"\b(temperature|weather)[- ](adjusted|normali[sz]ed|corrected)\b|\bdegree[- ]days?\b"),
        "temperature adjustment (not modelled)",
    ),
]
_WITHOUT_DAYS = re.compile(
    r"\b(without|excluding|except|apart from|other than|not counting) (the )?(weekends?|weekdays?)\b"
)
_DECLINED: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(excluding|except|apart from|other than|without|minus|not counting)\b(?! (the )?week)"
        ),
        "I can't leave meters or sites out of a total",
    ),
    (
        re.compile(
            r"\b(more|less|fewer|over|under|above|below|at least|at most)( than)? "
            r"\d+(\.\d+)? ?(kwh|kw|w|eur|%)"
        ),
        "I can't filter by a threshold",
    ),
    (
        re.compile(r"\b(most|least|more|less) efficient\b"),
        "efficiency needs an output or a floor area, which the data doesn't have",
    ),
]
_RANKS_BY_COUNT = re.compile(r"\b(most|fewest|least|more|fewer)\s+(meters|devices|circuits)\b")
_DAY_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
_HOURS_SAID = re.compile(r"\b(between|from)\s+\d{1,2}(:\d\d)?\s*(am|pm)?\s*(and|to|-)\s*\d{1,2}")
_ABOUT_ONE = re.compile(
    r"\b(tell me about|describe|details of|info\w* (on|about)) (the|this|that|a) (meter|device)\b"
)
_UNITS_QUESTION = re.compile(
    r"\b(what|which) units?\b|\bunits? (are|is) (these|this|that|those|it)\b|\bin what units?\b|"
    r"\bwhat (do|does) (these|the) numbers mean\b"
)
_NIGHT = re.compile(r"\b(at night|night[- ]?time|overnight|during the night|nights?)\b")
_WEEKDAYS_ONLY = re.compile(r"\b(on |during |only )?(weekdays?|working days?|business days?|workdays?)\b")
_WEEKENDS_ONLY = re.compile(r"\b(on |at |during |only )?(the )?weekends?\b|\bsaturdays? and sundays?\b")
_PER_DEVICE = re.compile(
    r"\bper (device|meter)\b|\b(for|of) each (device|meter)\b|\bper[- ]device\b|"
    r"\bnormali[sz]ed by (devices|meters)\b"
)
_THAN_LAST = re.compile(r"\b(more|less|higher|lower) than (last|the previous|the prior) (week|month)\b")
_FLEET_WORDS = re.compile(
    r"^(we|i|you|they|it|us|our\b.*|(the )?(whole |entire )?fleet|"
    r"all( the| our)? (meters|devices|sites|buildings)|everything|everyone|electricity|energy|consumption|"
    r"the (site|building|meter|device)s?|each (site|meter)|"
    r"the most|the least|most|least|more|less)$"
)
_SUBJECT_PHRASE = re.compile(
    r"\b(?:did|does|do|will|is|was|has|had)\s+(?:the\s+)?([a-z0-9][a-z0-9 '&.-]{1,40}?)\s+"
    r"(?:use|used|consume|consumed|draw|drew|cost|spend|spent|need|using|consuming)\b"
)


def understand(
    question: str, catalog: Catalog, today_in: Callable[[str], date], previous: Understanding | None = None
) -> Understanding:
    """The typed request for one question; `previous` is the last turn of the same conversation.

    `today_in(tz)` is the data clock's date in a timezone: relative dates are read in the timezone of
    the site the question is about (UTC for the fleet when its sites span several zones, said so).
    """
    text = normalise(question)
    if refusal := unsafe_reason(text, catalog.names()):
        return Understanding(intent="unsafe", slots=Slots(), reason=refusal)
    text = correct_spelling(re.sub(r"(\w)'s\b", r"\1", text), catalog)  # "office 5's" is office 5
    if _UNITS_QUESTION.search(text):
        return Understanding(intent="units", slots=Slots())
    for pattern, what in _UNSUPPORTED_MEASURES:
        if pattern.search(text):
            return Understanding(intent="out_of_scope", slots=Slots(), reason=f"I can't answer {what}")
    if _RANKS_BY_COUNT.search(text):  # "which site has the most meters": never a ranking by energy
        return Understanding(
            intent="unknown", slots=Slots(), reason="no template ranks sites by their meters"
        )
    for pattern, why in _DECLINED:
        if pattern.search(text):  # answering without the filter would answer another question
            return Understanding(intent="unknown", slots=Slots(), reason=why)
    if re.search(
        r"\b(which|what)\b.{0,20}\b(sites?|meters?|devices?)\b.{0,30}\b(increase|decrease|rise|drop|change|"
        r"grew|growth|fell)\w*",
        text,
    ):
        return Understanding(
            intent="unknown", slots=Slots(), reason="I can't rank sites or meters by their change"
        )
    devices, sites, unknown = _match_entities(text, catalog)
    if devices and sites:
        sites = [s for s in sites if s.id not in {d.site_id for d in devices}]  # "Meter 5 at Office 5"
        if sites:
            return Understanding(
                intent="clarify",
                slots=Slots(),
                reason="I answer for meters or for sites, not both in one question. Could you ask about "
                + " and ".join(e.name or e.id for e in devices)
                + " and about "
                + " and ".join(e.name or e.id for e in sites)
                + " separately?",
            )
    if (
        not (devices or sites or unknown)
        and previous is None
        and (m := re.search(r"\b(the|this|that) (site|building|meter|device)\b(?! (with|that|which))", text))
        and not re.search(r"\b(which|what|top|most|least|highest|lowest|each|every)\b", text)
    ):
        return Understanding(
            intent="clarify",
            slots=Slots(),
            reason=f"Which {m[2]} do you mean? Name it or give its id, e.g. 'Office 5' or 'dev-00005'.",
        )
    if not (devices or sites or unknown) and (m := _SUBJECT_PHRASE.search(text)):
        phrase = m[1].strip()
        superlative = re.search(r"\b(most|least|biggest|largest|smallest|highest|lowest|top|main)\b", phrase)
        if (
            not _FLEET_WORDS.match(phrase)
            and not superlative
            and not re.fullmatch(r"(meter|device|site)s?", phrase)
        ):
            unknown.append(phrase)
    suggestions = suggest(unknown, catalog) if unknown else []
    not_applied = [what for pattern, what in _UNSUPPORTED_QUALIFIERS if pattern.search(text)]
    intent = _classify(text)
    if intent == "base_load":  # the base load is the daily minimum: asking for it is no statistic left out
        not_applied = [n for n in not_applied if not n.startswith("that statistic")]
    if intent == "device_facts" and not (devices or sites):
        # "what is our total ..." is not about one device; "tell me about the meter" still is (asks which)
        intent = _classify(text, skip=frozenset({"device_facts"}))
        intent = "device_facts" if intent == "unknown" and _ABOUT_ONE.search(text) else intent
    is_follow_up = bool(_FOLLOW_UP.match(text)) or (
        previous is not None and intent == "unknown" and len(text.split()) <= 6
    )
    has_previous = previous is not None and previous.intent in DATA_INTENTS
    if is_follow_up and not has_previous and not (devices or sites or unknown):
        return Understanding(
            intent="clarify",
            slots=Slots(),
            reason="I don't know what that refers to: this conversation has no earlier question I can "
            "build on. Could you ask it in full, naming the meter or site and the period?",
        )
    try:
        follows = previous if is_follow_up and has_previous else None
        return _request(
            text, catalog, today_in, follows, intent, devices, sites, unknown, suggestions, not_applied
        )
    except ImpossibleDate as exc:
        return Understanding(intent="clarify", slots=Slots(), reason=str(exc))


def _request(
    text: str,
    catalog: Catalog,
    today_in: Callable[[str], date],
    previous: Understanding | None,
    intent: Intent,
    devices: list[Entity],
    sites: list[Entity],
    unknown: list[str],
    suggestions: list[str],
    not_applied: list[str],
) -> Understanding:
    tz, tz_note = _timezone([*devices, *sites], catalog)
    if previous is not None:
        slots = previous.slots.model_copy(deep=True)
        keeps = intent == "unknown" or (intent == "usage" and previous.intent != "device_facts")
        intent = previous.intent if keeps else intent  # "and its usage yesterday?" after facts is usage
        if devices or sites or unknown:
            slots.devices, slots.sites, slots.unknown_names = devices, sites, unknown
            slots.subject = "device" if devices else "site" if sites else slots.subject
            slots.tz, slots.tz_note = tz, tz_note
        today = today_in(slots.tz)
        shifted = shift_period(text, slots.period) if slots.period else None
        slots.period = shifted or parse_period(text, today) or slots.period
        slots.hours = parse_hours(text) or slots.hours
        slots.per_device = slots.per_device or bool(_PER_DEVICE.search(text))
        _fill_days(text, slots, intent)
        _fill_numbers(text, slots, intent, keep=True)
        return Understanding(
            intent=intent, slots=slots, follow_up=True, suggestions=suggestions, not_applied=not_applied
        )
    about_energy = bool(_ENERGY_WORDS.search(text)) and not _OFF_TOPIC.search(text)
    if not (devices or sites or unknown) and not about_energy and intent in _NEEDS_ENERGY_WORDS:
        return Understanding(intent="out_of_scope", slots=Slots(), reason="not a question about energy data")
    if intent == "unknown" and (devices or sites):
        intent = "usage"
    slots = Slots(devices=devices, sites=sites, unknown_names=unknown, tz=tz, tz_note=tz_note)
    today = today_in(tz)
    slots.subject = "device" if devices else "site" if sites else _plural_subject(text)
    ranks_sites = (
        re.search(r"\b(sites?|buildings?|locations?|premises|homes?|offices?|houses?)\b", text) and not sites
    )
    slots.rank_group = "site" if ranks_sites else "device"
    slots.count_of = "sites" if ranks_sites and intent == "count" else "devices"
    said = _THAN_LAST.sub(" ", text)
    if intent in ("trend", "compare") and (this := re.search(r"\bthis (week|month)\b", said)):
        said = this[0]  # "compare this week with last week": this week, against the one before
    slots.period = parse_period(said, today, future=intent == "forecast")
    if (
        slots.period is None
        and not unknown
        and (m := DATE_WORDS.search(_without_names(text, devices, sites)))
    ):
        raise ImpossibleDate(
            f"I couldn't read the period in '{m[0]}'. Could you give it as a date or a range, e.g. "
            "'on 2026-11-12', 'last week' or 'in October'?"
        )
    slots.hours = parse_hours(text)
    if slots.hours is None and (m := _HOURS_SAID.search(text)):
        not_applied.append(f"the hours '{m[0]}' (a window across midnight or beyond 24:00 is not supported)")
    part = next((p for p in _DAY_PARTS if re.search(rf"\b(in the |this |every )?{p}s?\b", text)), None)
    if slots.hours is None and part and intent not in ("base_load", "anomalies"):
        slots.hours = HourWindow(start=_DAY_PARTS[part][0], end=_DAY_PARTS[part][1])
    if slots.hours is None and _NIGHT.search(text) and intent not in ("base_load", "anomalies"):
        slots.hours = HourWindow(start=0, end=6)
    _fill_days(text, slots, intent)
    slots.per_device = bool(_PER_DEVICE.search(text))
    _fill_numbers(text, slots, intent, keep=False)
    if intent == "compare" and len(devices) + len(sites) < 2:
        intent = "trend" if re.search(r"\b(previous|week before|month before|last week)\b", text) else "usage"
    return Understanding(intent=intent, slots=slots, suggestions=suggestions, not_applied=not_applied)


def _without_names(text: str, devices: list[Entity], sites: list[Entity]) -> str:
    """The question without the names it matched ("Elm Street 2026" is a name, not a year)."""
    for entity in [*devices, *sites]:
        for said in (entity.name, entity.id):
            if said:
                text = text.replace(said.lower(), " ")
    return text


def _timezone(entities: list[Entity], catalog: Catalog) -> tuple[str, str | None]:
    zones = {e.timezone for e in entities if e.timezone}
    if len(zones) == 1:
        return zones.pop(), None
    if not entities:
        fleet = {s.timezone for s in catalog.sites if s.timezone}
        if len(fleet) == 1:
            return fleet.pop(), None
    if len(zones) > 1 or not entities:
        return "UTC", "days and hours are UTC, because the sites span several time zones"
    return "UTC", None


def suggest(names: list[str], catalog: Catalog, limit: int = 3) -> list[str]:
    """The known devices and sites closest in spelling to names that matched nothing (rapidfuzz)."""
    labels = {
        f"{e.name} ({e.id})" if e.name else e.id: f"{e.name or ''} {e.id}".lower()
        for e in [*catalog.devices, *catalog.sites]
    }
    found: list[str] = []
    for name in names:
        hits = process.extract(name, labels, scorer=fuzz.WRatio, limit=limit, score_cutoff=50)
        found += [label for _, _, label in hits if label not in found]
    return found[:limit]


_VOCABULARY = {
    "yesterday", "today", "tomorrow", "tonight", "week", "weeks", "month", "months", "last", "previous",
    "weekday", "weekdays", "weekend", "weekends", "energy", "consumption", "consume", "consumed", "forecast",
    "compare", "average", "hourly", "night", "meter", "meters", "device", "devices", "office", "offices",
    "site", "sites", "building", "buildings", "anomaly", "anomalies", "flagged", "silent", "morning",
    "evening", "afternoon", "usage", "electricity", "between", "highest", "lowest", "least", "most",
    "profile", "baseload", "standby", "tariff", "peak", "demand", "power", "trend", "trending", "during",
    *(m for m in MONTHS if len(m) > 3), *WEEKDAYS,
}  # fmt: skip
_SYNONYMS = {"metre": "meter", "metres": "meters", "kwhs": "kwh", "consumtion": "consumption"}


def correct_spelling(text: str, catalog: Catalog) -> str:
    """Fix misspelt keywords and name words ("yestrday", "ofice"); ids, numbers and short words stay."""
    vocab = _VOCABULARY | set(catalog.name_index())
    words = []
    for word in text.split(" "):
        bare = word.strip("?!.,;:'\"()")
        fixed = _SYNONYMS.get(bare)
        if fixed is None and len(bare) >= 5 and bare.isalpha() and bare not in vocab:
            hit = process.extractOne(bare, vocab, scorer=fuzz.ratio, score_cutoff=85)
            fixed = hit[0] if hit else None
        words.append(word.replace(bare, fixed) if fixed else word)
    return " ".join(words)


_INTENT_RULES: list[tuple[Intent, re.Pattern[str]]] = [
    ("weekday_weekend", re.compile(r"\bweekdays?\b.{0,40}\bweekends?\b|\bweekends?\b.{0,40}\bweekdays?\b")),
    (
        "advice",
        re.compile(
            r"\b(how (can|do|should|could) (i|we)|tips?|advice|recommend\w*|reduce|cut|"
            r"lower (my|our|the)|sav(e|ing)|improve|efficien\w*)\b"
        ),
    ),
    (
        "silent_devices",
        re.compile(
            r"\b(silent|stopped reporting|not reporting|offline|gone quiet|no data from|"
            r"haven'?t reported|stale|missing data|dead meters?|stopped sending|not sending|"
            r"no longer (sending|reporting))\b"
        ),
    ),
    (
        "count",
        re.compile(
            r"\bhow many\b(?!.{0,40}\b(kwh|energy|power|watts?|hours?|days?|euros?|incidents?|anomal\w*|"
            r"(of each|per|by|for each) (meter |device )?(type|kind|model)s?)\b)|"
            r"\bnumber of (meters|devices|sites|buildings)\b|"
            r"\b(list|name)\b.{0,20}\b(meters|devices|sites|buildings)\b"
        ),
    ),
    (
        "anomalies",
        re.compile(
            r"\b(flag\w*|anomal\w*|incidents?|unusual|alerts?|abnormal|weird|spikes?|"
            r"faults?|what went wrong)\b"
        ),
    ),
    (
        "forecast",
        re.compile(
            r"\b(forecast\w*|predict\w*|will\b|expected to|going to|tomorrow|next \d* ?"
            r"(hours?|days?|week))\b"
        ),
    ),
    (
        "cost",
        re.compile(
            r"\b(cost\w*|bill\w*|spend|spent|price|pay|paid|tariff|time[- ]of[- ]use|tou|"
            r"euros?|dollars?|pounds?)\b|[€$£]"
        ),
    ),
    (
        "trend",
        re.compile(
            r"\btrend\w*|\bgoing (up|down)\b|\bincreas\w*|\bdecreas\w*|\bris(e|es|ing|en)\b|"
            r"\bfall(s|ing|en)?\b|\bfell\b|\bdrop(s|ped|ping)?\b|\bg(o|one|oes) (up|down)\b|"
            r"\bwent (up|down)\b|"
            r"\b(more|less|higher|lower) than (last|the previous|the prior) (week|month)\b|"
            r"\bcompared (with|to) the (week|month) before\b"
        ),
    ),
    (
        "base_load",
        re.compile(r"\b(base ?load|standby|always[- ]on|baseline load|idle load|overnight minimum)\b"),
    ),
    (
        "load_profile",
        re.compile(
            r"\b(load profile|profile|typical day|daily pattern|hour[- ]by[- ]hour|"
            r"by hour|hourly pattern|shape)\b|\bhow does .{0,40}\b(change|vary|evolve|develop)\b"
        ),
    ),
    (
        "top_k",
        re.compile(
            r"\b(which|what|top)\b.{0,25}\b(meters?|devices?|sites?|buildings?)\b.{0,40}"
            r"\b(peak|max(imum)?|highest)\s+(demand|power|load|draw)\b"
        ),
    ),
    ("usage", re.compile(r"\b(average|avg|mean)\s+(power|load|demand|draw|consumption|usage)\b")),
    (
        "peak_hour",
        re.compile(r"\b(peak\w*|busiest|highest hour|max(imum)? demand|when .{0,30}\b(most|highest))\b"),
    ),
    (
        "compare",
        re.compile(r"\b(compare\w*|comparison|versus|vs\.?|difference between|more than .{0,20} or)\b"),
    ),
    (
        "top_k",
        re.compile(
            r"\b(top|most|least|highest|lowest|rank\w*|biggest|smallest|largest|"
            r"worst|best)\b"
        ),
    ),
    (
        "device_facts",
        re.compile(
            r"\b(tell me about|what is|what's|who is|info\w*|details?|describe|"
            r"installed|meter type|voltage|interval|where is)\b"
        ),
    ),
    ("usage", re.compile(r"\b(use[ds]?|using|usage|consum\w*|energy|kwh|draw\w*|how much|total)\b")),
]


def _classify(text: str, skip: frozenset[str] = frozenset()) -> Intent:
    for intent, pattern in _INTENT_RULES:
        if intent not in skip and pattern.search(text):
            if intent == "device_facts" and re.search(
                r"\b(consum\w*|use[ds]?|usage|energy|kwh|cost\w*)\b", text
            ):
                continue  # "what is the total consumption of ..." asks for figures, not installation facts
            if (
                intent == "forecast"
                and re.search(r"\b(yesterday|last|ago|was|did)\b", text)
                and not re.search(r"\b(forecast\w*|predict\w*)\b", text)
            ):
                continue
            if intent == "advice" and re.search(r"\b(how much|which|what was)\b", text):
                continue
            return intent
    return "unknown"


def _plural_subject(text: str) -> Literal["device", "site", "fleet"]:
    if re.search(r"\b(sites?|buildings?|locations?|premises)\b", text):
        return "site"
    if re.search(r"\b(meters?|devices?|circuits?)\b", text) and re.search(
        r"\b(which|top|most|least|highest|lowest|rank\w*|biggest|smallest|largest|silent|each|every|all)\b",
        text,
    ):
        return "device"
    return "fleet"


def _fill_days(text: str, slots: Slots, intent: Intent) -> None:
    """Weekdays or weekends only; "without the weekend" is weekdays."""
    if intent == "weekday_weekend":
        return
    if m := _WITHOUT_DAYS.search(text):
        slots.days = "weekends" if m[3].startswith("weekday") else "weekdays"
    elif _WEEKENDS_ONLY.search(text) and not _WEEKDAYS_ONLY.search(text):
        slots.days = "weekends"
    elif _WEEKDAYS_ONLY.search(text) and not _WEEKENDS_ONLY.search(text):
        slots.days = "weekdays"


_K_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}


def _fill_numbers(text: str, slots: Slots, intent: Intent, *, keep: bool) -> None:
    text = re.sub(
        rf"\b({'|'.join(_K_WORDS)})\s+(meters|devices|sites|buildings|homes|offices)\b",
        lambda w: f"{_K_WORDS[w[1]]} {w[2]}",
        text,
    )
    text = re.sub(rf"\b(top|bottom)\s+({'|'.join(_K_WORDS)})\b", lambda w: f"{w[1]} {_K_WORDS[w[2]]}", text)
    if m := re.search(
        r"\b(?:top|bottom|first|lowest|highest|least|most)\s+(\d{1,2})\b|\b(\d{1,2})\s+"
        r"(?:meters|devices|sites|buildings|homes|offices)\b",
        text,
    ):
        slots.k = min(50, max(1, int(m[1] or m[2])))
    elif intent == "top_k" and re.search(
        r"\b(which|what|who)\b(?!.*\b(meters|devices|sites|buildings)\b)", text
    ):
        slots.k = 1  # "which meter used the most" asks for one
    elif not keep:
        slots.k = None
    if re.search(r"\b(least|lowest|smallest|bottom|fewest|best)\b", text):
        slots.order = "asc"
    elif re.search(r"\b(most|highest|biggest|largest|top|worst)\b", text) or not keep:
        slots.order = "desc"
    if re.search(r"\b(power|watts?|kw\b|demand|draw\w*)\b", text) and not re.search(r"\bkwh\b", text):
        slots.metric = "power"
    elif re.search(r"\b(energy|kwh|consum\w*|use[ds]?|usage)\b", text) or not keep:
        slots.metric = "energy"
    if intent == "cost" or re.search(r"\b(tariff|per kwh)\b", text):
        price = re.search(
            r"(?:[€$£]\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:[€$£]|eur|euros?|usd|gbp|p\b|cents?)?"
            r"\s*(?:/|per)\s*kwh)",
            text,
        )
        value = float(price[1] or price[2]) if price else None
        if price and re.search(r"\d\s*(p|cents?)\s*(/|per)", text):
            value = (value or 0) / 100
        tou = bool(
            re.search(r"\b(time[- ]of[- ]use|tou|peak and off[- ]peak|off[- ]peak|day[/ -]night)\b", text)
        )
        slots.tariff = Tariff(kind="time_of_use" if tou else "flat", flat_per_kwh=value)
    m = re.search(
        r"\b(?:for|in|over)\s+(?:more than\s+|over\s+|at least\s+)?(\d{1,4})\s*(hours?|days?)\b", text
    )
    if m and intent == "silent_devices":
        slots.silent_hours = int(m[1]) * (24 if m[2].startswith("day") else 1)


# --- entity matching ----------------------------------------------------------------------------------


def _match_entities(text: str, catalog: Catalog) -> tuple[list[Entity], list[Entity], list[str]]:
    devices: list[Entity] = []
    sites: list[Entity] = []
    unknown: list[str] = []
    tokens = set(re.findall(r"[\w-]+", text))
    for entity in catalog.by_id(tokens):
        (devices if entity.kind == "device" else sites).append(entity)
    # "meter 17", "device #3", "site b": the number or letter at the end of an id; "office 55" is
    # a numbered name that exists exactly or not at all (never its neighbour "Office 5")
    bases = catalog.numbered_bases()
    for base, number in re.findall(
        rf"\b({'|'.join(map(re.escape, bases)) or '(?!)'})\s+(\d{{1,6}})\b(?![\w-])", text
    ):
        if base in ("meter", "device", "site", "building"):
            continue
        if not _names_contain([*catalog.devices, *catalog.sites], f"{base} {number}", exact=True):
            unknown.append(f"{base} {number}")
    for kind, number in re.findall(
        r"\b(meter|device|site|building)(?:\s+(?:no\.?|number)\s*|\s*#\s*|\s+)(\d{1,6}|[a-z])\b(?![\w-])",
        text,
    ):
        pool = catalog.sites if kind in ("site", "building") else catalog.devices
        hits = [
            e for e in pool if _id_suffix(e.id) == number.lstrip("0") or e.id.lower().endswith(f"-{number}")
        ]
        if len(hits) == 1:
            target = sites if hits[0].kind == "site" else devices
            if hits[0] not in target:
                target.append(hits[0])
        elif (
            not hits
            and (number.isdigit() or kind in ("site", "building"))
            and not _names_contain(pool, f"{kind} {number}")
        ):
            unknown.append(f"{kind} {number}")
    known = {e.id.lower() for e in [*catalog.devices, *catalog.sites]}
    for token in re.findall(r"(?<![\w-])[a-z]{2,}(?:-[a-z0-9]+)+(?![\w-])", text):
        if token not in known and any(c.isdigit() for c in token) and token not in unknown:
            unknown.append(token)  # looks like an id ("zz-nope-404", "dev-99999") and is none
    for entity in _fuzzy_names(text, catalog):
        target = devices if entity.kind == "device" else sites
        if entity not in target:
            target.append(entity)
    return devices, sites, unknown


def _names_contain(pool: list[Entity], phrase: str, *, exact: bool = False) -> bool:
    if exact:
        return any(e.name and phrase == " ".join(_WORD.findall(e.name.lower())) for e in pool)
    return any(e.name and phrase in e.name.lower() for e in pool)


def _id_suffix(entity_id: str) -> str:
    m = re.search(r"([0-9]+|[a-z])$", entity_id.lower())
    return m[1].lstrip("0") if m and m[1].isdigit() else (m[1] if m else "")


def _fuzzy_names(text: str, catalog: Catalog) -> list[Entity]:
    """Names said in the question, exactly or nearly (a typo, a missing word).

    Only entities sharing a word (or a near-spelling of one) with the question are compared in full,
    so the cost grows with the matches, not with the fleet.
    """
    words = [w.rstrip(".'-") for w in _WORD.findall(text)]
    vocab = catalog.name_index()
    candidates: set[int] = set()
    for word in set(words):
        if len(word) < 3 or word in _STOP:
            continue
        if word in vocab:
            candidates.update(vocab[word])
        elif not word.isdigit():
            for token in get_close_matches(word, vocab.keys(), n=3, cutoff=0.8):
                candidates.update(vocab[token])
    entities = [*catalog.devices, *catalog.sites]
    names = {i: " ".join(_WORD.findall((entities[i].name or "").lower())) for i in candidates}
    padded = f" {' '.join(words)} "
    exact = [i for i in sorted(candidates) if names[i] and f" {names[i]} " in padded]
    # "HVAC plant 2" said exactly: its numbered siblings ("HVAC plant 25") are not typos of it
    taken = {_base(names[i]) for i in exact}
    scored: list[tuple[float, int]] = []
    for i in sorted(candidates - set(exact)):
        name = names[i]
        size = len(name.split())
        if not name or _base(name) in taken or (size < 2 and len(name) < 5):
            continue  # one short word ("Lab") is too easy to match by accident
        if re.search(r"\d$", name):
            continue  # a numbered name ("Office 5") is said exactly: "Office 55" is another site
        best = 0.0
        for n in {size - 1, size, size + 1} - {0}:
            for j in range(len(words) - n + 1):
                best = max(best, SequenceMatcher(None, " ".join(words[j : j + n]), name).ratio())
        if best >= FUZZY_CUTOFF:
            scored.append((best, i))
    top = max((score for score, _ in scored), default=1.0)
    return [entities[i] for i in exact] + [entities[i] for score, i in scored if score >= top - 0.02]


def _base(name: str) -> str:
    return re.sub(r"\s*\d+$", "", name)
