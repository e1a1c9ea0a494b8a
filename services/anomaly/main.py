"""The anomaly service: features-refreshed pushes in, scored incidents out; incident pushes in,
alerts out (functions-framework)."""

from __future__ import annotations

import flask
import functions_framework

from services.anomaly.alerts import deliver_alert, deliver_followup
from services.anomaly.scoring import score_window
from shared.events import AnomaliesDetected, AnomaliesWithdrawn, FeaturesRefreshed
from shared.push import PushRoute, serve_push, service_settings

ROUTES = {
    "/pubsub/features-refreshed": PushRoute(FeaturesRefreshed, "anomaly", score_window),
    "/pubsub/anomalies-detected": PushRoute(AnomaliesDetected, "anomaly-alert", deliver_alert),
    "/pubsub/anomalies-withdrawn": PushRoute(AnomaliesWithdrawn, "anomaly-followup", deliver_followup),
}


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    return serve_push(request, service="anomaly", routes=ROUTES, settings=service_settings())
