"""The chat service's HTTP edge: `POST /v1/chat`, `GET /healthz`, and the dashboard it serves.

Verify (API key, rate limit), parse (pydantic), call `answer_question`, map errors to JSON with a
4xx/5xx status; no SQL or logic here. Dependencies are built once per process on first use, never
at import, so importing this module does no I/O.
"""

from __future__ import annotations

import json
from functools import cache

import flask
import functions_framework
from pydantic import ValidationError

from services.chat.answer import ChatDeps, answer_question, build_deps
from services.chat.api import ChatRequest
from services.chat.dashboard import handle_dashboard
from services.chat.ratelimit import AuthThrottle, RateLimited, RateLimiter, authenticate_throttled
from shared.bodies import PayloadTooLarge, limit_request, read_body
from shared.errors import GridsightError, status_for
from shared.logging import configure_logging, get_logger
from shared.settings import Settings

_log = get_logger(__name__)


@cache
def _runtime() -> tuple[ChatDeps, RateLimiter, AuthThrottle]:
    configure_logging()
    settings = Settings()
    throttle = AuthThrottle(settings.chat_auth_failures_per_minute)  # one for chat and dashboard
    return build_deps(settings), RateLimiter(settings.chat_rate_limit_per_minute), throttle


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> flask.Response:
    body = json.dumps({"error": message, "status": status})
    return flask.Response(body, status=status, mimetype="application/json", headers=headers or {})


def handle_chat(
    request: flask.Request, deps: ChatDeps, limiter: RateLimiter, throttle: AuthThrottle | None = None
) -> flask.Response:
    if request.method != "POST":
        return _error(405, 'use POST with a JSON body {"question": ...}')
    try:
        caller = authenticate_throttled(request, deps.settings, throttle)
        limiter.check(caller)
        body = ChatRequest.model_validate_json(read_body(request, deps.settings.chat_max_body_bytes) or b"{}")
        response = answer_question(body, caller, deps)
    except ValidationError as exc:
        return _error(
            400,
            "invalid request: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
        )
    except RateLimited as exc:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after_s)})
    except GridsightError as exc:
        extra = {"WWW-Authenticate": 'Bearer realm="gridsight"'} if exc.status == 401 else None
        return _error(status_for(exc), str(exc), extra)
    except Exception:
        _log.exception("chat request failed")
        return _error(500, "internal error while answering (see the service log)")
    return flask.Response(response.model_dump_json(), status=200, mimetype="application/json")


@functions_framework.http
def app(request: flask.Request) -> flask.Response:
    deps, limiter, throttle = _runtime()
    try:  # every route, the dashboard's and 404s included: functions-framework drains the body
        limit_request(request, deps.settings.chat_max_body_bytes)
    except PayloadTooLarge as exc:
        return _error(413, str(exc))
    if request.path == "/healthz":
        return flask.Response(json.dumps({"status": "ok", "service": "chat"}), mimetype="application/json")
    if request.path == "/v1/chat":
        return handle_chat(request, deps, limiter, throttle)
    dashboard = handle_dashboard(request, deps.settings, throttle)
    if dashboard is not None:
        return dashboard
    return _error(404, f"no route {request.path}")
