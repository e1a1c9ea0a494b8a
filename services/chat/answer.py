"""Answer one question: understand, retrieve (SQL templates + vector index), generate, check.

`answer_question` is the whole service minus HTTP; the Flask app and `gridsight chat` both call it.
Dependencies come in as arguments (`ChatDeps`), so tests hand it a temp warehouse, a fake Gemini
client or a fixed clock. One warehouse unit of work per question keeps the DuckDB lock short; a
model call never happens while the lock is held.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.chat.api import ChatRequest, ChatResponse, Citation
from services.chat.composer import Composed, Context, compose
from services.chat.conversations import ConversationStore, Turn
from services.chat.documents import (
    catalog_documents,
    example_documents,
    incident_documents,
    playbook_documents,
)
from services.chat.generation import GenerationInput, Generator, LocalGenerator
from services.chat.grounding import check_grounding
from services.chat.index import Document, VectorIndex
from services.chat.model_request import ModelRequest, from_model_request
from services.chat.periods import HourWindow, Period, utc_bounds
from services.chat.queries import QueryResult, Scope, render_template, run_template
from services.chat.safety import writes_sql as _writes_sql
from services.chat.sql_guard import UnsafeSQL, guard_sql
from services.chat.understanding import (
    DATA_INTENTS,
    Catalog,
    Entity,
    Slots,
    Understanding,
    understand,
    unsafe_reason,
)
from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import Warehouse, open_warehouse, snapshot_path

__all__ = ["ChatDeps", "answer_question", "build_deps"]

_log = get_logger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXAMPLE_MATCH = 0.55  # cosine similarity above which a rephrased question takes a known question's intent
MAX_INCIDENT_DOCS = 500

_BREAKDOWN = re.compile(r"\b(of each|for each|for every|broken down|break ?down|grouped|split by|per|by)\b")
# One query for everything a question needs before its template: devices with their sites, the data
# clock and the anomalies' signature (which says when incident documents must be re-indexed).
CONTEXT_SQL = """
WITH sites AS (
  SELECT site_id, name AS site_name, site_type, timezone FROM energy_analytics.dim_site
),
devices AS (
  SELECT device_id, name, site_id, meter_type, interval_minutes FROM energy_analytics.dim_device
)
SELECT devices.device_id, devices.name, COALESCE(devices.site_id, sites.site_id) AS site_id,
  devices.meter_type, devices.interval_minutes, sites.site_name, sites.site_type, sites.timezone,
  (SELECT MAX(hour) FROM energy_analytics.hourly_consumption) AS last_hour,
  (SELECT CONCAT(CAST(COUNT(*) AS STRING), '/', COALESCE(CAST(MAX(detected_at) AS STRING), ''))
   FROM energy_analytics.anomalies) AS incidents_signature
