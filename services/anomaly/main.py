"""The anomaly service: features-refreshed pushes in, scored incidents out (functions-framework)."""

from __future__ import annotations

import flask
import functions_framework

from services.anomaly.scoring import score_window
from shared.events import FeaturesRefreshed
from shared.push import PushRoute, serve_push, service_settings

ROUTES = {"/pubsub/features-refreshed": PushRoute(FeaturesRefreshed, "anomaly", score_window)}


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    return serve_push(request, service="anomaly", routes=ROUTES, settings=service_settings())
