"""features.refreshed → 24 h forecasts for the affected devices, MERGEd into `forecasts`.

The origin is the event's `window_end` (the first hour the refresh has no data for). Each device's
instance is its last `HISTORY_HOURS` of hourly_consumption before that origin; decommissioned
devices (not active in dim_device, or no row) and devices with no history are skipped and counted.

Idempotent by construction: `made_at` is the forecast's data cut-off (the origin), not the wall
clock, so a redelivered event MERGEs identical rows. Delivery is unordered too, so rows whose
target hour already holds a forecast made from a later origin are not overwritten.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel

from services.forecast.contract import Instance, Prediction
from services.forecast.dataset import device_timezones
from services.forecast.endpoint import Endpoint, open_endpoint, predict_batched
from services.forecast.features import HISTORY_HOURS
from shared.events import FeaturesRefreshed, ForecastsWritten
from shared.logging import get_logger
from shared.push import PushContext
from shared.warehouse import Warehouse, open_warehouse

__all__ = [
    "ForecastResult",
    "build_instances",
    "forecast_rows",
    "forecast_window",
    "load_history",
]

log = get_logger(__name__)

_HISTORY_SQL = """
SELECT h.device_id, h.hour, h.energy_kwh, h.avg_temp_c, d.timezone
FROM energy_analytics.hourly_consumption AS h
JOIN energy_analytics.dim_device AS d ON d.device_id = h.device_id AND COALESCE(d.is_active, TRUE)
WHERE h.device_id IN UNNEST(@device_ids) AND h.hour >= @since AND h.hour < @origin
"""

_LATER_SQL = """
SELECT device_id, target_hour
FROM energy_analytics.forecasts
WHERE device_id IN UNNEST(@device_ids) AND target_hour >= @origin AND target_hour < @until
  AND made_at > @origin