FROM devices FULL OUTER JOIN sites ON sites.site_id = devices.site_id
ORDER BY site_id, devices.device_id
"""
INCIDENTS_SQL = """
SELECT a.incident_id, a.device_id, d.name, a.start_hour, a.anomaly_type, a.severity, a.explanation
FROM energy_analytics.anomalies AS a
LEFT JOIN energy_analytics.dim_device AS d ON d.device_id = a.device_id
ORDER BY a.start_hour DESC, a.incident_id
LIMIT @limit
"""
SCHEMA_FOR_SQL = (
    "energy_analytics.dim_site, energy_analytics.dim_device, energy_analytics.hourly_consumption, "
    "energy_analytics.forecasts, energy_analytics.anomalies\n"
    "dim_site(site_id, name, site_type, timezone, latitude, longitude)\n"
    "dim_device(device_id, site_id, name, meter_type, nominal_voltage, interval_minutes, installed_at, "
    "timezone)\n"
    "hourly_consumption(device_id, site_id, hour TIMESTAMP UTC, avg_power_w, max_power_w, energy_kwh, "
    "avg_temp_c, max_temp_c, occupancy_share, reading_count, coverage)\n"
    "forecasts(device_id, target_hour TIMESTAMP UTC, p10, p50, p90 (kWh), model_version, made_at)\n"
    "anomalies(incident_id, device_id, start_hour, end_hour, anomaly_type, severity, score, expected, "
    "actual, explanation)"
)
HELP = (
    "I answer questions about your meters' energy data: usage, rankings, comparisons, peak hours, load "
    "profiles, base load, weekday vs weekend, trends, cost, forecasts, anomalies, device details, counts and "
    'silent meters. For example: "Which meter used the most last week?" or "Which site uses the most '
    'energy per device?"'
)
UNITS = (
    "Energy is in kilowatt-hours (kWh), power in watts (W), cost in the configured currency per kWh, "
    "shares in percent; times are local to the site (UTC when the sites span several time zones), and "
    "each answer names its timezone."
)


@dataclass
class ChatDeps:
    settings: Settings
    store: ConversationStore
    index: VectorIndex | None = None
    generator: Generator = field(default_factory=LocalGenerator)
    open_wh: Callable[..., Any] = open_warehouse
    schema_checked: bool = False  # the warehouse schema is ensured on the first question only
    indexed_signature: str | None = None  # the data the index was last synced with, in this process
    context_cache: tuple[str, Any] | None = None  # (warehouse version, _FleetContext) of the last question


@dataclass
class _Retrieved:
    understanding: Understanding
    context: Context
    queries: list[QueryResult] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    message: str | None = None  # a fixed reply (no data, clarification, refusal) instead of a composition
    entity_rows: list[dict[str, Any]] = field(default_factory=list)


def build_deps(settings: Settings) -> ChatDeps:
    """The configured backends: local index and composer by default, Vertex/BigQuery/Gemini by settings."""
    from services.chat.generation import open_generator
    from services.chat.index import open_index

    return ChatDeps(
        settings=settings,
        store=ConversationStore(settings.home / "chat" / "conversations"),
        index=open_index(settings),
        generator=open_generator(settings),
    )


def answer_question(request: ChatRequest, caller: str, deps: ChatDeps) -> ChatResponse:
    conversation_id = request.conversation_id or deps.store.new_id()
    # refused before the warehouse is opened, with the names known from the last question masked (a
    # meter named "Robert'); DROP TABLE ..." is a subject); the understanding checks again with fresh names
    known = deps.context_cache[1].catalog.names() if deps.context_cache is not None else []
    refusal = unsafe_reason(request.question, known)
    if refusal is not None and (known or _writes_sql(request.question)):
        _log.info("chat refused", extra={"caller": caller, "reason": refusal})
        answer = f"I can't do that: {refusal}. I can answer questions about the data instead."
        return ChatResponse(answer=answer, intent="unsafe", refused=True, conversation_id=conversation_id)
    previous = deps.store.last_turn(conversation_id, caller) if request.conversation_id else None
    # with Gemini, the model reads a first question into the typed request (before the warehouse lock);
    # follow-ups build on the previous turn's slots, which the rules do
    proposed = deps.generator.read_request(request.question) if previous is None and refusal is None else None
    with deps.open_wh(deps.settings, ensure_schema=not deps.schema_checked, read_only=True) as wh:
        got = _retrieve(wh, request.question, previous.understanding if previous else None, deps, proposed)
    deps.schema_checked = True
    if got.message is None and deps.index is not None:
        got.documents = _documents_for(got, request.question, deps.index)
    response = _respond(request.question, got, deps, conversation_id)
    if got.understanding.intent in DATA_INTENTS:  # a follow-up builds on the last question with data
        deps.store.append(
            conversation_id, caller, Turn(question=request.question, understanding=got.understanding)
        )
    _log.info(
        "chat answered",
        extra={
            "intent": response.intent,
            "refused": response.refused,
            "generator": response.generator,
            "grounded": response.grounded,
            "caller": caller,
            "queries": len(got.queries),
        },
    )
    return response


# --- retrieval ----------------------------------------------------------------------------------------
@dataclass
class _FleetContext:
    catalog: Catalog
    devices: list[dict[str, Any]]
    sites: list[dict[str, Any]]
    clock: datetime | None
    signature: str


def _load_context(wh: Warehouse) -> _FleetContext:
    frame = wh.query_df(CONTEXT_SQL)
    records = frame.to_dict(orient="records")
    devices = [r for r in records if isinstance(r["device_id"], str)]
    sites = list({r["site_id"]: r for r in records if isinstance(r["site_id"], str)}.values())
    sites = [
        {
            "site_id": r["site_id"],
            "name": r["site_name"],
            "site_type": r["site_type"],
            "timezone": r["timezone"],
        }
        for r in sites
    ]
    tz_of = {s["site_id"]: s["timezone"] for s in sites}
    catalog = Catalog(
        devices=[
            Entity(
                kind="device",
                id=d["device_id"],
                name=d["name"] or None,
                site_id=d["site_id"],
                timezone=tz_of.get(d["site_id"]) or None,
            )
            for d in devices
        ],
        sites=[
            Entity(kind="site", id=s["site_id"], name=s["name"] or None, timezone=s["timezone"] or None)
            for s in sites
        ],
    )
    last = frame["last_hour"].iloc[0] if len(frame) else None
    clock = (
        None
        if last is None or str(last) == "NaT"
        else last.to_pydatetime().astimezone(UTC) + timedelta(hours=1)
    )
    signature = f"{len(devices)}/{len(sites)}/{frame['incidents_signature'].iloc[0] if len(frame) else ''}"
    return _FleetContext(catalog, devices, sites, clock, signature)


def _warehouse_version(settings: Settings) -> str:
    """Changes whenever the warehouse may have: the published DuckDB snapshot readers open (replaced
    whole, never written in place); on BigQuery, the current minute (refreshes are minutes apart)."""
    if settings.warehouse_backend != "duckdb":
        return f"minute-{int(time.time() // 60)}"
    parts = []
    for path in (snapshot_path(settings),):
        stat = path.stat() if path.exists() else None
        parts.append(f"{stat.st_mtime_ns}:{stat.st_size}" if stat else "-")
    return "/".join(parts)


def _today(clock: datetime | None, tz: str) -> date:
    anchor = (clock - timedelta(hours=1)) if clock else datetime.now(UTC)
    return anchor.astimezone(ZoneInfo(tz)).date()


def _retrieve(
    wh: Warehouse,
    question: str,
    previous: Understanding | None,
    deps: ChatDeps,
    proposed: ModelRequest | None = None,
) -> _Retrieved:
    version = _warehouse_version(deps.settings)
    if deps.context_cache is not None and deps.context_cache[0] == version:
        fleet = deps.context_cache[1]
    else:
        fleet = _load_context(wh)
        deps.context_cache = (version, fleet)
    catalog, clock = fleet.catalog, fleet.clock
    if deps.index is not None and deps.indexed_signature != fleet.signature:
        # only when devices, sites or incidents changed; the index has its own file and lock
        deps.index.sync(_doc_source(wh, fleet.devices, fleet.sites))
        deps.indexed_signature = fleet.signature
    try:
        u = understand(question, catalog, lambda tz: _today(clock, tz), previous)
        if proposed is not None and u.intent != "unsafe":  # the rules keep the last word on refusals
            u = from_model_request(proposed, catalog, lambda tz: _today(clock, tz)) or u
    except (ValueError, LookupError, OverflowError) as exc:  # a failure to understand is a reply, not a 500
        _log.warning("question not understood", extra={"error": repr(exc)})
        u = Understanding(
            intent="clarify",
            slots=Slots(),
            reason="I could not read that question. Could you rephrase it, naming the meter or site and "
            "the period?",
        )
    if u.intent == "unknown" and deps.index is not None and u.reason is None:
        u = _intent_from_examples(question, u, deps.index)
    tz = u.slots.tz
    named = {e.id for e in [*u.slots.devices, *u.slots.sites]}
    entity_rows = [
        {
            "device_id": d["device_id"],
            "name": d["name"],
            "site_id": d["site_id"],
            "site_name": d["site_name"],
            "timezone": d["timezone"],
        }
        for d in fleet.devices
        if d["device_id"] in named or d["site_id"] in named
    ]
    ctx = Context(intent=u.intent, subject=_subject(u), tz=tz, currency=deps.settings.chat_currency)
    got = _Retrieved(understanding=u, context=ctx, entity_rows=entity_rows)
    if u.intent == "unsafe":
        got.message = f"I can't do that: {u.reason}. I can answer questions about the data instead."
    elif u.intent == "out_of_scope":
        got.message = (
            f"{u.reason}, so I can't answer that. {HELP}"
            if u.reason and u.reason.startswith("I can't")
            else f"That is outside what I know. {HELP}"
        )
    elif u.intent == "clarify":
        got.message = u.reason or "Could you say that again with the meter or site and the period?"
    elif u.intent == "units":
        got.message = UNITS
    elif u.slots.unknown_names:
        got.message = _unknown_message(u)
    elif u.intent in DATA_INTENTS:
        if clock is None and u.intent != "device_facts":
            got.message = "There is no consumption data in the warehouse yet, so I have no figures to give."
        else:
            _run_intent(wh, got, clock or EPOCH, catalog, deps.settings)
    elif u.intent == "unknown" and u.reason and deps.generator.name == "local":
        got.message = f"I can't answer that yet: {u.reason}. {HELP}"
    elif u.intent == "unknown":
        _free_form(wh, question, got, deps)
    return got


def _unknown_message(u: Understanding) -> str:
    """ "I don't know a meter called X" plus the closest names; no query runs for a guess."""
    parts = []
    for name in u.slots.unknown_names:
        kind = (
            "a meter"
            if re.match(r"(meter|device|dev)\b", name) or ("-" in name and not name.startswith("site"))
            else "a site"
            if re.match(r"(site|office|home|building)\b", name)
            else "a meter or site"
        )
        parts.append(f"I don't know {kind} called '{name}'")
    text = "; ".join(parts) + ", so I have no data for it and answered nothing in its place."
    if u.suggestions:
        text += " Did you mean " + " or ".join(u.suggestions) + "?"
    return text


def _subject(u: Understanding) -> str:
    entities = [*u.slots.devices, *u.slots.sites]
    if not entities:
        return "the whole fleet"
    return ", ".join(f"{e.name} ({e.id})" if e.name else e.id for e in entities)


def _intent_from_examples(question: str, u: Understanding, index: VectorIndex) -> Understanding:
    """A rephrased question takes the intent of the nearest known-good question, if it is near enough.

    Not when it asks for a breakdown ("of each meter type", "by site"): the known question would
    answer it without the breakdown, which is another question's answer.
    """
    if _BREAKDOWN.search(question.lower()):
        return u
    hits = index.search(question, k=1, kinds=["example"])
    if not hits or hits[0].score < EXAMPLE_MATCH:
        return u
    intent = hits[0].document.meta["intent"]
    _log.info("intent from a known question", extra={"example": hits[0].document.id, "score": hits[0].score})
    return u.model_copy(update={"intent": intent}) if intent in DATA_INTENTS | {"advice"} else u


def _period(u: Understanding, today: date) -> Period:
    """The period asked for or, when none was named, each intent's default (said in the answer)."""
    if u.slots.period is not None:
        return u.slots.period
    if u.intent == "forecast":
        return Period(
            start=today,
            end=today + timedelta(days=1),
            label="over the next day",
            unit="range",
            rolling_hours=24,
        )
    if u.intent in ("weekday_weekend", "trend"):
        days = 28 if u.intent == "weekday_weekend" else 7
        start = today - timedelta(days=days)
        end = today - timedelta(days=1)
        return Period(
            start=start, end=today, label=f"the {days} full days from {start} to {end}", unit="range"
        )
    days = 30 if u.intent in ("cost",) else 7
    start = today - timedelta(days=days - 1)
    return Period(start=start, end=today + timedelta(days=1), label=f"from {start} to {today}", unit="range")


