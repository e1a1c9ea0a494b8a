"""The model server: Vertex AI custom-container contract, the same process locally and in the cloud.

Vertex sets `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE` and `AIP_STORAGE_URI`; locally
they default to the gridsight ports and `settings.model_dir`. Health answers 503 until a model
exists, so Vertex (or the local supervisor) routes no traffic to an empty server. Before each
request the storage root is re-checked (at most every `refresh_seconds`) and a newer trained
version replaces the loaded one, so `gridsight train` needs no restart. All instances of a request
are scored in one vectorised batch.

    python -m services.forecast.model_server
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from flask import Flask, Response, jsonify, request
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.forecast.artefact import ModelCard, latest_version, load_version
from services.forecast.contract import Instance, Prediction, PredictRequest, PredictResponse, padded
from services.forecast.features import HISTORY_HOURS, HORIZON_HOURS
from services.forecast.model import QuantileForecaster
from shared.bodies import PayloadTooLarge, read_body
from shared.logging import configure_logging, get_logger
from shared.settings import Settings

__all__ = ["GCS_REFRESH_SECONDS", "ModelStore", "ServerConfig", "create_app", "main", "predict_instances"]

log = get_logger(__name__)


class ServerConfig(BaseSettings):
    """The Vertex AI custom-container environment (no prefix: Vertex names these variables)."""

    model_config = SettingsConfigDict(env_prefix="AIP_", extra="ignore")
    http_port: int | None = None
    health_route: str = "/health"
    predict_route: str = "/predict"
    storage_uri: str | None = None
    refresh_seconds: float | None = Field(
        default=None, ge=0, description="Min gap between storage re-checks (None: by storage kind)."
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Larger /predict bodies are a 413 (shared/bodies.py)."
    )


# A local folder is re-checked on every request (a directory listing costs microseconds). A gs://
# root costs a Cloud Storage list call per check, and Vertex calls health every few seconds besides
# every prediction; on Vertex AIP_STORAGE_URI is a copy made at deploy time that never changes
# anyway (a new model arrives as a new deployment), so a bucket is re-checked at most once a minute.
GCS_REFRESH_SECONDS = 60.0


class ModelStore:
    """Holds the newest model under `root`; `current()` swaps in a newer version when one appears."""

    def __init__(self, root: str | Path, refresh_seconds: float | None = None) -> None:
        self.root = str(root)
        if refresh_seconds is None:
            refresh_seconds = GCS_REFRESH_SECONDS if self.root.startswith("gs://") else 0.0
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._loaded: tuple[QuantileForecaster, ModelCard] | None = None
        self._checked_at = float("-inf")
        self.broken: dict[str, str] = {}
        self._cache = Path(tempfile.mkdtemp(prefix="gridsight-models-"))

    def current(self) -> tuple[QuantileForecaster, ModelCard] | None:
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.refresh_seconds:
                self._checked_at = now
                newest = latest_version(self.root)
                stale = self._loaded is None or self._loaded[1].version != newest
                if newest and stale and newest not in self.broken:
                    try:
                        self._loaded = load_version(self.root, newest, self._cache)
                        log.info("model loaded", extra={"model_version": newest, "root": self.root})
                    except (ValueError, OSError, lgb.basic.LightGBMError) as exc:
                        # Keep serving what is loaded; never retry a broken version on every request.
                        self.broken[newest] = str(exc)
                        log.error("model not loadable", extra={"model_version": newest, "reason": str(exc)})
            return self._loaded


def predict_instances(
    model: QuantileForecaster, card: ModelCard, instances: list[Instance]
) -> list[Prediction]:
    """Score every instance, one vectorised batch per site calendar (time zone and holidays)."""
    kwh = np.array([padded(inst.kwh, HISTORY_HOURS) for inst in instances], dtype=float)  # None → NaN
    temp = None
    if any(inst.temp_c is not None for inst in instances):
        temp = np.array([padded(inst.temp_c, HISTORY_HOURS) for inst in instances], dtype=float)
    origins = pd.DatetimeIndex([inst.origin for inst in instances])
    calendars = [inst.calendar() for inst in instances]
    quant = np.empty((len(instances), HORIZON_HOURS, 3))
    for calendar in set(calendars):
        rows = np.array([c == calendar for c in calendars])
        quant[rows] = model.predict_windows(
            kwh[rows], temp[rows] if temp is not None else None, origins[rows], calendar
        )
    quant = quant.round(6)
    return [
        Prediction.model_construct(
            device_id=inst.device_id,
            origin=inst.origin,
            model_version=card.version,
            target_hours=Prediction.hours_from(inst.origin),
            p10=quant[i, :, 0].tolist(),
            p50=quant[i, :, 1].tolist(),
            p90=quant[i, :, 2].tolist(),
        )
        for i, inst in enumerate(instances)
    ]


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def create_app(store: ModelStore, config: ServerConfig) -> Flask:
    app = Flask("gridsight-model-server")

    @app.get(config.health_route)
    def health() -> tuple[Response, int]:
        loaded = store.current()
        if loaded is None:
            if store.broken:
                return _error(503, f"no loadable model under {store.root}", broken=store.broken)
            return _error(503, f"no trained model under {store.root} yet; run `gridsight train`")
        return jsonify({"status": "ok", "model_version": loaded[1].version}), 200

    @app.post(config.predict_route)
    def predict() -> Response | tuple[Response, int]:
        try:
            parsed = PredictRequest.model_validate_json(read_body(request, config.max_body_bytes))
        except PayloadTooLarge as exc:
            return _error(413, str(exc))
        except ValidationError as exc:
            details = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            return _error(
                400, 'invalid prediction request: expected {"instances": [...]}', details=details[:20]
            )
        loaded = store.current()
        if loaded is None:
            return _error(503, "no trained model yet")
        model, card = loaded
        predictions = predict_instances(model, card, parsed.instances)
        body = PredictResponse.model_construct(predictions=predictions).model_dump_json()
        return Response(body, status=200, mimetype="application/json")

    return app


def main() -> None:
    """Serve with gunicorn (one worker, a few threads: the model is loaded once per process)."""
    from gunicorn.app.base import BaseApplication

    configure_logging()
    settings = Settings()
    config = ServerConfig()
    port = config.http_port or settings.model_server_port
    store = ModelStore(config.storage_uri or settings.model_dir, config.refresh_seconds)
    app = create_app(store, config)

    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.model_server_host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("threads", 4)
            self.cfg.set("timeout", 120)

        def load(self) -> Flask:
            return app

    log.info("model server starting", extra={"port": port, "root": store.root})
    _Server().run()


if __name__ == "__main__":
    main()