"""


class ForecastResult(BaseModel):
    refresh_id: str
    origin: datetime
    model_version: str | None
    devices_forecast: int
    devices_skipped: int
    rows_written: int
    message_id: str | None = None


def _hour(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def load_history(wh: Warehouse, device_ids: list[str], origin: datetime) -> pd.DataFrame:
    return wh.query_df(
        _HISTORY_SQL,
        {"device_ids": device_ids, "since": origin - timedelta(hours=HISTORY_HOURS), "origin": origin},
    )


def build_instances(history: pd.DataFrame, device_ids: list[str], origin: datetime) -> list[Instance]:
    """One instance per device that has at least one hour of energy in the window, with its site's
    time zone (dim_device.timezone) so the model server uses the site's calendar."""
    if history.empty:
        return []
    hours = pd.to_datetime(history["hour"], utc=True)
    pos = ((hours - pd.Timestamp(origin)) // pd.Timedelta(hours=1)).to_numpy() + HISTORY_HOURS
    ids = sorted(set(device_ids) & set(history["device_id"]))
    dev = pd.Index(ids).get_indexer(history["device_id"])
    ok = (dev >= 0) & (pos >= 0) & (pos < HISTORY_HOURS)
    kwh = np.full((len(ids), HISTORY_HOURS), np.nan)
    temp = np.full((len(ids), HISTORY_HOURS), np.nan)
    kwh[dev[ok], pos[ok]] = pd.to_numeric(history["energy_kwh"], errors="coerce").to_numpy(float)[ok]
    temp[dev[ok], pos[ok]] = pd.to_numeric(history["avg_temp_c"], errors="coerce").to_numpy(float)[ok]
    kwh = np.where(kwh < 0, np.nan, kwh)  # a register reset is not negative consumption
    kwh_lists, temp_lists = _as_lists(kwh), _as_lists(temp)
    has_kwh, has_temp = ~np.isnan(kwh).all(axis=1), ~np.isnan(temp).all(axis=1)
    zones = device_timezones(history)
    # Built without re-validation: the values come from the warehouse as floats, and the model
    # server validates every instance it receives.
    return [
        Instance.model_construct(
            device_id=device_id,
            origin=origin,
            kwh=kwh_lists[i],
            temp_c=temp_lists[i] if has_temp[i] else None,
            timezone=zones.get(device_id),
        )
        for i, device_id in enumerate(ids)
        if has_kwh[i]
    ]


def _as_lists(values: np.ndarray) -> list[list[float | None]]:
    """Rows as lists with None for NaN (JSON has no NaN), in one pass."""
    cells = values.astype(object)
    cells[np.isnan(values)] = None
    return cells.tolist()


def forecast_rows(predictions: list[Prediction], made_at: datetime) -> pd.DataFrame:
    """One row per device × target hour, built column-wise (a thousand devices is 24,000 rows)."""
    n = len(predictions)
    hours = len(predictions[0].p50) if predictions else 0
    starts = pd.DatetimeIndex([p.origin for p in predictions])
    if starts.tz is None:
        starts = starts.tz_localize(UTC)
    offsets = pd.to_timedelta(np.tile(np.arange(hours), n), unit="h")
    return pd.DataFrame(
        {
            "device_id": np.repeat([p.device_id for p in predictions], hours),
            "target_hour": starts.repeat(hours) + offsets,
            "p10": np.concatenate([p.p10 for p in predictions]) if n else [],
            "p50": np.concatenate([p.p50 for p in predictions]) if n else [],
            "p90": np.concatenate([p.p90 for p in predictions]) if n else [],
            "model_version": np.repeat([p.model_version for p in predictions], hours),
            "made_at": pd.Timestamp(made_at),
        }
    )


def _drop_superseded(
    wh: Warehouse, rows: pd.DataFrame, device_ids: list[str], origin: datetime
) -> pd.DataFrame:
    later = wh.query_df(
        _LATER_SQL, {"device_ids": device_ids, "origin": origin, "until": origin + timedelta(days=1)}
    )
    if later.empty:
        return rows
    later["target_hour"] = pd.to_datetime(later["target_hour"], utc=True)
    keys = pd.MultiIndex.from_frame(later[["device_id", "target_hour"]])
    mine = pd.MultiIndex.from_frame(rows[["device_id", "target_hour"]])
    return rows.loc[~mine.isin(keys)]


def forecast_window(
    event: FeaturesRefreshed, ctx: PushContext, endpoint: Endpoint | None = None
) -> ForecastResult:
    """Forecast the 24 h after `event.window_end` for the event's devices; publish ForecastsWritten."""
    settings = ctx.settings
    origin = _hour(event.window_end)
    device_ids = sorted(set(event.device_ids))
    with open_warehouse(settings, read_only=True) as wh:
        history = load_history(wh, device_ids, origin)
    instances = build_instances(history, device_ids, origin)
    skipped = len(device_ids) - len(instances)
    if not instances:
        log.info("nothing to forecast", extra={"refresh_id": event.refresh_id, "devices": len(device_ids)})
        return ForecastResult(
            refresh_id=event.refresh_id,
            origin=origin,
            model_version=None,
            devices_forecast=0,
            devices_skipped=skipped,
            rows_written=0,
        )
    predictions = predict_batched(
        endpoint or open_endpoint(settings), instances, settings.forecast_batch_size
    )
    rows = forecast_rows(predictions, made_at=origin)
    with open_warehouse(settings) as wh:
        rows = _drop_superseded(wh, rows, [i.device_id for i in instances], origin)
        written = wh.merge("forecasts", rows, key=["device_id", "target_hour"]) if len(rows) else 0
    version = predictions[0].model_version
    message_id = ctx.publisher.publish(
        ForecastsWritten(
            refresh_id=event.refresh_id,
            model_version=version,
            device_ids=[i.device_id for i in instances],
            first_target_hour=origin,
            last_target_hour=origin + timedelta(hours=23),
            rows=len(rows),
        ),
        correlation_id=ctx.correlation_id,
    )
    log.info(
        "forecasts written",
        extra={
            "refresh_id": event.refresh_id,
            "devices": len(instances),
            "skipped": skipped,
            "rows": written,
        },
    )
    return ForecastResult(
        refresh_id=event.refresh_id,
        origin=origin,
        model_version=version,
        devices_forecast=len(instances),
        devices_skipped=skipped,
        rows_written=int(written),
        message_id=message_id,
    )
