"""The Fivetran webhook: turn one successful `sync_end` of our connection into one sync-completed.

Fivetran retries a webhook for up to 24 hours, so the same sync can arrive many times; the first
one publishes and is recorded in pipeline_runs (handler `webhook`, key connection/sync_id), the
rest are acknowledged as duplicates. A crash between publishing and recording can publish twice,
which the refresh handler absorbs with the same key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from shared.bus import Publisher
from shared.events import SyncCompleted
from shared.logging import bind_correlation_id, get_logger
from shared.runs import PipelineRun, has_succeeded, record_run
from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.webhook import FivetranWebhook, parse_webhook, verify_signature

__all__ = ["WEBHOOK_HANDLER", "WebhookOutcome", "handle_fivetran_webhook"]

WEBHOOK_HANDLER = "webhook"
log = get_logger(__name__)


class WebhookOutcome(BaseModel):
    status: Literal["published", "duplicate", "ignored"]
    reason: str | None = None
    sync_id: str | None = None
    message_id: str | None = None


def handle_fivetran_webhook(
    body: bytes, signature: str | None, *, settings: Settings, publisher: Publisher
) -> WebhookOutcome:
    """Verify (SignatureError), parse (InvalidEvent), then publish at most once per sync."""
    verify_signature(body, signature, settings.webhook_secret.get_secret_value())
    hook = parse_webhook(body)
    with bind_correlation_id(hook.sync_id):  # the sync id follows this sync through every service
        return _handle(hook, settings, publisher)


def _handle(hook: FivetranWebhook, settings: Settings, publisher: Publisher) -> WebhookOutcome:
    facts = {
        "event": hook.event,
        "connection": hook.connection,
        "sync_id": hook.sync_id,
        "status": hook.status,
    }
    if hook.connection != settings.fivetran_connection_id:
        log.info("webhook for another connection ignored", extra=facts)
        return WebhookOutcome(status="ignored", reason="not our connection", sync_id=hook.sync_id)
    if not hook.is_successful_sync_end():
        log.info("webhook acknowledged without processing", extra=facts)
        return WebhookOutcome(
            status="ignored", reason=f"{hook.event} {hook.status or ''}".strip(), sync_id=hook.sync_id
        )

    event = SyncCompleted(
        connection_id=settings.fivetran_connection_id, sync_id=str(hook.sync_id), sync_ended_at=hook.created
    )
    # A check and a run record: neither is a write a reader acts on, so neither publishes the snapshot
    # (each publish reads the whole file: docs/scaling.md, finding 22); the refresh after it does.
    with open_warehouse(settings, publish=False) as wh:
        if has_succeeded(wh, WEBHOOK_HANDLER, event.dedupe_key()):
            log.info("duplicate webhook acknowledged", extra=facts)
            return WebhookOutcome(status="duplicate", sync_id=hook.sync_id)
    message_id = publisher.publish(event, correlation_id=hook.sync_id)
    with open_warehouse(settings, publish=False) as wh:
        record_run(
            wh,
            PipelineRun(
                handler=WEBHOOK_HANDLER,
                dedupe_key=event.dedupe_key(),
                event_type=SyncCompleted.TYPE,
                message_id=message_id,
                correlation_id=hook.sync_id,
                status="succeeded",
                detail=f"published {SyncCompleted.TOPIC}",
            ),
        )
    log.info("sync-completed published", extra={**facts, "message_id": message_id})
    return WebhookOutcome(status="published", sync_id=hook.sync_id, message_id=message_id)
