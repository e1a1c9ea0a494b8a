"""energy_analytics.pipeline_runs: one row per handling attempt, the idempotency record of every handler.

Pub/Sub delivers at least once and Fivetran retries its webhook for a day, so a handler asks
`has_succeeded(handler, dedupe_key)` before working and records the outcome after. The business key
(`event.dedupe_key()`), not the messageId, is what counts: a replayed dead letter or a second
publish of the same refresh carries a new messageId but the same key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from shared.warehouse import Warehouse

__all__ = ["PipelineRun", "RunStatus", "find_run", "has_succeeded", "recent_runs", "record_run", "run_counts"]

RunStatus = Literal["running", "succeeded", "failed", "skipped"]
_DETAIL_LIMIT = 4000


def _now() -> datetime:
    return datetime.now(UTC)


class PipelineRun(BaseModel):
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    handler: str
    dedupe_key: str
    event_type: str | None = None
    message_id: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None
    correlation_id: str | None = None
    status: RunStatus
    detail: str | None = None
    rows_written: int | None = None
    started_at: datetime = Field(default_factory=_now)
    finished_at: datetime | None = None


_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("handler", pa.string()),
        ("dedupe_key", pa.string()),
        ("event_type", pa.string()),
        ("message_id", pa.string()),
        ("subscription", pa.string()),
        ("delivery_attempt", pa.int64()),
        ("correlation_id", pa.string()),
        ("status", pa.string()),
        ("detail", pa.string()),
        ("rows_written", pa.int64()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)


def record_run(wh: Warehouse, run: PipelineRun, *, truncate: bool = True) -> None:
    """Insert or update the row of `run` (keyed by run_id, so recording twice is harmless).

    A detail is a summary for people and is cut at a few kB, unless `truncate=False`: a handler that
    stores state it will parse again on redelivery (the ingest refresh result) needs all of it."""
    row = run.model_dump()
    if truncate and row["detail"] and len(row["detail"]) > _DETAIL_LIMIT:
        row["detail"] = row["detail"][:_DETAIL_LIMIT] + "…"
    wh.merge("pipeline_runs", pa.Table.from_pylist([row], schema=_SCHEMA), key=["run_id"])


def find_run(
    wh: Warehouse, handler: str, dedupe_key: str, status: RunStatus = "succeeded"
) -> PipelineRun | None:
    """The latest run of `handler` for `dedupe_key` with `status`, if any."""
    rows = wh.query(
        "SELECT * FROM energy_analytics.pipeline_runs"
        " WHERE handler = @handler AND dedupe_key = @key AND status = @status"
        " ORDER BY started_at DESC LIMIT 1",
        {"handler": handler, "key": dedupe_key, "status": status},
    ).to_pylist()
    return PipelineRun.model_validate(rows[0]) if rows else None


def has_succeeded(wh: Warehouse, handler: str, dedupe_key: str) -> bool:
    return find_run(wh, handler, dedupe_key, "succeeded") is not None


def recent_runs(wh: Warehouse, limit: int = 20) -> list[PipelineRun]:
    rows = wh.query(
        "SELECT * FROM energy_analytics.pipeline_runs ORDER BY started_at DESC LIMIT @limit",
        {"limit": limit},
    ).to_pylist()
    return [PipelineRun.model_validate(r) for r in rows]


def run_counts(wh: Warehouse) -> dict[tuple[str, str], int]:
    """(handler, status) -> number of runs, for status reports."""
    rows = wh.query(
        "SELECT handler, status, COUNT(*) AS n FROM energy_analytics.pipeline_runs GROUP BY handler, status"
    ).to_pylist()
    return {(r["handler"], r["status"]): int(r["n"]) for r in rows}
