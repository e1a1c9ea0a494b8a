"""A push service for the crash tests: handle_push around a forecast-like MERGE, with fault switches.

Files in the settings home flip its behaviour, so a test can crash it at a precise point:
`crash-after-write` SIGKILLs the serving worker (gunicorn starts a new one) after the MERGE and
before the run is recorded and acknowledged; `block` holds the request (after writing `entered`)
until the test removes it.
"""

from __future__ import annotations

import os
import signal
import time

import flask
import functions_framework
import pandas as pd

from shared.events import FeaturesRefreshed
from shared.logging import configure_logging
from shared.push import PushContext, handle_push
from shared.settings import Settings
from shared.warehouse import open_warehouse


def _work(event: FeaturesRefreshed, ctx: PushContext) -> int:
    home = ctx.settings.home
    rows = pd.DataFrame(
        {
            "device_id": event.device_ids,
            "target_hour": [event.window_end] * len(event.device_ids),
            "p10": 1.0,
            "p50": 2.0,
            "p90": 3.0,
            "model_version": "v1",
            "made_at": event.window_start,
        }
    )
    with open_warehouse(ctx.settings) as wh:
        written = wh.merge("forecasts", rows, key=["device_id", "target_hour"])
    if (home / "block").exists():
        (home / "entered").touch()
        deadline = time.monotonic() + 60
        while (home / "block").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    crash = home / "crash-after-write"
    if crash.exists():
        crash.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return written


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    configure_logging()
    return handle_push(
        request, expected=FeaturesRefreshed, handler="forecast", work=_work, settings=Settings()
    )
