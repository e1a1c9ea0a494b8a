"""One settings object for every process, read from GRIDSIGHT_* environment variables.

The backend (embedded default or Google Cloud) is chosen here, never by editing code. Nothing is
read at import time: callers build `Settings()` (or receive it as an argument) so tests can point
a whole stack at a temporary folder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# The value of the placeholder version Terraform gives every Secret Manager secret, so Cloud Run's
# `latest` reference resolves before anyone has added the real value (infra/terraform secrets.tf).
# Code that reads a secret refuses this value (503, retried) instead of working with it.
SECRET_PLACEHOLDER = "gridsight-placeholder: add a real version with gcloud secrets versions add"  # noqa: S105 (public, not a secret)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDSIGHT_", extra="ignore")

    # --- where the embedded runtime keeps its state (git-ignored) --------------------------------
    home: Path = Field(default=REPO_ROOT / ".gridsight", description="Local state folder.")

    # --- backends --------------------------------------------------------------------------------
    warehouse_backend: Literal["duckdb", "bigquery"] = "duckdb"
    warehouse_lock_timeout_s: float = Field(
        default=120.0, description="Wait this long for the DuckDB inter-process lock, then 503."
    )
    duckdb_memory_mb: int = Field(
        default=1024,
        ge=128,
        description="DuckDB memory limit per warehouse file a process opens (DuckDB's own default is "
        "80 % of RAM): beyond it a refresh or query spills to disk, so memory is bounded whatever the fleet "
        "(an anomaly staged copy sets its own: `DuckDBWarehouse.stage_by_device`).",
    )
    # refresh windows (shared/refresh.py): readings dated outside [earliest, newest sync + skew) are
    # left out of the models; incremental windows reach back at most this many days
    refresh_earliest_reading: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    refresh_future_skew_hours: float = Field(default=24.0, ge=0)
    refresh_max_window_days: float = Field(default=92.0, gt=0)
    bus_backend: Literal["local", "pubsub"] = "local"
    # local bus only: override events.yaml retry policy (None = as in events.yaml) so tests and the
    # demo need not wait Pub/Sub's 10 s..600 s backoff
    bus_min_backoff_s: float | None = None
    bus_max_backoff_s: float | None = None
    bus_max_delivery_attempts: int | None = Field(default=None, ge=1, le=100)
    bus_ack_deadline_s: float | None = None
    dispatcher_workers: int = Field(default=8, ge=1, description="Concurrent push deliveries.")
    dispatcher_poll_s: float = Field(default=0.05, gt=0, description="Queue poll interval when idle.")
    endpoint_backend: Literal["local", "vertex"] = "local"
    embedding_backend: Literal["local", "vertex"] = "local"
    generation_backend: Literal["local", "gemini"] = "local"

    # --- Google Cloud ----------------------------------------------------------------------------
    gcp_project: str = "gridsight-dev"
    gcp_region: str = "europe-west1"
    bq_location: str = "EU"
    bq_maximum_bytes_billed: int = 10 * 1024**3
    raw_dataset: str = Field(default="gridsight_raw", description="Dataset Fivetran writes to.")
    analytics_dataset: str = "energy_analytics"
    bigquery_api_endpoint: str | None = Field(
        default=None, description="Override the BigQuery API URL (bqemulator in tests)."
    )
    vertex_endpoint_id: str | None = None
    model_bucket: str | None = None
    gemini_model: str = "gemini-2.5-flash"

    # --- Fivetran --------------------------------------------------------------------------------
    fivetran_connection_id: str = "gridsight_local"
    webhook_secret: SecretStr = SecretStr("local-dev-webhook-secret")

    # --- push authentication (Pub/Sub push -> Cloud Run) -----------------------------------------
    # "token" locally (<home>/run/push-token, see shared/push.py); "oidc": verify the token's
    # signature (a service without invoker IAM, e.g. ingest); "cloud_run": Cloud Run's IAM check
    # verified it and forwards it with the signature stripped, so check claims; "none" only for a
    # test that wants an unauthenticated edge.
    push_auth: Literal["none", "token", "oidc", "cloud_run"] = "token"
    push_audience: str | None = None
    push_service_account: str | None = None

    # --- request body limits (shared/bodies.py: 413 JSON beyond them) ----------------------------
    push_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Pub/Sub push envelopes.")
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Fivetran webhooks.")
    chat_max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="POST /v1/chat.")

    # --- what an event may ask of a service (shared/events.py check_event, before any work) -------
    event_source: str = Field(default="gridsight", description="Accepted `source`: this or this/<handler>.")
    event_max_window_hours: int = Field(
        default=24 * 93, ge=1, description="A longer window is clamped to its most recent hours."
    )
    event_max_future_hours: float = Field(
        default=24.0, ge=0, description="A window ending later than now + this is refused (400)."
    )
    event_max_devices: int = Field(default=10_000, ge=1, description="More device ids is refused (400).")
    event_shard_devices: int = Field(
        default=5_000,
        ge=1,
        description="features-refreshed names at most this many devices per message; a larger refresh "
        "is announced in shards (each its own refresh_id), so no event outgrows event_max_devices, the "
        "push body limit or Pub/Sub's 10 MB, and Cloud Run scales forecast and anomaly out by shard.",
    )

    # --- chat ------------------------------------------------------------------------------------
    chat_api_keys: SecretStr = SecretStr("local-dev-chat-key")
    chat_iam_protected: bool = Field(
        default=False,
        description="Cloud Run IAM guards chat: Authorization holds an ID token, X-API-Key the key.",
    )
    chat_rate_limit_per_minute: int = 120
    chat_auth_failures_per_minute: int = Field(
        default=10, ge=1, description="Failed API-key checks per peer a minute before 429s (chat, dashboard)."
    )
    chat_currency: str = "EUR"
    chat_flat_tariff_per_kwh: float = Field(default=0.30, gt=0)
    chat_tou_peak_per_kwh: float = Field(default=0.42, gt=0)
    chat_tou_offpeak_per_kwh: float = Field(default=0.22, gt=0)
    chat_tou_peak_hours: tuple[int, int] = Field(default=(16, 20), description="Local [start, end) hours.")
    chat_silent_hours: int = Field(default=24, ge=1, description="No data this long = a silent device.")

    # --- simulator (the vendor API) --------------------------------------------------------------
    simulator_api_key: SecretStr = SecretStr("local-dev-vendor-key")
    simulator_port: int = 8700
    # what `gridsight sync` puts in the connector's configuration.json (strings there, typed here)
    connector_page_size: int = Field(default=1000, ge=1, le=5000)
    connector_start_date: str = Field(default="2026-01-01", description="ISO date of the first sync.")
    connector_lookback_hours: float = Field(default=3.0, ge=0)
    sync_timeout_s: float = Field(default=3600.0, description="Kill a `fivetran debug` run after this.")

    # --- local service ports (127.0.0.1) ---------------------------------------------------------
    ingest_port: int = 8701
    forecast_port: int = 8702
    anomaly_port: int = 8703
    anomaly_device_chunk: int = Field(
        default=100,
        ge=1,
        description="Devices the anomaly push scores at once: its peak memory follows this, not the fleet.",
    )
    anomaly_reuse_mb: int = Field(
        default=512,
        ge=0,
        description="Memory the anomaly push may keep between its sweeps of the fleet (chunk panels, then "
        "their rankings) instead of loading and scoring those chunks again; 0 keeps nothing.",
    )
    chat_port: int = 8704
    model_server_port: int = 8705
    # the emulators of `gridsight up|demo --emulated-cloud` (infra/local/emulated.py)
    pubsub_emulator_port: int = 8706
    bigquery_emulator_port: int = 8707
    bigquery_emulator_grpc_port: int = 8708
    storage_emulator_port: int = 8709

    # --- forecast (model server, endpoint client, trainer) ---------------------------------------
    model_server_host: str = Field(default="127.0.0.1", description="0.0.0.0 inside the Vertex container.")
    forecast_batch_size: int = Field(default=250, ge=1, le=2000, description="Instances per endpoint call.")
    forecast_endpoint_timeout_s: float = Field(default=30.0, gt=0)
    forecast_endpoint_attempts: int = Field(default=3, ge=1)
    forecast_training_days: int = Field(default=365, ge=14, description="History the trainer reads.")
    vertex_training_image: str | None = Field(default=None, description="Trainer image for Vertex jobs.")

    @cached_property
    def duckdb_path(self) -> Path:
        """Modelled tables live in their own file, so the connector can own its raw file."""
        return self.home / "warehouse.duckdb"

    @cached_property
    def raw_duckdb_path(self) -> Path:
        """The file `fivetran debug` writes (schema `tester`); read only after a sync ends.

        `infra/local/sync.py` runs the connector project in `connector_dir`, and the SDK always
        writes `<project>/files/warehouse.db`.
        """
        return self.connector_dir / "files" / "warehouse.db"

    @cached_property
    def connector_dir(self) -> Path:
        """A private copy of `fivetran_connector/` per home, so the repo folder stays clean."""
        return self.home / "connector"

    @cached_property
    def lock_path(self) -> Path:
        return self.home / "warehouse.lock"

    @cached_property
    def queue_dir(self) -> Path:
        return self.home / "queue"

    @property
    def push_token_path(self) -> Path:
        """The per-installation secret local push endpoints require (mode 0600, made on first use).
        A plain property: a `model_copy(update={"home": ...})` must not keep the old home's token."""
        return self.home / "run" / "push-token"

    @cached_property
    def model_dir(self) -> Path:
        return self.home / "models"