def _device_ids(u: Understanding, catalog: Catalog) -> list[str]:
    if u.slots.devices:
        return [d.id for d in u.slots.devices]
    site_ids = {s.id for s in u.slots.sites}
    return [d.id for d in catalog.devices if d.site_id in site_ids]


# What each intent's template can apply; anything else asked for is named in the reply as not applied.
_TAKES_HOURS = {
    "usage", "top_k", "compare", "peak_hour", "load_profile", "base_load", "cost", "forecast",
    "weekday_weekend", "trend",
}  # fmt: skip
_TAKES_DAYS = _TAKES_HOURS - {"forecast", "weekday_weekend"}
_TAKES_PER_DEVICE = {"usage", "top_k", "compare"}
_TAKES_PERIOD = DATA_INTENTS - {"device_facts", "silent_devices", "count"}


def _qualifiers(
    u: Understanding, ctx: Context
) -> tuple[HourWindow | None, Literal["weekdays", "weekends"] | None]:
    """The hours and days the template will apply; the rest goes to `not_applied`, said in the reply."""
    slots, intent = u.slots, u.intent
    hours, days = slots.hours, slots.days
    if hours and intent not in _TAKES_HOURS:
        u.not_applied.append(f"the hours {hours.label} (this answer covers whole days)")
        hours = None
    if days and intent not in _TAKES_DAYS:
        u.not_applied.append(f"{days} only (this answer covers every day)")
        days = None
    if slots.per_device and (intent not in _TAKES_PER_DEVICE or (slots.devices and not slots.sites)):
        u.not_applied.append("per device (this answer is not normalised)")
    if slots.period is not None and intent not in _TAKES_PERIOD:
        u.not_applied.append(f"the period {slots.period.label} (this answer is about now)")
    ctx.days_label = days
    return hours, days


