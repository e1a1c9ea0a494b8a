"""What each row count in the demo report means, read from the data itself.

A newcomer who sees `raw.device 50` and `dim_device 46` deserves the reason, and the reason must be
the warehouse's, not a sentence that was true once: every explanation here is computed (the raw rows
missing from a modelled table are grouped by why, from the connector's delete flags), so a change in
the models (decommissioned devices kept with `is_active = false`, say) changes the words with it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from shared.errors import GridsightError
from shared.warehouse import Warehouse

__all__ = ["explain_counts"]

# raw rows absent from a modelled table, grouped by the connector's own flags
_DEVICES_MISSING = """
SELECT
  CASE WHEN COALESCE(d._fivetran_deleted, FALSE) THEN 'decommissioned' ELSE 'not refreshed yet' END AS why,
  COUNT(*) AS n
FROM raw.device AS d
LEFT JOIN energy_analytics.dim_device AS m ON m.device_id = CAST(d.device_id AS STRING)
WHERE m.device_id IS NULL
GROUP BY why ORDER BY why
"""
_SITES_MISSING = """
SELECT
  CASE WHEN COALESCE(s._fivetran_deleted, FALSE) THEN 'deleted by the vendor'
       ELSE 'not refreshed yet' END AS why,
  COUNT(*) AS n
FROM raw.site AS s
LEFT JOIN energy_analytics.dim_site AS m ON m.site_id = CAST(s.site_id AS STRING)
WHERE m.site_id IS NULL
GROUP BY why ORDER BY why
"""
_READINGS_MISSING = """
SELECT
  CASE
    WHEN COALESCE(r._fivetran_deleted, FALSE) THEN 'deleted by the vendor'
    WHEN COALESCE(d._fivetran_deleted, FALSE) THEN 'of decommissioned devices'
    ELSE 'not refreshed yet'
  END AS why,
  COUNT(*) AS n
FROM raw.reading AS r
LEFT JOIN raw.device AS d ON d.device_id = r.device_id
LEFT JOIN energy_analytics.fct_reading AS f
  ON f.device_id = CAST(r.device_id AS STRING) AND f.reading_at = CAST(r.`timestamp` AS TIMESTAMP)
WHERE f.device_id IS NULL
GROUP BY why ORDER BY why
"""
_DEVICE_STATES = """
SELECT COUNTIF(is_active) AS active, COUNTIF(NOT is_active) AS inactive FROM energy_analytics.dim_device
"""
_GRID = """
SELECT COUNT(DISTINCT {key}) AS keys, COUNT(DISTINCT {time}) AS times,
       MIN({time}) AS first, MAX({time}) AS last
FROM energy_analytics.{table}
"""
_FORECAST_RUNS = """
SELECT COUNT(DISTINCT device_id) AS devices, COUNT(DISTINCT made_at) AS runs,
       COUNT(DISTINCT target_hour) AS hours
