"""The ingest service: Fivetran's webhook in, sync-completed pushes handled (functions-framework)."""

from __future__ import annotations

import flask
import functions_framework

from services.ingest.refresh import refresh_on_sync
from services.ingest.webhook import handle_fivetran_webhook
from shared.bodies import read_body
from shared.bus import open_publisher
from shared.errors import GridsightError
from shared.events import SyncCompleted
from shared.logging import get_logger
from shared.push import PushRoute, error_response, serve_push, service_settings
from shared.settings import Settings
from shared.webhook import SIGNATURE_HEADER

log = get_logger("services.ingest")


ROUTES = {"/pubsub/sync-completed": PushRoute(SyncCompleted, "ingest", refresh_on_sync)}


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    settings = service_settings()
    if request.method == "POST" and request.path == "/webhooks/fivetran":
        return _fivetran_webhook(request, settings)
    return serve_push(request, service="ingest", routes=ROUTES, settings=settings)


def _fivetran_webhook(request: flask.Request, settings: Settings) -> flask.Response:
    try:
        body = read_body(request, settings.webhook_max_body_bytes)
    except GridsightError as exc:
        log.warning("webhook rejected", extra={"status": exc.status, "reason": str(exc)})
        return error_response(exc.status, str(exc))
    publisher = open_publisher(settings, source="gridsight/ingest")
    try:
        outcome = handle_fivetran_webhook(
            body,
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