def _run_intent(
    wh: Warehouse, got: _Retrieved, clock: datetime, catalog: Catalog, settings: Settings
) -> None:
    u, ctx = got.understanding, got.context
    intent, slots = u.intent, u.slots
    ids = _device_ids(u, catalog)
    whole_fleet = not (slots.devices or slots.sites)
    if not whole_fleet and not ids:
        got.message = f"{ctx.subject} has no devices, so there is no data for it."
        return
    if intent == "device_facts" and whole_fleet:
        got.message = "Which device? Name it or give its id, e.g. 'tell me about dev-00005'."
        return
    today = _today(clock, ctx.tz)
    period = _period(u, today)
    if slots.period is None and intent in _TAKES_PERIOD - {"anomalies", "forecast"}:
        ctx.notes.append(f"No period was named, so this covers {period.label}.")
    if slots.tz_note and intent in _TAKES_PERIOD:
        ctx.notes.append(slots.tz_note[0].upper() + slots.tz_note[1:] + ".")
    start, end = utc_bounds(period, ctx.tz, clock)
    hours, days = _qualifiers(u, ctx)
    if intent == "anomalies" and slots.period is None and not whole_fleet:
        start, ctx.period_label = EPOCH, "on record"
    else:
        ctx.period_label = period.label
    ctx.hours_label = hours.label if hours else None
    scope = Scope(
        kind="fleet" if whole_fleet else "devices" if slots.devices else "sites",
        device_ids=ids,
        site_ids=[s.id for s in slots.sites],
        tz=ctx.tz,
        start=start,
        end=end,
        hours=(hours.start, hours.end) if hours else None,
        days=days,
    )
    params: dict[str, Any] = {}
    group = "device" if slots.devices else "site" if slots.sites else "fleet"
    kwargs: dict[str, Any] = {}
    template: str = intent
    if intent in ("usage", "compare"):
        kwargs = {"group": group}
        ctx.metric = slots.metric
        ctx.per_device = slots.per_device and group != "device"
    elif intent == "top_k":
        params["limit"] = slots.k or 5
        ctx.metric, ctx.descending = slots.metric, slots.order == "desc"
        ranks_sites = slots.rank_group == "site" and whole_fleet
        ctx.per_device = slots.per_device and ranks_sites
        if slots.per_device and not ranks_sites:
            u.not_applied.append("per device (a ranking of devices is already per device)")
        kwargs = {
            "group": "site" if ranks_sites else "device",
            "order_by": "max_device_power_w"
            if slots.metric == "power"
            else "energy_per_device_kwh"
            if ctx.per_device
            else "energy_kwh",
            "descending": slots.order == "desc",
        }
    elif intent == "peak_hour":
        kwargs = {"order_by": "max_power_w" if slots.metric == "power" else "energy_kwh"}
    elif intent == "trend":
        span = period.end - period.start
        before = Period(start=period.start - span, end=period.start, label="the period before", unit="range")
        scope.previous_start = utc_bounds(before, ctx.tz, clock)[0]
        ctx.previous_label = f"{before.start} to {before.end - timedelta(days=1)}"
    elif intent == "count":
        template = "count_sites" if slots.count_of == "sites" and whole_fleet else "count_devices"
        ctx.period_label = None
    elif intent == "cost":
        tariff = slots.tariff
        tou = tariff is not None and tariff.kind == "time_of_use"
        flat = (
            tariff.flat_per_kwh if tariff and tariff.flat_per_kwh else None
        ) or settings.chat_flat_tariff_per_kwh
        peak_start, peak_end = settings.chat_tou_peak_hours
        params |= {
            "peak_start": peak_start,
            "peak_end": peak_end,
            "currency": settings.chat_currency,
            "peak_price": settings.chat_tou_peak_per_kwh if tou else flat,
            "offpeak_price": settings.chat_tou_offpeak_per_kwh if tou else flat,
        }
        ctx.tariff_kind = "time_of_use" if tou else "flat"
    elif intent == "silent_devices":
        silent = slots.silent_hours or settings.chat_silent_hours
        params |= {"clock": clock, "cutoff": clock - timedelta(hours=silent), "silent_hours": silent}
        ctx.period_label = f"no data in the {silent} hours before the newest data"
    if intent in ("top_k", "compare"):
        template = "usage"
    ctx.notes[:0] = [f"Not applied: {what}." for what in u.not_applied]
    result = run_template(wh, template, scope, params, **kwargs)
    got.queries.append(result)
    if not result.rows or _empty(result):
        when = f" {ctx.period_label}" if ctx.period_label else ""
        what = {"forecast": "no forecast", "anomalies": "no anomalies", "silent_devices": "no silent devices"}
        if intent == "silent_devices":
            got.message = f"No device is silent: every device has reported within {ctx.period_label}."
        else:
            got.message = f"There is {what.get(intent, 'no data')} for {ctx.subject}{when}."
            if u.not_applied:
                got.message += " " + " ".join(f"Not applied: {w}." for w in u.not_applied)


