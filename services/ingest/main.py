"""The ingest service: Fivetran's webhook in, sync-completed pushes handled (functions-framework)."""

from __future__ import annotations

import flask
import functions_framework

from services.ingest.refresh import refresh_on_sync
from services.ingest.webhook import handle_fivetran_webhook
from shared.bus import open_publisher
from shared.errors import GridsightError
from shared.events import SyncCompleted
from shared.logging import configure_logging, get_logger
from shared.push import error_response, handle_push
from shared.settings import Settings
from shared.webhook import SIGNATURE_HEADER

log = get_logger("services.ingest")


def _settings() -> Settings:
    """Built per request (cheap), so a test can point the app at its own home."""
    configure_logging()
    return Settings()


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    settings = _settings()
    if request.path == "/healthz":
        return flask.jsonify(service="ingest", ok=True)
    if request.method != "POST":
        return error_response(405, f"{request.method} not allowed on {request.path}")
    if request.path == "/webhooks/fivetran":
        publisher = open_publisher(settings, source="gridsight/ingest")
        try:
            outcome = handle_fivetran_webhook(
                request.get_data(),
                request.headers.get(SIGNATURE_HEADER),
                settings=settings,
                publisher=publisher,
            )
        except GridsightError as exc:
            log.warning("webhook rejected", extra={"status": exc.status, "reason": str(exc)})
            return error_response(exc.status, str(exc))
        finally:
            publisher.close()
        return flask.jsonify(outcome.model_dump())
    if request.path == "/pubsub/sync-completed":
        return handle_push(
            request, expected=SyncCompleted, handler="ingest", work=refresh_on_sync, settings=settings
        )
    return error_response(404, f"no route {request.path}")
