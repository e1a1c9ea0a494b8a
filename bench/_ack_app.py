"""A push endpoint that acknowledges at once, served by functions-framework like every service, so
bench_events.py measures the dispatcher and the HTTP stack rather than handler work."""

from __future__ import annotations

import flask
import functions_framework


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    return flask.Response(status=204)