def _empty(result: QueryResult) -> bool:
    first = result.rows[0]
    measures = [
        k for k in ("energy_kwh", "p50_kwh", "base_load_w", "avg_energy_kwh", "avg_daily_kwh") if k in first
    ]
    return bool(measures) and all(first[k] is None for k in measures)


def _doc_source(wh: Warehouse, devices: list[dict[str, Any]], sites: list[dict[str, Any]]) -> list[Document]:
    incidents = wh.query_df(INCIDENTS_SQL, {"limit": MAX_INCIDENT_DOCS}).to_dict(orient="records")
    return [
        *catalog_documents(devices, sites),
        *incident_documents(incidents),
        *playbook_documents(),
        *example_documents(),
    ]


def _documents_for(got: _Retrieved, question: str, index: VectorIndex) -> list[Document]:
    intent = got.understanding.intent
    if intent == "advice":
        return [h.document for h in index.search(question, k=2, kinds=["playbook"]) if h.score > 0.1]
    if intent == "anomalies" and got.queries and got.queries[0].rows:
        kinds = " ".join(str(r.get("anomaly_type")) for r in got.queries[0].rows[:3])
        return [
            h.document
            for h in index.search(f"investigate a flagged anomaly {kinds}", k=1, kinds=["playbook"])
        ]
    if intent == "silent_devices":
        return [h.document for h in index.search("silent meters stopped reporting", k=1, kinds=["playbook"])]
    return []


