"""The grounded local composer: turns retrieved rows into a sentence, one small function per intent.

It never computes a figure: every number it writes is a cell of a cited row, formatted with the
precision the SQL rounded it to, so the grounding check can hold the answer to its citations. The
`values` it returns are those same cells, labelled, for clients and the question-set test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from services.chat.index import Document
from services.chat.queries import QueryResult

__all__ = ["Composed", "Context", "Value", "compose"]


class Value(BaseModel):
    label: str
    value: float | int | str | None
    unit: str | None = None
    entity_id: str | None = None


class Context(BaseModel):
    """What the answer talks about, in words: who, when (labels, not measurements), which timezone."""

    intent: str
    subject: str
    period_label: str | None = None
    hours_label: str | None = None
    tz: str = "UTC"
    currency: str = "EUR"
    tariff_kind: str | None = None
    metric: str = "energy"
    descending: bool = True
    per_device: bool = False
    days_label: str | None = None
    previous_label: str | None = None
    notes: list[str] = Field(default_factory=list, description="Said with the answer: defaults, not applied.")

    def labels(self) -> list[str]:
        fixed = (self.subject, self.period_label, self.hours_label, self.tz, self.previous_label)
        return [x for x in fixed if x] + self.notes


class Composed(BaseModel):
    answer: str
    values: list[Value]


def _num(value: Any) -> str:
    """As the SQL rounded it: thousands separators, no trailing zeros beyond what the cell holds."""
    if isinstance(value, int):
        return f"{value:,}"
    text = repr(float(value))
    if "e" in text:
        return f"{float(value):,.6f}".rstrip("0").rstrip(".")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{int(whole):,}" + (f".{frac}" if frac else "") if whole != "-0" else f"-0.{frac}"


def _when(ctx: Context) -> str:
    parts = [
        p
        for p in (
            ctx.period_label,
            f"on {ctx.days_label}" if ctx.days_label else None,
            f"between {ctx.hours_label}" if ctx.hours_label else None,
        )
        if p
    ]
    return (" " + " ".join(parts)) if parts else ""


def _name(row: dict[str, Any], id_key: str = "entity_id") -> str:
    name, ident = row.get("name"), row.get(id_key)
    if ident == "fleet":
        return "The whole fleet"
    return f"{name} ({ident})" if name and name != ident else str(ident)


def _usage(ctx: Context, q: QueryResult) -> Composed:
    parts, values = [], []
    for row in q.rows:
        group = row["entity_id"] == "fleet" or (row.get("devices") or 1) > 1
        peak = f", highest hour {_num(row['peak_hour_power_w'])} W" if group else ""
        if ctx.metric == "power":
            parts.append(
                f"{_name(row)} drew {_num(row['avg_power_w'])} W on average{peak} "
                f"({_num(row['energy_kwh'])} kWh in {_num(row['hours_with_data'])} hours with data)"
            )
            values.append(
                Value(label="avg_power_w", value=row["avg_power_w"], unit="W", entity_id=row["entity_id"])
            )
        elif ctx.per_device:
            parts.append(
                f"{_name(row)} used {_num(row['energy_per_device_kwh'])} kWh per device "
                f"({_num(row['energy_kwh'])} kWh over {_num(row['devices'])} devices)"
            )
            values.append(
                Value(
                    label="energy_per_device_kwh",
                    value=row["energy_per_device_kwh"],
                    unit="kWh",
                    entity_id=row["entity_id"],
                )
            )
        else:
            parts.append(
                f"{_name(row)} used {_num(row['energy_kwh'])} kWh "
                f"(average {_num(row['avg_power_w'])} W{peak})"
            )
        values.append(
            Value(label="energy_kwh", value=row["energy_kwh"], unit="kWh", entity_id=row["entity_id"])
        )
    return Composed(answer="; ".join(parts) + f"{_when(ctx)} ({ctx.tz}).", values=values)


def _top_k(ctx: Context, q: QueryResult) -> Composed:
    metric = ctx.metric
    lines, values = [], []
    for row in q.rows:
        if metric == "power":
            lines.append(f"- {_name(row)}: peak {_num(row['max_device_power_w'])} W")
            values.append(
                Value(
                    label="max_device_power_w",
                    value=row["max_device_power_w"],
                    unit="W",
                    entity_id=row["entity_id"],
                )
            )
        elif ctx.per_device:
            lines.append(
                f"- {_name(row)}: {_num(row['energy_per_device_kwh'])} kWh per device "
                f"({_num(row['energy_kwh'])} kWh, {_num(row['devices'])} devices)"
            )
            values.append(
                Value(
                    label="energy_per_device_kwh",
                    value=row["energy_per_device_kwh"],
                    unit="kWh",
                    entity_id=row["entity_id"],
                )
            )
        else:
            lines.append(f"- {_name(row)}: {_num(row['energy_kwh'])} kWh")
            values.append(
                Value(label="energy_kwh", value=row["energy_kwh"], unit="kWh", entity_id=row["entity_id"])
            )
    what = "peak demand" if metric == "power" else "energy per device" if ctx.per_device else "energy"
    head = f"{'Highest' if ctx.descending else 'Lowest'} {what}{_when(ctx)} ({ctx.tz}):"
    if len(q.rows) == 1:
        return Composed(answer=f"{head} {lines[0][2:]}.", values=values)
    return Composed(answer=head + "\n" + "\n".join(lines), values=values)


def _weekday_weekend(ctx: Context, q: QueryResult) -> Composed:
    by_kind = {r["day_kind"]: r for r in q.rows}
    parts, values = [], []
    for kind in ("weekday", "weekend"):
        if row := by_kind.get(kind):
            parts.append(f"{_num(row['avg_daily_kwh'])} kWh a day on {kind}s ({_num(row['days'])} days)")
            values.append(Value(label=f"{kind}_avg_daily_kwh", value=row["avg_daily_kwh"], unit="kWh"))
        else:
            parts.append(f"no {kind} data")
    text = f"{ctx.subject} used {' and '.join(parts)}, {ctx.period_label} ({ctx.tz})."
    return Composed(answer=text[0].upper() + text[1:], values=values)


def _trend(ctx: Context, q: QueryResult) -> Composed:
    row = q.rows[0]
    values = [
        Value(label="energy_kwh", value=row["energy_kwh"], unit="kWh"),
        Value(label="previous_energy_kwh", value=row["previous_energy_kwh"], unit="kWh"),
    ]
    text = (
        f"{ctx.subject} used {_num(row['energy_kwh'])} kWh{_when(ctx)} against "
        f"{_num(row['previous_energy_kwh'])} kWh in the same span before ({ctx.previous_label}, {ctx.tz})"
    )
    change = row.get("change_pct")
    if change is None or not row.get("previous_hours_with_data"):
        text += ": there is no earlier data to compare with."
    else:
        direction = "up" if change > 0 else "down" if change < 0 else "unchanged"
        text += (
            f": {direction} {_num(row['change_abs_pct'])}%." if direction != "unchanged" else ": unchanged."
        )
        values.append(Value(label="change_pct", value=change, unit="%"))
    if row.get("previous_hours_with_data") != row.get("hours_with_data"):
        text += (
            f" The spans have {_num(row['hours_with_data'])} and {_num(row['previous_hours_with_data'])} "
            "hours with data, so compare with care."
        )
    return Composed(answer=text[0].upper() + text[1:], values=values)


def _count_devices(ctx: Context, q: QueryResult) -> Composed:
    first = q.rows[0]
    count, sites = first["devices"], first["sites_with_devices"]
    listed = ", ".join(_name(r, "device_id") for r in q.rows[:10])
    text = (
        f"{ctx.subject[0].upper() + ctx.subject[1:]} has {_num(count)} meter{'s' if count != 1 else ''} "
        f"at {_num(sites)} site{'s' if sites != 1 else ''}{', including' if count > 10 else ':'} {listed}."
    )
    return Composed(answer=text, values=[Value(label="devices", value=count)])


def _count_sites(ctx: Context, q: QueryResult) -> Composed:
    count = q.rows[0]["sites"]
    listed = ", ".join(_name(r, "site_id") for r in q.rows[:10])
    lead = ", including" if count > 10 else ":"
    text = f"There are {_num(count)} site{'s' if count != 1 else ''}{lead} {listed}."
    return Composed(answer=text, values=[Value(label="sites", value=count)])


def _compare(ctx: Context, q: QueryResult) -> Composed:
    first, *rest = q.rows
    values = [
        Value(label="energy_kwh", value=r["energy_kwh"], unit="kWh", entity_id=r["entity_id"]) for r in q.rows
    ]
    others = ", ".join(f"{_name(r)} {_num(r['energy_kwh'])} kWh" for r in rest)
    text = f"{_name(first)} used {_num(first['energy_kwh'])} kWh{_when(ctx)}; {others}."
    if rest and first.get("gap_kwh") is not None:
        text += f" The difference is {_num(first['gap_kwh'])} kWh"
        text += f" ({_num(first['gap_pct'])}% more)." if first.get("gap_pct") is not None else "."
        values.append(Value(label="gap_kwh", value=first["gap_kwh"], unit="kWh"))
    return Composed(answer=text, values=values)


def _peak(ctx: Context, q: QueryResult) -> Composed:
    row = q.rows[0]
    hour = int(row["local_hour"])
    text = (
        f"The peak hour for {ctx.subject}{_when(ctx)} was {row['local_date']} {hour:02d}:00 {ctx.tz} with "
        f"{_num(row['energy_kwh'])} kWh."
    )
    return Composed(
        answer=text,
        values=[
            Value(label="energy_kwh", value=row["energy_kwh"], unit="kWh"),
            Value(label="local_hour", value=row["local_hour"], unit="hour"),
        ],
    )


def _profile(ctx: Context, q: QueryResult) -> Composed:
    top = max(q.rows, key=lambda r: r["avg_energy_kwh"] or 0)
    low = min(q.rows, key=lambda r: r["avg_energy_kwh"] or 0)
    text = (
        f"Average hourly load profile of {ctx.subject}{_when(ctx)} ({ctx.tz}): highest at "
        f"{int(top['local_hour']):02d}:00 with {_num(top['avg_energy_kwh'])} kWh, lowest at "
        f"{int(low['local_hour']):02d}:00 with {_num(low['avg_energy_kwh'])} kWh."
    )
    values = [
        Value(label=f"hour_{int(r['local_hour']):02d}", value=r["avg_energy_kwh"], unit="kWh") for r in q.rows
    ]
    return Composed(answer=text, values=values)


def _base_load(ctx: Context, q: QueryResult) -> Composed:
    row = q.rows[0]
    text = (
        f"The base load of {ctx.subject}{_when(ctx)} was {_num(row['base_load_w'])} W (the average of each "
        f"day's lowest hour), about {_num(row['base_load_share_pct'])}% of the {_num(row['energy_kwh'])} kWh "
        "used."
    )
    return Composed(
        answer=text,
        values=[
            Value(label="base_load_w", value=row["base_load_w"], unit="W"),
            Value(label="base_load_share_pct", value=row["base_load_share_pct"], unit="%"),
        ],
    )


def _cost(ctx: Context, q: QueryResult) -> Composed:
    row = q.rows[0]
    currency = row.get("currency") or ctx.currency
    if ctx.tariff_kind == "time_of_use":
        text = (
            f"On the time-of-use tariff, {ctx.subject}{_when(ctx)} cost {_num(row['cost'])} {currency}: "
            f"{_num(row['peak_kwh'])} kWh at the peak price {_num(row['peak_price_per_kwh'])} and "
            f"{_num(row['offpeak_kwh'])} kWh off-peak at {_num(row['offpeak_price_per_kwh'])} {currency}/kWh."
        )
    else:
        text = (
            f"At {_num(row['peak_price_per_kwh'])} {currency}/kWh, {ctx.subject}{_when(ctx)} cost "
            f"{_num(row['cost'])} {currency} for {_num(row['energy_kwh'])} kWh."
        )
    return Composed(
        answer=text,
        values=[
            Value(label="cost", value=row["cost"], unit=currency),
            Value(label="energy_kwh", value=row["energy_kwh"], unit="kWh"),
        ],
    )


def _forecast(ctx: Context, q: QueryResult) -> Composed:
    first = q.rows[0]
    if len(q.rows) == 1:
        text = (
            f"Forecast for {ctx.subject} at {first['local_date']} {int(first['local_hour']):02d}:00 "
            f"{ctx.tz}: "
            f"{_num(first['p50_kwh'])} kWh (p10 {_num(first['p10_kwh'])}, p90 {_num(first['p90_kwh'])}), "
            f"model {first['model_version']}."
        )
    else:
        text = (
            f"Forecast for {ctx.subject}{_when(ctx)} ({ctx.tz}): {_num(first['total_p50_kwh'])} kWh in total "
            f"(p10 {_num(first['total_p10_kwh'])}, p90 {_num(first['total_p90_kwh'])}) over "
            f"{_num(first['hours'])} forecast hours, model {first['model_version']}."
        )
    key = "p50_kwh" if len(q.rows) == 1 else "total_p50_kwh"
    return Composed(answer=text, values=[Value(label="p50_kwh", value=first[key], unit="kWh")])


def _anomalies(ctx: Context, q: QueryResult) -> Composed:
    count = q.rows[0]["incidents"]
    lines = [
        f"- {r['local_date']} {int(r['local_hour']):02d}:00, {_name(r, 'device_id')}: {r['severity']} "
        f"{r['anomaly_type']} (actual {_num(r['actual'])} vs expected {_num(r['expected'])}). "
        f'Explanation on record: "{r["explanation"]}"'
        for r in q.rows[:5]
    ]
    head = f"{_num(count)} incident{'s' if count != 1 else ''} for {ctx.subject}{_when(ctx)} ({ctx.tz})"
    head += ", newest first:" if count > 1 else ":"
    return Composed(
        answer=head + "\n" + "\n".join(lines),
        values=[
            Value(label="incidents", value=count),
            *[Value(label="actual", value=r["actual"], entity_id=r["device_id"]) for r in q.rows[:5]],
        ],
    )


def _facts(ctx: Context, q: QueryResult) -> Composed:
    parts = []
    for r in q.rows:
        last = (
            f"last data {r['last_data_date']} {int(r['last_data_hour']):02d}:00 {r['timezone']}"
            if r.get("last_data_date")
            else "no data yet"
        )
        parts.append(
            f"{_name(r, 'device_id')} is a {r['meter_type']} meter ({_num(r['nominal_voltage'])} V nominal, "
            f"{_num(r['interval_minutes'])}-minute readings) at {r['site_name']} ({r['site_id']}, "
            f"{r['site_type']}), installed {r['installed_on']}; {last}."
        )
    return Composed(
        answer=" ".join(parts),
        values=[
            Value(label="nominal_voltage", value=r["nominal_voltage"], unit="V", entity_id=r["device_id"])
            for r in q.rows
        ],
    )


def _silent(ctx: Context, q: QueryResult) -> Composed:
    count = q.rows[0]["silent_devices"]
    lines = [
        f"- {_name(r, 'device_id')}: "
        + (
            f"last data {r['last_data_date']} {int(r['last_data_hour']):02d}:00, "
            f"silent for {_num(r['hours_silent'])} h"
            if r.get("last_data_date")
            else "no data ever"
        )
        for r in q.rows[:10]
    ]
    head = f"{_num(count)} device{'s' if count != 1 else ''} silent ({ctx.period_label}, {ctx.tz}):"
    return Composed(
        answer=head + "\n" + "\n".join(lines), values=[Value(label="silent_devices", value=count)]
    )


COMPOSERS: dict[str, Callable[[Context, QueryResult], Composed]] = {
    "usage": _usage,
    "top_k": _top_k,
    "compare": _compare,
    "peak_hour": _peak,
    "load_profile": _profile,
    "base_load": _base_load,
    "cost": _cost,
    "forecast": _forecast,
    "anomalies": _anomalies,
    "device_facts": _facts,
    "silent_devices": _silent,
    "weekday_weekend": _weekday_weekend,
    "trend": _trend,
    "count_devices": _count_devices,
    "count_sites": _count_sites,
}


def compose(ctx: Context, queries: list[QueryResult], documents: list[Document]) -> Composed:
    """An answer from the first query's rows, plus the documents quoted verbatim as further reading."""
    composer = COMPOSERS.get(queries[0].template, COMPOSERS.get(ctx.intent)) if queries else None
    if ctx.intent in ("top_k", "compare"):
        composer = COMPOSERS[ctx.intent]
    composed = composer(ctx, queries[0]) if composer and queries else Composed(answer="", values=[])
    if composed.answer and ctx.notes:
        first = [n for n in ctx.notes if n.startswith("Not applied")]
        last = [n for n in ctx.notes if not n.startswith("Not applied")]
        text = " ".join([*first, composed.answer, *last])
        composed = Composed(answer=text, values=composed.values)
    if documents:
        tips = "\n".join(f"[{d.title}] {d.text}" for d in documents)
        joiner = "\n\nFrom the playbook:\n" if composed.answer else ""
        composed = Composed(answer=composed.answer + joiner + tips, values=composed.values)
    return composed
