"""What the dashboard shows, read from the modelled warehouse tables; no second copy of the data.

Every function takes an open `Warehouse` (the caller owns the unit of work) and returns a pydantic
model that is the JSON contract of one endpoint. SQL is parameterised GoogleSQL so the same text runs
on DuckDB and BigQuery; time arithmetic is done here in Python and bound as parameters, which keeps
the SQL free of dialect-specific date functions.

"Now" is the fleet's data clock (the end of the newest hour in `hourly_consumption`), not the wall
clock: a replayed or simulated fleet lives in its own time, and "energy today" must mean the day the
data is in.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from shared.errors import NotFound
from shared.warehouse import Warehouse

__all__ = [
    "DeviceDetail",
    "DeviceInfo",
    "DeviceSummary",
    "FleetOverview",
    "FleetTotals",
    "ForecastPoint",
    "Incident",
    "LoadPoint",
    "SiteSummary",
    "device_detail",
    "fleet_overview",
]

HOUR = timedelta(hours=1)
# No acknowledgement workflow exists yet, so an incident counts as open until a day of data has
# followed its end.
OPEN_INCIDENT_HOURS = 24
MAX_DETAIL_HOURS = 24 * 31
FORECAST_HORIZON_HOURS = 48
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}  # as in shared.events


class SiteSummary(BaseModel):
    site_id: str
    name: str | None
    site_type: str | None
    timezone: str | None
    device_count: int


class DeviceSummary(BaseModel):
    device_id: str
    name: str | None
    site_id: str | None
    site_name: str | None
    meter_type: str | None
    last_reading_hour: datetime | None = Field(description="Newest UTC hour with at least one reading.")
    last_avg_power_w: float | None
    energy_today_kwh: float = Field(description="Since UTC midnight of the data clock's day, up to as_of.")
    energy_same_day_last_week_kwh: float = Field(description="The same hours seven days earlier.")
    change_pct: float | None = Field(description="None when last week had no energy to compare with.")
    open_incidents: int


class Incident(BaseModel):
    incident_id: str
    device_id: str
    start_hour: datetime
    end_hour: datetime
    anomaly_type: str | None
    severity: str | None
    score: float | None
    expected: float | None
    actual: float | None
    explanation: str | None


class FleetTotals(BaseModel):
    site_count: int
    device_count: int
    energy_today_kwh: float
    energy_same_day_last_week_kwh: float
    change_pct: float | None
    open_incidents: int


class FleetOverview(BaseModel):
    as_of: datetime | None = Field(description="End (exclusive) of the newest hour of data; None if empty.")
    today_start: datetime | None
    totals: FleetTotals
    sites: list[SiteSummary]
    devices: list[DeviceSummary]
    open_incidents: list[Incident]


class DeviceInfo(BaseModel):
    device_id: str
    name: str | None
    site_id: str | None
    site_name: str | None
    site_type: str | None
    timezone: str | None
    meter_type: str | None
    interval_minutes: int | None


class LoadPoint(BaseModel):
    hour: datetime
    energy_kwh: float | None
    avg_power_w: float | None
    max_power_w: float | None
    coverage: float | None


class ForecastPoint(BaseModel):
    target_hour: datetime
    p10: float | None
    p50: float | None
    p90: float | None
    model_version: str | None


class DeviceDetail(BaseModel):
    device: DeviceInfo
    window_start: datetime
    window_end: datetime = Field(description="End of observed data shown; forecasts run past it.")
    forecast_end: datetime
    load: list[LoadPoint]
    forecast: list[ForecastPoint]
    anomalies: list[Incident]


# --- SQL (GoogleSQL, named parameters) ----------------------------------------------------------

_DATA_CLOCK_SQL = "select max(hour) as last_hour from energy_analytics.hourly_consumption"

_SITES_SQL = """
select s.site_id, s.name, s.site_type, s.timezone, count(d.device_id) as device_count
from energy_analytics.dim_site as s
left join energy_analytics.dim_device as d on d.site_id = s.site_id
group by s.site_id, s.name, s.site_type, s.timezone
order by s.site_id
"""

_DEVICES_SQL = """
select d.device_id, d.name, d.site_id, s.name as site_name, d.meter_type
from energy_analytics.dim_device as d
left join energy_analytics.dim_site as s on s.site_id = d.site_id
order by d.device_id
"""

# one scan of hourly_consumption for every device's last hour and its energy today and a week ago
_DEVICE_ENERGY_SQL = """
with per_device as (
  select
    device_id,
    max(hour) as last_hour,
    sum(case when hour >= @today_start and hour < @as_of then energy_kwh else 0 end) as today_kwh,
    sum(case when hour >= @week_start and hour < @week_end then energy_kwh else 0 end) as last_week_kwh
  from energy_analytics.hourly_consumption
  group by device_id
)
select p.device_id, p.last_hour, p.today_kwh, p.last_week_kwh, h.avg_power_w as last_avg_power_w
from per_device as p
join energy_analytics.hourly_consumption as h
  on h.device_id = p.device_id and h.hour = p.last_hour