def _free_form(wh: Warehouse, question: str, got: _Retrieved, deps: ChatDeps) -> None:
    """Only with a model: ask it for SQL, prove the SQL safe, run it; otherwise explain what works."""
    examples = [
        (
            d.title,
            render_template(d.meta["intent"] if d.meta["intent"] not in ("top_k", "compare") else "usage"),
        )
        for d in example_documents()[:4]
        if d.meta["intent"] in DATA_INTENTS
    ]
    sql = deps.generator.write_sql(question, SCHEMA_FOR_SQL, examples)
    if sql is None:
        got.message = f"I'm not sure what you are asking. {HELP}"
        return
    try:
        safe = guard_sql(sql)
        if deps.settings.warehouse_backend == "bigquery":
            _dry_run(safe, deps.settings)
        frame = wh.query_df(safe)
    except (UnsafeSQL, ValueError) as exc:
        _log.warning("model SQL refused", extra={"reason": str(exc)})
        got.message = f"I could not answer that safely ({exc}). {HELP}"
        return
    from services.chat.queries import _plain

    rows = [{k: _plain(v) for k, v in r.items()} for r in frame.head(50).to_dict(orient="records")]
    got.queries.append(QueryResult(template="model_sql", sql=safe, params={}, rows=rows))
    got.context.intent = "model_sql"