FROM energy_analytics.forecasts
"""
_BY = "SELECT {column} AS k, COUNT(*) AS n FROM {table} GROUP BY k ORDER BY n DESC, k"


def explain_counts(wh: Warehouse, counts: dict[str, int]) -> dict[str, str]:
    """table -> one line on what its count is made of (tables that cannot be read are left out)."""
    explainers: dict[str, Callable[[], str]] = {
        "raw.site": lambda: _raw(wh, "raw.site", "deleted by the vendor"),
        "raw.device": lambda: _raw(wh, "raw.device", "decommissioned (kept, flagged deleted)"),
        "raw.reading": lambda: _raw(wh, "raw.reading", "deleted by the vendor (kept, flagged deleted)"),
        "raw.invalid_reading": lambda: (
            "quarantined, by reason: " + _listing(_reason_kinds(_by(wh, "raw.invalid_reading", "reason")))
        ),
        "energy_analytics.dim_site": lambda: _against_raw(wh, counts, "raw.site", _SITES_MISSING, "sites"),
        "energy_analytics.dim_device": lambda: _devices(wh, counts),
        "energy_analytics.fct_reading": lambda: _against_raw(
            wh, counts, "raw.reading", _READINGS_MISSING, "readings"
        ),
        "energy_analytics.hourly_consumption": lambda: _grid(
            wh, counts, "hourly_consumption", "device_id", "hour"
        ),
        "energy_analytics.ml_features": lambda: _grid(wh, counts, "ml_features", "device_id", "hour"),
        "energy_analytics.daily_site_consumption": lambda: _grid(
            wh,
            counts,
            "daily_site_consumption",
            "site_id",
            "day",
            unit="site-days",
            keys="sites",
            times="days",
        ),
        "energy_analytics.forecasts": lambda: _forecasts(wh, counts),
        "energy_analytics.anomalies": lambda: (
            "incidents by type: " + _listing(_by(wh, "energy_analytics.anomalies", "anomaly_type"))
        ),
        "energy_analytics.pipeline_runs": lambda: (
            "events handled, by handler: " + _listing(_by(wh, "energy_analytics.pipeline_runs", "handler"))
        ),
    }
    explained: dict[str, str] = {}
    for table, explain in explainers.items():
        if counts.get(table) is None:
            continue
        try:
            explained[table] = explain()
        except (GridsightError, ValueError, KeyError) as exc:
            explained[table] = f"(not explained: {type(exc).__name__})"
        except Exception as exc:  # an engine error (a column a newer model renamed): say so, carry on
            explained[table] = f"(not explained: {type(exc).__name__})"
    return explained


_RAW_DELETED = "SELECT COUNTIF(COALESCE(_fivetran_deleted, FALSE)) AS n FROM {table}"
_WITH_VALUE = re.compile(r"\s*\([^)]*…[^)]*\)")  # "(received at …)"
_VALUES = re.compile(r"'[^']*'|\d{4}-\d\d-\d\dT[\d:]+Z?|-?\d+(?:\.\d+)?")


def _raw(wh: Warehouse, table: str, deleted: str) -> str:
    n = int(str(_rows(wh, _RAW_DELETED.format(table=table))[0]["n"] or 0))
    return f"as landed; {n:,} {deleted}" if n else "as landed"


def _reason_kinds(reasons: dict[str, int]) -> dict[str, int]:
    """Reasons carry the offending value ("... is negative: -2054.1"); count by kind, not value."""
    kinds: Counter[str] = Counter()
    for reason, n in reasons.items():
        kind = _VALUES.sub("…", reason)
        kind = _WITH_VALUE.sub("", kind).removesuffix(": …").strip()
        kinds[kind] += n
    return dict(kinds.most_common())


def _rows(wh: Warehouse, sql: str) -> list[dict[str, object]]:
    return wh.query(sql).to_pylist()


def _by(wh: Warehouse, table: str, column: str) -> dict[str, int]:
    return {str(r["k"]): int(str(r["n"])) for r in _rows(wh, _BY.format(table=table, column=column))}


def _listing(parts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in parts.items()) if parts else "none"


def _against_raw(wh: Warehouse, counts: dict[str, int], raw: str, missing_sql: str, noun: str) -> str:
    if raw not in counts:
        return f"{noun} (no {raw} to compare with)"
    missing = {str(r["why"]): int(str(r["n"])) for r in _rows(wh, missing_sql)}
    if not missing:
        return f"every row of {raw}"
    parts = " − ".join(f"{n:,} {why}" for why, n in missing.items())
    return f"{raw} {counts[raw]:,} − {parts}"


def _devices(wh: Warehouse, counts: dict[str, int]) -> str:
    base = _against_raw(wh, counts, "raw.device", _DEVICES_MISSING, "devices")
    columns = wh.query("SELECT * FROM energy_analytics.dim_device LIMIT 0").column_names
    if "is_active" not in columns:
        return base
    state = _rows(wh, _DEVICE_STATES)[0]
    active, inactive = int(str(state["active"] or 0)), int(str(state["inactive"] or 0))
    return f"{base}; {active:,} active, {inactive:,} decommissioned (is_active = false)"


def _grid(
    wh: Warehouse,
    counts: dict[str, int],
    table: str,
    key: str,
    time: str,
    *,
    unit: str = "device-hours",
    keys: str = "devices",
    times: str = "hours",
) -> str:
    row = _rows(wh, _GRID.format(table=table, key=key, time=time))[0]
    if not row["keys"]:
        return f"no {unit} yet"
    n_keys, n_times = int(str(row["keys"])), int(str(row["times"]))
    gaps = n_keys * n_times - counts.get(f"energy_analytics.{table}", n_keys * n_times)
    shape = f"{n_keys:,} {keys} × {n_times:,} {times} ({_short(row['first'])} .. {_short(row['last'])})"
    if gaps <= 0:
        return f"one row per {unit[:-1]}: {shape}"
    return f"one row per {unit[:-1]} with readings: {shape} = {n_keys * n_times:,}, less {gaps:,} with none"


def _forecasts(wh: Warehouse, counts: dict[str, int]) -> str:
    row = _rows(wh, _FORECAST_RUNS)[0]
    devices, runs = int(str(row["devices"] or 0)), int(str(row["runs"] or 0))
    if not devices:
        return "no forecasts yet"
    total = counts["energy_analytics.forecasts"]
    per = total / (devices * runs) if runs else 0
    if per == int(per):
        return f"{devices:,} devices × {runs:,} forecast run(s) × {int(per)} target hours each"
    return f"{devices:,} devices, {runs:,} forecast run(s), {int(str(row['hours'])):,} distinct target hours"


def _short(value: object) -> str:
    text = str(value)
    return text[:16] if len(text) >= 16 else text
