"""Parameterised GoogleSQL templates over the modelled tables: every number chat says comes from here.

Values (ids, bounds, prices, k) are always bound as `@parameters`. The only text spliced into a
template is a grouping fragment chosen from the closed `_GROUPS` table below, never anything a user
typed. Final figures are rounded in SQL, so the answer can quote exactly what the cited row says and
the grounding check can hold it to that.

Local time: `EXTRACT(HOUR FROM hour AT TIME ZONE @tz)` and `DATE(hour, @tz)` mean the same on
BigQuery and (through sqlglot) DuckDB, whose timestamps are TIMESTAMPTZ; UTC bounds are computed in
Python from the site's calendar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.warehouse import Warehouse

__all__ = ["TEMPLATES", "QueryResult", "Scope", "run_template"]

Group = Literal["device", "site", "fleet"]
ScopeKind = Literal["fleet", "devices", "sites"]
MAX_ROWS = 50


class Scope(BaseModel):
    """Who and when, resolved: the bound values every template shares.

    `kind` picks the filter's shape (none, by device, by site); a site filter on hourly rows uses
    their site_id, which is far cheaper than listing every device of a large site.
    """

    kind: ScopeKind = "fleet"
    device_ids: list[str] = Field(default_factory=list, description="Also filled for sites (their devices).")
    site_ids: list[str] = Field(default_factory=list)
    tz: str = "UTC"
    start: datetime
    end: datetime
    hours: tuple[int, int] | None = Field(default=None, description="Local [start, end) hours, if any.")
    days: Literal["weekdays", "weekends"] | None = Field(default=None, description="Only these local days.")
    previous_start: datetime | None = Field(default=None, description="Start of the period compared with.")

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"tz": self.tz, "start": self.start, "end": self.end}
        params |= {"device_ids": self.device_ids, "site_ids": self.site_ids}
        if self.hours:
            params |= {"hod_start": self.hours[0], "hod_end": self.hours[1]}
        if self.previous_start is not None:
            params["previous_start"] = self.previous_start
        return params


class QueryResult(BaseModel):
    template: str
    sql: str
    params: dict[str, Any]
    rows: list[dict[str, Any]]


# (entity id expression, name source joined on entity_id)
_GROUPS: dict[str, tuple[str, str]] = {
    "device": ("h.device_id", "SELECT device_id AS entity_id, name FROM energy_analytics.dim_device"),
    "site": ("h.site_id", "SELECT site_id AS entity_id, name FROM energy_analytics.dim_site"),
    "fleet": ("'fleet'", "SELECT 'fleet' AS entity_id, 'the whole fleet' AS name"),
}

_FILTER = "h.hour >= @start AND h.hour < @end AND {h_scope} AND {h_hours} AND {h_days}"
# Monday 1900-01-01 is day 0, so day 5 and 6 of each week are Saturday and Sunday (same on both engines)
_DAY_OF_WEEK = "MOD(DATE_DIFF(DATE({col}, @tz), DATE '1900-01-01', DAY), 7)"
_DAYS = {"weekdays": _DAY_OF_WEEK + " < 5", "weekends": _DAY_OF_WEEK + " >= 5"}
_HOURS = (
    "EXTRACT(HOUR FROM {col} AT TIME ZONE @tz) >= @hod_start"
    " AND EXTRACT(HOUR FROM {col} AT TIME ZONE @tz) < @hod_end"
)

USAGE = """
WITH per_hour AS (
  SELECT
    {entity} AS entity_id,
    h.hour,
    SUM(h.energy_kwh) AS energy_kwh,
    SUM(h.avg_power_w) AS power_w,
    MAX(h.max_power_w) AS max_device_power_w
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY entity_id, h.hour
),
members AS (
  SELECT {entity} AS entity_id, COUNT(DISTINCT h.device_id) AS devices
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY entity_id
),
usage AS (
  SELECT
    per_hour.entity_id,
    ROUND(SUM(per_hour.energy_kwh), 3) AS energy_kwh,
    ROUND(AVG(per_hour.power_w), 1) AS avg_power_w,
    ROUND(MAX(per_hour.power_w), 1) AS peak_hour_power_w,
    ROUND(MAX(per_hour.max_device_power_w), 1) AS max_device_power_w,
    COUNT(*) AS hours_with_data,
    MAX(members.devices) AS devices,
    ROUND(SUM(per_hour.energy_kwh) / MAX(members.devices), 3) AS energy_per_device_kwh
  FROM per_hour
  JOIN members ON members.entity_id = per_hour.entity_id
  GROUP BY per_hour.entity_id
),
names AS ({names})
SELECT usage.entity_id, names.name, usage.energy_kwh, usage.avg_power_w, usage.peak_hour_power_w,
  usage.max_device_power_w, usage.hours_with_data, usage.devices, usage.energy_per_device_kwh,
  ROUND(MAX(usage.energy_kwh) OVER () - MIN(usage.energy_kwh) OVER (), 3) AS gap_kwh,
  ROUND(SAFE_DIVIDE(MAX(usage.energy_kwh) OVER () - MIN(usage.energy_kwh) OVER (),
    MIN(usage.energy_kwh) OVER ()) * 100, 1) AS gap_pct
