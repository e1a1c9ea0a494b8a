"""The trainer: from the warehouse (or a CSV) to a versioned artefact with its model card.

Training holds out the last days, scores the model there against seasonal-naive (the card's
backtest metrics) and calibrates the p10–p90 interval on them, then refits on everything with that
calibration. Origins are taken every `stride_hours` (not only at midnight) because the service
forecasts from whatever hour the latest refresh ends at.

Locally the artefact goes to `settings.model_dir`; with a model bucket configured it goes to
`gs://<bucket>/models`, where the Vertex endpoint's AIP_STORAGE_URI points. `submit_vertex_training`
runs this same module as a Vertex AI custom job (`python -m services.forecast.training`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from services.forecast.artefact import ModelCard, save_version
from services.forecast.backtest import Progress, build_panel, load_energy_csv, load_weather_csv, run_backtest
from services.forecast.calendars import calendar_for
from services.forecast.dataset import Panel, device_timezones, examples, origin_positions
from services.forecast.features import FEATURE_NAMES
from services.forecast.model import QuantileForecaster, TrainParams
from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = [
    "load_warehouse_panel",
    "model_root",
    "submit_vertex_training",
    "train_from_csv",
    "train_from_warehouse",
    "train_panel",
]

log = get_logger(__name__)

_PANEL_SQL = """
SELECT h.device_id, h.hour, h.energy_kwh, h.avg_temp_c, d.timezone
FROM energy_analytics.hourly_consumption AS h
JOIN energy_analytics.dim_device AS d ON d.device_id = h.device_id
WHERE h.hour >= @since
"""
MIN_DAYS = 5


def model_root(settings: Settings) -> str:
    """Cloud Storage when a model bucket is configured (the Vertex endpoint reads it), else local."""
    if settings.model_bucket:
        return f"gs://{settings.model_bucket}/models"
    return str(settings.model_dir)


def load_warehouse_panel(wh: Warehouse, since: datetime) -> Panel:
    """hourly_consumption of installed devices since `since`, with each device's own temperature and
    its site's calendar (the same `calendar_for` the model server applies to instances)."""
    frame = wh.query_df(_PANEL_SQL, {"since": since})
    if frame.empty:
        raise ValueError("hourly_consumption has no rows for installed devices yet; sync and refresh first")
    hours = pd.to_datetime(frame["hour"], utc=True).dt.tz_localize(None)
    energy = pd.DataFrame(
        {"meter_id": frame["device_id"], "timestamp_utc": hours, "kwh": frame["energy_kwh"]}
    )
    panel = build_panel(energy.dropna(subset=["kwh"]))
    temp = np.full(panel.kwh.shape, np.nan)
    dev = pd.Index(panel.device_ids).get_indexer(frame["device_id"])
    pos = ((hours - panel.index[0]) // pd.Timedelta(hours=1)).to_numpy()
    ok = (dev >= 0) & (pos >= 0) & (pos < len(panel.index))
    temp[dev[ok], pos[ok]] = pd.to_numeric(frame["avg_temp_c"], errors="coerce").to_numpy(float)[ok]
    zones = device_timezones(frame)
    calendars = tuple(calendar_for(zones.get(d)) for d in panel.device_ids)
    return Panel(
        index=panel.index, kwh=panel.kwh, device_ids=panel.device_ids, temp_c=temp, calendar=calendars
    )


def _version(panel: Panel, now: datetime) -> str:
    digest = hashlib.sha256(panel.kwh.tobytes()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{digest}"


def train_panel(
    panel: Panel,
    *,
    source: str,
    params: TrainParams | None = None,
    stride_hours: int = 6,
    holdout_days: int = 14,
    progress: Progress | None = None,
) -> tuple[QuantileForecaster, ModelCard]:
    """Score on a held-out tail, then refit on all origins with the calibrated interval."""
    params = params or TrainParams()
    days = (panel.index[-1] - panel.index[0]).days
    if days < MIN_DAYS:
        raise ValueError(f"only {days} days of history; the trainer needs at least {MIN_DAYS}")
    holdout_days = max(1, min(holdout_days, days // 4))
    last_day = panel.index[-1].normalize()
    holdout_start = last_day - pd.Timedelta(days=holdout_days - 1)
    held = run_backtest(
        panel,
        holdout_start.date(),
        (last_day - pd.Timedelta(days=1)).date() if holdout_days > 1 else holdout_start.date(),
        mstl=False,
        params=params,
        progress=progress,
        calibration_days=max(1, min(28, days // 4)),
    )
    first = panel.index[0] + pd.Timedelta(days=2)
    last = panel.index[-1] - pd.Timedelta(hours=1)
    positions = origin_positions(panel, first, last, stride_hours)
    x, y, _, origins = examples(panel, positions)
    model = QuantileForecaster.fit(x, y, params, age_days=(positions.max() - origins) / 24)
    model.interval_scale = held.interval_scale
    now = datetime.now(UTC)
    card = ModelCard(
        version=_version(panel, now),
        created_at=now,
        data_window_start=panel.index[0].tz_localize(UTC).to_pydatetime(),
        data_window_end=(panel.index[-1] + pd.Timedelta(hours=1)).tz_localize(UTC).to_pydatetime(),
        devices=len(panel.device_ids),
        training_rows=int(np.isfinite(y).sum()),
        feature_names=list(FEATURE_NAMES),
        params={**asdict(params), "stride_hours": stride_hours, "interval_scale": model.interval_scale},
        backtest={
            s.model: {"mase": s.mase, "smape": s.smape, "coverage": s.coverage, "forecasts": s.forecasts}
            for s in held.scores
        },
        source=source,
    )
    return model, card


def train_from_warehouse(settings: Settings, *, progress: Progress | None = None) -> ModelCard:
    """`gridsight train`: the last `forecast_training_days` of the warehouse → a new model version."""
    with open_warehouse(settings, read_only=True) as wh:
        # Counted back from the newest hour, not the wall clock: replayed or simulated history can
        # lie far in the past.
        newest = wh.query_df("SELECT MAX(hour) AS newest FROM energy_analytics.hourly_consumption")
        end = newest["newest"].iloc[0] if not newest.empty else None
        end = pd.Timestamp(end).to_pydatetime() if end is not None and pd.notna(end) else datetime.now(UTC)
        panel = load_warehouse_panel(wh, end - timedelta(days=settings.forecast_training_days))
    model, card = train_panel(panel, source="warehouse", progress=progress)
    where = save_version(model, card, model_root(settings))
    log.info("model trained", extra={"model_version": card.version, "where": where, "devices": card.devices})
    return card


def train_from_csv(
    settings: Settings, energy: Path, weather: Path | None = None, *, progress: Progress | None = None
) -> ModelCard:
    panel = build_panel(load_energy_csv(energy), load_weather_csv(weather) if weather else None)
    model, card = train_panel(panel, source=f"csv:{energy.name}", progress=progress)
    save_version(model, card, model_root(settings))
    return card


def submit_vertex_training(settings: Settings) -> str:
    """Run this trainer as a Vertex AI custom job on the warehouse in BigQuery; returns the job name."""
    if not settings.vertex_training_image or not settings.model_bucket:
        raise ValueError("Vertex training needs GRIDSIGHT_VERTEX_TRAINING_IMAGE and GRIDSIGHT_MODEL_BUCKET")
    from google.cloud import aiplatform

    aiplatform.init(
        project=settings.gcp_project,
        location=settings.gcp_region,
        staging_bucket=f"gs://{settings.model_bucket}",
    )
    env = [
        {"name": "GRIDSIGHT_WAREHOUSE_BACKEND", "value": "bigquery"},
        {"name": "GRIDSIGHT_GCP_PROJECT", "value": settings.gcp_project},
        {"name": "GRIDSIGHT_MODEL_BUCKET", "value": settings.model_bucket},
        {"name": "GRIDSIGHT_ANALYTICS_DATASET", "value": settings.analytics_dataset},
    ]
    job = aiplatform.CustomJob(
        display_name=f"gridsight-train-{date.today():%Y%m%d}",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": settings.vertex_training_image,
                    "command": ["python", "-m", "services.forecast.training"],
                    "env": env,
                },
            }
        ],
    )
    job.submit()
    return str(job.resource_name)


def main() -> None:
    """Entry point of the Vertex custom job container."""
    from shared.logging import configure_logging

    configure_logging()
    train_from_warehouse(Settings())


if __name__ == "__main__":
    main()
