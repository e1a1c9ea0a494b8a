"""What `gridsight status` and the demo report read: processes, queue, dead letters, pipeline runs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from infra.local.supervisor import stack_state
from shared.bus.local import DeadLetter, QueueStore, SubscriptionStats
from shared.errors import GridsightError
from shared.runs import PipelineRun, recent_runs, run_counts
from shared.settings import Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = ["RuntimeStatus", "collect_status"]

REPORT_TABLES = (
    "dim_site",
    "dim_device",
    "fct_reading",
    "hourly_consumption",
    "ml_features",
    "daily_site_consumption",
    "forecasts",
    "anomalies",
    "pipeline_runs",
)
RAW_TABLES = ("site", "device", "reading", "invalid_reading")
STATUS_LOCK_TIMEOUT_S = 5.0  # a long refresh may hold the warehouse lock; status must still answer


class RuntimeStatus(BaseModel):
    processes: dict[str, dict[str, object]] = Field(default_factory=dict)
    queue: list[SubscriptionStats] = Field(default_factory=list)
    dead_letters: list[DeadLetter] = Field(default_factory=list)
    runs: list[PipelineRun] = Field(default_factory=list)
    run_counts: dict[str, int] = Field(default_factory=dict, description="'handler/status' -> runs")
    table_rows: dict[str, int] = Field(default_factory=dict)
    warehouse_error: str | None = None


def collect_status(settings: Settings, *, runs: int = 15, tables: bool = False) -> RuntimeStatus:
    """Never raises for a busy or missing warehouse: status is what you run when something is wrong."""
    status = RuntimeStatus(processes=stack_state(settings))
    store = QueueStore.open(settings)
    try:
        status.queue = store.stats()
        status.dead_letters = store.dead_letters()
    finally:
        store.close()
    quick = settings.model_copy(update={"warehouse_lock_timeout_s": STATUS_LOCK_TIMEOUT_S})
    try:
        with open_warehouse(quick) as wh:
            status.runs = recent_runs(wh, runs)
            status.run_counts = {f"{h}/{s}": n for (h, s), n in sorted(run_counts(wh).items())}
            if tables:
                for table in REPORT_TABLES:
                    status.table_rows[f"energy_analytics.{table}"] = _count(wh, f"energy_analytics.{table}")
                for table in RAW_TABLES:
                    if wh.table_exists(f"raw.{table}"):
                        status.table_rows[f"raw.{table}"] = _count(wh, f"raw.{table}")
    except GridsightError as exc:
        status.warehouse_error = str(exc)
    return status


def _count(wh: Warehouse, table: str) -> int:
    rows = wh.query(f"SELECT COUNT(*) AS n FROM {table}").to_pylist()
    return int(rows[0]["n"])