FROM usage LEFT JOIN names ON names.entity_id = usage.entity_id
ORDER BY usage.{order_by} {direction}, usage.entity_id
LIMIT @limit
"""

WEEKDAY_WEEKEND = """
WITH per_day AS (
  SELECT DATE(h.hour, @tz) AS local_date, SUM(h.energy_kwh) AS energy_kwh
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY local_date
)
SELECT IF(MOD(DATE_DIFF(local_date, DATE '1900-01-01', DAY), 7) >= 5, 'weekend', 'weekday') AS day_kind,
  ROUND(AVG(energy_kwh), 3) AS avg_daily_kwh, COUNT(*) AS days, ROUND(SUM(energy_kwh), 3) AS energy_kwh
FROM per_day
GROUP BY day_kind
ORDER BY day_kind
LIMIT 2
"""

TREND = """
SELECT ROUND(SUM(IF(h.hour >= @start, h.energy_kwh, 0)), 3) AS energy_kwh,
  ROUND(SUM(IF(h.hour < @start, h.energy_kwh, 0)), 3) AS previous_energy_kwh,
  ROUND(SAFE_DIVIDE(SUM(IF(h.hour >= @start, h.energy_kwh, 0)) - SUM(IF(h.hour < @start, h.energy_kwh, 0)),
    SUM(IF(h.hour < @start, h.energy_kwh, 0))) * 100, 1) AS change_pct,
  ROUND(ABS(SAFE_DIVIDE(
    SUM(IF(h.hour >= @start, h.energy_kwh, 0)) - SUM(IF(h.hour < @start, h.energy_kwh, 0)),
    SUM(IF(h.hour < @start, h.energy_kwh, 0)))) * 100, 1) AS change_abs_pct,
  COUNT(DISTINCT IF(h.hour >= @start, h.hour, NULL)) AS hours_with_data,
  COUNT(DISTINCT IF(h.hour < @start, h.hour, NULL)) AS previous_hours_with_data
FROM energy_analytics.hourly_consumption AS h
WHERE h.hour >= @previous_start AND h.hour < @end AND {h_scope} AND {h_hours} AND {h_days}
HAVING COUNT(*) > 0
"""

COUNT_DEVICES = """
SELECT d.device_id, d.name, d.site_id, s.name AS site_name,
  COUNT(*) OVER () AS devices, COUNT(DISTINCT d.site_id) OVER () AS sites_with_devices
