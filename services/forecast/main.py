"""The forecast service: features-refreshed pushes in, forecasts out (functions-framework app)."""

from __future__ import annotations

import flask
import functions_framework

from services.forecast.forecast import forecast_window
from shared.events import FeaturesRefreshed
from shared.push import PushRoute, serve_push, service_settings

ROUTES = {"/pubsub/features-refreshed": PushRoute(FeaturesRefreshed, "forecast", forecast_window)}


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    return serve_push(request, service="forecast", routes=ROUTES, settings=service_settings())