"""

_INCIDENT_COLUMNS = (
    "incident_id, device_id, start_hour, end_hour, anomaly_type, severity, score, expected, actual, "
    "explanation"
)

_OPEN_INCIDENTS_SQL = f"""
select {_INCIDENT_COLUMNS}
from energy_analytics.anomalies
where end_hour > @open_since
  and (status is null or status != 'withdrawn')
  and device_id in (select device_id from energy_analytics.dim_device)
order by start_hour desc, incident_id
"""

_DEVICE_SQL = """
select d.device_id, d.name, d.site_id, s.name as site_name, d.site_type, d.timezone, d.meter_type,
  d.interval_minutes
from energy_analytics.dim_device as d
left join energy_analytics.dim_site as s on s.site_id = d.site_id
where d.device_id = @device_id
"""

_DEVICE_CLOCK_SQL = """
select max(hour) as last_hour
from energy_analytics.hourly_consumption
where device_id = @device_id
"""

_LOAD_SQL = """
select hour, energy_kwh, avg_power_w, max_power_w, coverage
from energy_analytics.hourly_consumption
where device_id = @device_id and hour >= @start and hour < @end
order by hour
"""

_FORECAST_SQL = """
select target_hour, p10, p50, p90, model_version
from energy_analytics.forecasts
where device_id = @device_id and target_hour >= @start and target_hour < @end
order by target_hour
"""

_DEVICE_INCIDENTS_SQL = f"""
select {_INCIDENT_COLUMNS}
from energy_analytics.anomalies
where device_id = @device_id and end_hour > @start and start_hour < @end
  and (status is null or status != 'withdrawn')
