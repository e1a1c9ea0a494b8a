"""The sync-completed handler: refresh the modelled tables, then announce the refreshed window.

Crash safety under at-least-once delivery: the refresh advances its watermarks, so re-running it
after a crash would find nothing new and the window would never be announced. So the result is
recorded (handler `ingest.refresh`, same key as the sync) inside the refresh's own transaction,
after the models and before the watermarks (`run_refresh(record=...)`): models, record and
watermarks commit together on DuckDB, and on BigQuery a crash after the record leaves a record a
redelivery completes (`finish_recorded`) and republishes instead of refreshing again. The published
refresh_id is derived from the watermarks, so a second publish is deduped downstream: the window is
announced at least once and handled once per refresh_id.

Shards: a window naming more than `event_shard_devices` devices is announced as several
features-refreshed messages of consecutive device ranges, each with its own refresh_id
(`<refresh_id>-<k>of<n>`, derived, so a republish after a crash repeats the same ids and is deduped
shard by shard). One message per fleet would outgrow `event_max_devices` (a 100k fleet's ids are
1.2 MB, over the push body limit; a 1M fleet's 12 MB, over Pub/Sub's 10 MB), and per-shard messages
let Cloud Run run forecast and anomaly on shards side by side. A fleet of one shard keeps the plain
refresh_id.

Decision: a refresh whose window holds no data (nothing landed since the last one) publishes
nothing; the run is still recorded, with the reason. A window is announced even when its MERGEs
changed no rows: on BigQuery a re-run after a crash between the models and the record finds the
models already written, and the window must still be announced (rows_changed then counts only what
the re-run changed).
"""

from __future__ import annotations

from pydantic import BaseModel

from shared import refresh as refresh_steps
from shared.events import FeaturesRefreshed, SyncCompleted, shard_refresh_id
from shared.logging import get_logger
from shared.push import PushContext
from shared.refresh import RefreshResult, WindowLimits, finish_recorded, run_refresh
from shared.runs import PipelineRun, find_run, record_run
from shared.settings import Settings
from shared.warehouse import Warehouse, open_warehouse

__all__ = ["REFRESH_STAGE", "RefreshOutcome", "refresh_on_sync", "shard_events"]

REFRESH_STAGE = "ingest.refresh"
log = get_logger(__name__)


class RefreshOutcome(BaseModel):
    refresh_id: str
    published_message_ids: list[str] = []
    reused_recorded_refresh: bool
    rows_written: int
    skipped_reason: str | None = None


def refresh_on_sync(event: SyncCompleted, ctx: PushContext) -> RefreshOutcome:
    def record(wh: Warehouse, result: RefreshResult) -> None:
        record_run(
            wh,
            PipelineRun(
                handler=REFRESH_STAGE,
                dedupe_key=event.dedupe_key(),
                event_type=SyncCompleted.TYPE,
                message_id=ctx.message_id,
                subscription=ctx.subscription,
                delivery_attempt=ctx.delivery_attempt,
                correlation_id=ctx.correlation_id,
                status="succeeded",
                detail=result.model_dump_json(),
                rows_written=sum(result.rows_changed.values()),
            ),
            truncate=False,
        )

    with open_warehouse(ctx.settings) as wh:
        recorded = find_run(wh, REFRESH_STAGE, event.dedupe_key())
        if recorded is not None and recorded.detail:
            result = RefreshResult.model_validate_json(recorded.detail)
            finish_recorded(wh, result)
        else:
            result = run_refresh(wh, record=record, limits=WindowLimits.from_settings(ctx.settings))
    refresh_steps.step_done("committed")
    rows = sum(result.rows_changed.values())
    outcome = RefreshOutcome(
        refresh_id=result.refresh_id,
        reused_recorded_refresh=recorded is not None,
        rows_written=rows,
    )
    if result.window_start is None or result.window_end is None:
        reason = result.skipped_reason or "no rows changed"
        log.info("refresh changed nothing; nothing published", extra={"refresh_id": result.refresh_id})
        return outcome.model_copy(update={"skipped_reason": reason})

    message_ids = []
    events = shard_events(result, ctx.settings)
    for refreshed in events:
        message_ids.append(ctx.publisher.publish(refreshed, correlation_id=ctx.correlation_id))
    refresh_steps.step_done("published")
    log.info(
        "features-refreshed published",
        extra={
            "refresh_id": result.refresh_id,
            "message_ids": message_ids,
            "devices": len(result.device_ids),
            "shards": len(events),
            "window": [result.window_start.isoformat(), result.window_end.isoformat()],
        },
    )
    return outcome.model_copy(update={"published_message_ids": message_ids})


def shard_events(result: RefreshResult, settings: Settings) -> list[FeaturesRefreshed]:
    """The refreshed window as messages of at most `event_shard_devices` devices each (sorted
    ranges; never more than `event_max_devices`, which the subscribers refuse above).

    rows_changed is the refresh's whole count, repeated on every shard: it says what the refresh
    did, not what one shard's devices changed."""
    if result.window_start is None or result.window_end is None:
        raise ValueError(f"refresh {result.refresh_id} has no window to announce")
    size = min(settings.event_shard_devices, settings.event_max_devices)
    devices = sorted(result.device_ids)
    chunks = [devices[i : i + size] for i in range(0, len(devices), size)] or [[]]
    n = len(chunks)
    return [
        FeaturesRefreshed(
            refresh_id=shard_refresh_id(result.refresh_id, k, n),
            window_start=result.window_start,
            window_end=result.window_end,
            device_ids=chunk,
            rows_changed=result.rows_changed,
        )
        for k, chunk in enumerate(chunks, start=1)
    ]
