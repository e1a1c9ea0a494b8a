"""The forecast service: features-refreshed pushes in, forecasts out (functions-framework app)."""

from __future__ import annotations

import flask
import functions_framework

from services.forecast.forecast import forecast_window
from shared.events import FeaturesRefreshed
from shared.logging import configure_logging
from shared.push import error_response, handle_push
from shared.settings import Settings


def _settings() -> Settings:
    """Built per request (cheap), so a test can point the app at its own home."""
    configure_logging()
    return Settings()


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    settings = _settings()
    if request.path == "/healthz":
        return flask.jsonify(service="forecast", ok=True)
    if request.method != "POST":
        return error_response(405, f"{request.method} not allowed on {request.path}")
    if request.path == "/pubsub/features-refreshed":
        return handle_push(
            request, expected=FeaturesRefreshed, handler="forecast", work=forecast_window, settings=settings
        )
    return error_response(404, f"no route {request.path}")