FROM energy_analytics.dim_device AS d
LEFT JOIN energy_analytics.dim_site AS s ON s.site_id = d.site_id
WHERE {d_scope_sites}
ORDER BY d.device_id
LIMIT @limit
"""

COUNT_SITES = """
SELECT s.site_id, s.name, s.site_type, s.timezone, COUNT(*) OVER () AS sites
FROM energy_analytics.dim_site AS s
ORDER BY s.site_id
LIMIT @limit
"""

PEAK_HOUR = """
WITH per_hour AS (
  SELECT h.hour, SUM(h.energy_kwh) AS energy_kwh, SUM(h.max_power_w) AS max_power_w,
    COUNT(DISTINCT h.device_id) AS devices
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY h.hour
)
SELECT CAST(DATE(hour, @tz) AS STRING) AS local_date,
  EXTRACT(HOUR FROM hour AT TIME ZONE @tz) AS local_hour,
  ROUND(energy_kwh, 3) AS energy_kwh, ROUND(max_power_w, 1) AS max_power_w, devices
FROM per_hour
ORDER BY per_hour.{order_by} DESC, hour
LIMIT 1
"""

LOAD_PROFILE = """
WITH per_hour AS (
  SELECT h.hour, SUM(h.energy_kwh) AS energy_kwh
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY h.hour
)
SELECT EXTRACT(HOUR FROM hour AT TIME ZONE @tz) AS local_hour,
  ROUND(AVG(energy_kwh), 3) AS avg_energy_kwh,
  COUNT(*) AS days
FROM per_hour
GROUP BY local_hour
ORDER BY local_hour
LIMIT 24
"""

BASE_LOAD = """
WITH per_hour AS (
  SELECT h.hour, SUM(h.avg_power_w) AS power_w, SUM(h.energy_kwh) AS energy_kwh
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY h.hour
),
per_day AS (
  SELECT DATE(hour, @tz) AS local_date, MIN(power_w) AS min_power_w, SUM(energy_kwh) AS energy_kwh,
    COUNT(*) AS hours
  FROM per_hour
  GROUP BY local_date
)
SELECT ROUND(AVG(min_power_w), 1) AS base_load_w,
  ROUND(MIN(min_power_w), 1) AS lowest_hour_w,
  ROUND(SUM(energy_kwh), 3) AS energy_kwh,
  ROUND(AVG(min_power_w) * SUM(hours) / 1000, 3) AS base_load_kwh,
  ROUND(SAFE_DIVIDE(AVG(min_power_w) * SUM(hours) / 1000, SUM(energy_kwh)) * 100, 1) AS base_load_share_pct,
  COUNT(*) AS days
FROM per_day
HAVING COUNT(*) > 0
"""

COST = """
WITH per_hour AS (
  SELECT h.hour, SUM(h.energy_kwh) AS energy_kwh
  FROM energy_analytics.hourly_consumption AS h
  WHERE {filter}
  GROUP BY h.hour
),
priced AS (
  SELECT energy_kwh,
    EXTRACT(HOUR FROM hour AT TIME ZONE @tz) >= @peak_start
      AND EXTRACT(HOUR FROM hour AT TIME ZONE @tz) < @peak_end AS is_peak
  FROM per_hour
)
SELECT ROUND(SUM(energy_kwh), 3) AS energy_kwh,
  ROUND(SUM(IF(is_peak, energy_kwh, 0)), 3) AS peak_kwh,
  ROUND(SUM(IF(is_peak, 0, energy_kwh)), 3) AS offpeak_kwh,
  ROUND(SUM(energy_kwh * IF(is_peak, @peak_price, @offpeak_price)), 2) AS cost,
  @peak_price AS peak_price_per_kwh, @offpeak_price AS offpeak_price_per_kwh, @currency AS currency