def _dry_run(sql: str, settings: Settings) -> None:
    from google.cloud import bigquery

    from services.chat.sql_guard import bigquery_dry_run
    from shared.warehouse.dialect import TableMap, render

    client = bigquery.Client(project=settings.gcp_project, location=settings.bq_location)
    mapped = render(
        sql, "bigquery", TableMap.of({"energy_analytics": (settings.gcp_project, settings.analytics_dataset)})
    )
    bigquery_dry_run(client, mapped, [], maximum_bytes_billed=settings.bq_maximum_bytes_billed)


# --- generation and the check -------------------------------------------------------------------------
def _respond(question: str, got: _Retrieved, deps: ChatDeps, conversation_id: str) -> ChatResponse:
    u, ctx = got.understanding, got.context
    citations = [Citation(kind="sql", sql=q.sql, params=q.params, rows=q.rows) for q in got.queries]
    if got.queries and got.entity_rows:
        # who the question was about, as the context query returned them (names are quoted, not computed)
        citations.append(Citation(kind="sql", sql=CONTEXT_SQL.strip(), params={}, rows=got.entity_rows))
    citations += [Citation(kind="document", id=d.id, title=d.title) for d in got.documents]
    base: dict[str, Any] = {
        "intent": u.intent,
        "conversation_id": conversation_id,
        "citations": citations,
        "not_applied": u.not_applied,
    }
    if got.message is not None:
        return ChatResponse(
            answer=got.message, refused=u.intent == "unsafe", suggestions=u.suggestions, **base
        )
    if ctx.intent == "model_sql":
        draft = Composed(answer="", values=[])
    elif u.intent == "advice":
        draft = compose(ctx, [], got.documents) if got.documents else Composed(answer=HELP, values=[])
    else:
        draft = compose(ctx, got.queries, got.documents)
    rows = [r for q in got.queries for r in q.rows] + got.entity_rows
    params = [v for q in got.queries for v in q.params.values()]
    texts = [d.text for d in got.documents] + [f"[{d.title}]" for d in got.documents] + ctx.labels()

    def grounded(text: str) -> bool:
        result = check_grounding(text, rows, params=params, documents=texts, question=question)
        if not result.ok:
            _log.warning("ungrounded answer rejected", extra={"numbers": result.ungrounded})
        return result.ok

    if deps.generator.name != "local":
        data = GenerationInput(
            question=question, context=ctx, queries=got.queries, documents=got.documents, draft=draft.answer
        )
        text = deps.generator.write_answer(data)
        if text and grounded(text):
            return ChatResponse(answer=text, values=draft.values, generator=deps.generator.name, **base)
        if not draft.answer:
            return ChatResponse(
                answer="I found rows for that but could not state them reliably; see the cited query.",
                grounded=False,
                **base,
            )
    if not grounded(draft.answer):
        return ChatResponse(
            answer="I could not produce an answer I can back with data; see the cited query.",
            grounded=False,
            **base,
        )
    return ChatResponse(answer=draft.answer, values=draft.values, **base)