order by start_hour, incident_id
"""


# --- public functions ----------------------------------------------------------------------------


def fleet_overview(warehouse: Warehouse) -> FleetOverview:
    """Sites, devices and their energy today against the same hours a week earlier, plus open incidents."""
    last_hour = _scalar_time(_rows(warehouse, _DATA_CLOCK_SQL), "last_hour")
    sites = [SiteSummary(**r) for r in _rows(warehouse, _SITES_SQL)]
    devices = _rows(warehouse, _DEVICES_SQL)
    if last_hour is None:
        summaries = [_device_summary(d, {}, 0) for d in devices]
        return FleetOverview(
            as_of=None,
            today_start=None,
            totals=_totals(sites, summaries, 0),
            sites=sites,
            devices=summaries,
            open_incidents=[],
        )

    as_of = last_hour + HOUR
    today_start = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    if today_start == as_of:  # the data ends exactly at midnight: "today" is the day that just ended
        today_start -= timedelta(days=1)
    week = timedelta(days=7)
    window = {
        "today_start": today_start,
        "as_of": as_of,
        "week_start": today_start - week,
        "week_end": as_of - week,
    }
    energy = {r["device_id"]: r for r in _rows(warehouse, _DEVICE_ENERGY_SQL, window)}
    open_since = {"open_since": as_of - OPEN_INCIDENT_HOURS * HOUR}
    incidents = [Incident(**r) for r in _rows(warehouse, _OPEN_INCIDENTS_SQL, open_since)]
    per_device: dict[str, int] = {}
    for incident in incidents:
        per_device[incident.device_id] = per_device.get(incident.device_id, 0) + 1
    summaries = [
        _device_summary(d, energy.get(d["device_id"], {}), per_device.get(d["device_id"], 0)) for d in devices
    ]
    incidents.sort(key=lambda i: (-SEVERITY_RANK.get(i.severity or "", 0), -i.start_hour.timestamp()))
    return FleetOverview(
        as_of=as_of,
        today_start=today_start,
        totals=_totals(sites, summaries, len(incidents)),
        sites=sites,
        devices=summaries,
        open_incidents=incidents,
    )


def device_detail(warehouse: Warehouse, device_id: str, *, hours: int = 7 * 24) -> DeviceDetail:
    """The device's hourly load over the last `hours` of its data, forecasts over that window and the
    next two days, and the incidents overlapping it. Raises NotFound for a device not in dim_device
    (never installed, or decommissioned)."""
    if not 1 <= hours <= MAX_DETAIL_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_DETAIL_HOURS}, got {hours}")
    rows = _rows(warehouse, _DEVICE_SQL, {"device_id": device_id})
    if not rows:
        raise NotFound(f"unknown device {device_id!r}")
    info = DeviceInfo(**rows[0])

    last_hour = _scalar_time(_rows(warehouse, _DEVICE_CLOCK_SQL, {"device_id": device_id}), "last_hour")
    window_end = (last_hour + HOUR) if last_hour else _current_hour()
    window_start = window_end - hours * HOUR
    forecast_end = window_end + FORECAST_HORIZON_HOURS * HOUR
    params = {"device_id": device_id, "start": window_start}
    return DeviceDetail(
        device=info,
        window_start=window_start,
        window_end=window_end,
        forecast_end=forecast_end,
        load=[LoadPoint(**r) for r in _rows(warehouse, _LOAD_SQL, {**params, "end": window_end})],
        forecast=[
            ForecastPoint(**r) for r in _rows(warehouse, _FORECAST_SQL, {**params, "end": forecast_end})
        ],
        anomalies=[
            Incident(**r) for r in _rows(warehouse, _DEVICE_INCIDENTS_SQL, {**params, "end": forecast_end})
        ],
    )


# --- helpers -------------------------------------------------------------------------------------


def _device_summary(device: dict[str, Any], energy: dict[str, Any], open_incidents: int) -> DeviceSummary:
    today = float(energy.get("today_kwh") or 0.0)
    last_week = float(energy.get("last_week_kwh") or 0.0)
    return DeviceSummary(
        **device,
        last_reading_hour=energy.get("last_hour"),
        last_avg_power_w=_as_float(energy.get("last_avg_power_w")),
        energy_today_kwh=round(today, 3),
        energy_same_day_last_week_kwh=round(last_week, 3),
        change_pct=_change_pct(today, last_week),
        open_incidents=open_incidents,
    )


def _totals(sites: list[SiteSummary], devices: list[DeviceSummary], open_incidents: int) -> FleetTotals:
    today = sum(d.energy_today_kwh for d in devices)
    last_week = sum(d.energy_same_day_last_week_kwh for d in devices)
    return FleetTotals(
        site_count=len(sites),
        device_count=len(devices),
        energy_today_kwh=round(today, 3),
        energy_same_day_last_week_kwh=round(last_week, 3),
        change_pct=_change_pct(today, last_week),
        open_incidents=open_incidents,
    )


def _change_pct(now: float, before: float) -> float | None:
    return round(100.0 * (now - before) / before, 1) if before > 0 else None


def _rows(warehouse: Warehouse, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows as plain dicts straight from Arrow (no pandas boxing: the fleet page has a row per device),
    with NULL/NaN as None and every timestamp an aware UTC datetime, as pydantic wants them."""
    return [
        {key: _clean(value) for key, value in row.items()} for row in warehouse.query(sql, params).to_pylist()
    ]


def _clean(value: Any) -> Any:
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _scalar_time(rows: list[dict[str, Any]], column: str) -> datetime | None:
    return rows[0][column] if rows else None


def _current_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