FROM priced
HAVING COUNT(*) > 0
"""

FORECAST = """
WITH per_hour AS (
  SELECT f.target_hour, SUM(f.p10) AS p10, SUM(f.p50) AS p50, SUM(f.p90) AS p90,
    COUNT(DISTINCT f.device_id) AS devices, MAX(f.model_version) AS model_version
  FROM energy_analytics.forecasts AS f
  WHERE f.target_hour >= @start AND f.target_hour < @end
    AND {f_scope} AND {f_hours}
  GROUP BY f.target_hour
)
SELECT CAST(DATE(target_hour, @tz) AS STRING) AS local_date,
  EXTRACT(HOUR FROM target_hour AT TIME ZONE @tz) AS local_hour,
  ROUND(p10, 3) AS p10_kwh, ROUND(p50, 3) AS p50_kwh, ROUND(p90, 3) AS p90_kwh, devices, model_version,
  ROUND(SUM(p10) OVER (), 3) AS total_p10_kwh, ROUND(SUM(p50) OVER (), 3) AS total_p50_kwh,
  ROUND(SUM(p90) OVER (), 3) AS total_p90_kwh, COUNT(*) OVER () AS hours
FROM per_hour
ORDER BY target_hour
LIMIT @limit
"""

ANOMALIES = """
SELECT a.incident_id, a.device_id, d.name, CAST(DATE(a.start_hour, @tz) AS STRING) AS local_date,
  EXTRACT(HOUR FROM a.start_hour AT TIME ZONE @tz) AS local_hour,
  a.anomaly_type, a.severity, ROUND(a.score, 2) AS score, ROUND(a.expected, 3) AS expected,
  ROUND(a.actual, 3) AS actual, a.explanation, COUNT(*) OVER () AS incidents
FROM energy_analytics.anomalies AS a
LEFT JOIN energy_analytics.dim_device AS d ON d.device_id = a.device_id
WHERE a.start_hour < @end AND a.end_hour > @start
  AND (a.status IS NULL OR a.status != 'withdrawn')
  AND {a_scope}
ORDER BY a.start_hour DESC, a.incident_id
LIMIT @limit
"""

DEVICE_FACTS = """
WITH last_seen AS (
  SELECT h.device_id, MAX(h.hour) AS last_hour, COUNT(*) AS hours_with_data
  FROM energy_analytics.hourly_consumption AS h
  WHERE h.device_id IN UNNEST(@device_ids)
  GROUP BY h.device_id
)
SELECT d.device_id, d.name, d.meter_type, d.nominal_voltage, d.interval_minutes,
  CAST(DATE(d.installed_at, @tz) AS STRING) AS installed_on, d.site_id, s.name AS site_name,
  s.site_type, d.timezone, CAST(DATE(l.last_hour, @tz) AS STRING) AS last_data_date,
  EXTRACT(HOUR FROM l.last_hour AT TIME ZONE @tz) AS last_data_hour, l.hours_with_data
FROM energy_analytics.dim_device AS d
LEFT JOIN energy_analytics.dim_site AS s ON s.site_id = d.site_id
LEFT JOIN last_seen AS l ON l.device_id = d.device_id
WHERE d.device_id IN UNNEST(@device_ids)
ORDER BY d.device_id
LIMIT @limit
"""

SILENT_DEVICES = """
WITH recent AS (
  SELECT DISTINCT h.device_id
  FROM energy_analytics.hourly_consumption AS h
  WHERE h.hour >= @cutoff
),
quiet AS (
  SELECT d.device_id, d.name, d.site_id
  FROM energy_analytics.dim_device AS d
  LEFT JOIN recent AS r ON r.device_id = d.device_id
  WHERE r.device_id IS NULL AND {d_scope}
),
last_seen AS (
  SELECT h.device_id, MAX(h.hour) AS last_hour
  FROM energy_analytics.hourly_consumption AS h
  JOIN quiet AS q ON q.device_id = h.device_id
  GROUP BY h.device_id
),
silent AS (
  SELECT q.device_id, q.name, q.site_id, l.last_hour,
    TIMESTAMP_DIFF(@clock, l.last_hour, HOUR) AS hours_silent
  FROM quiet AS q
  LEFT JOIN last_seen AS l ON l.device_id = q.device_id
)
SELECT device_id, name, site_id, CAST(DATE(last_hour, @tz) AS STRING) AS last_data_date,
  EXTRACT(HOUR FROM last_hour AT TIME ZONE @tz) AS last_data_hour, hours_silent,
  COUNT(*) OVER () AS silent_devices, @silent_hours AS silent_after_hours
FROM silent
ORDER BY last_hour IS NOT NULL, last_hour, device_id
LIMIT @limit
"""

TEMPLATES: dict[str, str] = {
    "usage": USAGE,
    "peak_hour": PEAK_HOUR,
    "load_profile": LOAD_PROFILE,
    "base_load": BASE_LOAD,
    "cost": COST,
    "forecast": FORECAST,
    "anomalies": ANOMALIES,
    "device_facts": DEVICE_FACTS,
    "silent_devices": SILENT_DEVICES,
    "weekday_weekend": WEEKDAY_WEEKEND,
    "trend": TREND,
    "count_devices": COUNT_DEVICES,
    "count_sites": COUNT_SITES,
}
_ORDERABLE = {
    "energy_kwh",
    "max_power_w",
    "max_device_power_w",
    "peak_hour_power_w",
    "avg_power_w",
    "energy_per_device_kwh",
}


def render_template(
    name: str,
    *,
    group: Group = "fleet",
    order_by: str = "energy_kwh",
    descending: bool = True,
    scope: ScopeKind = "fleet",
    hours: bool = False,
    days: str | None = None,
) -> str:
    """Fill the closed set of structural choices; user values never reach this function."""
    if order_by not in _ORDERABLE:
        raise ValueError(f"cannot order by {order_by!r}")
    entity, names = _GROUPS[group]

    def by_device(alias: str) -> str:
        return "TRUE" if scope == "fleet" else f"{alias}.device_id IN UNNEST(@device_ids)"

    fragments = {
        "h_scope": "h.site_id IN UNNEST(@site_ids)" if scope == "sites" else by_device("h"),
        "h_hours": _HOURS.format(col="h.hour") if hours else "TRUE",
        "h_days": _DAYS[days].format(col="h.hour") if days else "TRUE",
        "d_scope_sites": "d.site_id IN UNNEST(@site_ids)" if scope == "sites" else by_device("d"),
        "f_scope": by_device("f"),
        "f_hours": _HOURS.format(col="f.target_hour") if hours else "TRUE",
        "a_scope": by_device("a"),
        "d_scope": by_device("d"),
    }
    return (
        TEMPLATES[name]
        .format(
            entity=entity,
            names=names,
            filter=_FILTER.format(**fragments),
            order_by=order_by,
            direction="DESC" if descending else "ASC",
            **fragments,
        )
        .strip()
    )


def run_template(
    wh: Warehouse,
    name: str,
    scope: Scope,
    extra: dict[str, Any] | None = None,
    *,
    group: Group = "fleet",
    order_by: str = "energy_kwh",
    descending: bool = True,
) -> QueryResult:
    sql = render_template(
        name,
        group=group,
        order_by=order_by,
        descending=descending,
        scope=scope.kind,
        hours=scope.hours is not None,
        days=scope.days,
    )
    given = {"limit": MAX_ROWS, **scope.params(), **(extra or {})}
    used = set(re.findall(r"@(\w+)", sql))
    params = {k: v for k, v in given.items() if k in used}  # cite exactly what was bound
    frame = wh.query_df(sql, params)
    rows = [{k: _plain(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]
    return QueryResult(template=name, sql=sql, params={k: _plain(v) for k, v in params.items()}, rows=rows)


def _plain(value: Any) -> Any:
    """JSON-friendly cell: NaN/NaT -> None, timestamps -> ISO text, numpy scalars -> Python."""
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (datetime, date)):
        value = value.tolist()
        if isinstance(value, list):
            return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, (str, bool, int, float)) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    return value
