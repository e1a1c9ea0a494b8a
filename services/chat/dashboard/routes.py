"""The dashboard's HTTP edge inside the chat service: page, static assets and the JSON it reads.

The page and its assets hold no data, so a browser can load them without a key (it cannot send a
header on navigation); every JSON endpoint demands the chat API key, checked by the same function as
`/v1/chat`. Responses carry a strict Content-Security-Policy: scripts only from this origin (ECharts
is vendored under static/vendor), no framing, no referrer.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import flask

from services.chat.dashboard.data import MAX_DETAIL_HOURS, device_detail, fleet_overview
from services.chat.ratelimit import AuthThrottle, RateLimited, authenticate_throttled
from shared.errors import GridsightError, NotFound, status_for
from shared.logging import get_logger
from shared.settings import Settings
from shared.warehouse import open_warehouse

__all__ = ["STATIC_DIR", "BadQuery", "handle_dashboard"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_PREFIX = "/dashboard/static/"
_DEVICE_PREFIX = "/api/dashboard/devices/"
_STATIC_TYPES = {".html", ".js", ".css", ".svg", ".png", ".ico"}
_SECURITY_HEADERS = {
    # ECharts writes inline style attributes into its tooltips, hence 'unsafe-inline' for styles only
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_log = get_logger(__name__)


class BadQuery(GridsightError):
    """A query parameter the endpoint cannot use: the caller's mistake, answered with 400."""

    status = 400


def handle_dashboard(
    request: flask.Request, settings: Settings, throttle: AuthThrottle | None = None
) -> flask.Response | None:
    """Serve a dashboard path; None when the path is not the dashboard's, so the caller routes on."""
    path = request.path
    if not (path == "/dashboard" or path.startswith(("/dashboard/", "/api/dashboard/"))):
        return None
    if request.method not in ("GET", "HEAD"):
        return _secure(_json_error(405, f"{request.method} not allowed on {path}; use GET"))
    try:
        if path in ("/dashboard", "/dashboard/"):
            response = _static_file(request, "index.html")
        elif path.startswith(_STATIC_PREFIX):
            response = _static_file(request, path.removeprefix(_STATIC_PREFIX))
        else:
            response = _api(request, settings, path, throttle)
    except GridsightError as exc:
        response = _json_error(status_for(exc), str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="gridsight"'
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after_s)
    except Exception:
        _log.exception("dashboard request failed", extra={"path": path})
        response = _json_error(500, "internal error while reading the dashboard data (see the service log)")
    return _secure(response)


def _api(
    request: flask.Request, settings: Settings, path: str, throttle: AuthThrottle | None
) -> flask.Response:
    caller = authenticate_throttled(request, settings, throttle)
    if path == "/api/dashboard/fleet":
        with open_warehouse(settings, read_only=True) as wh:
            body = fleet_overview(wh).model_dump_json()
    elif path.startswith(_DEVICE_PREFIX) and path.removeprefix(_DEVICE_PREFIX).strip("/"):
        device_id = path.removeprefix(_DEVICE_PREFIX).strip("/")
        hours = _int_arg(request, "hours", default=7 * 24, low=1, high=MAX_DETAIL_HOURS)
        with open_warehouse(settings, read_only=True) as wh:
            body = device_detail(wh, device_id, hours=hours).model_dump_json()
    else:
        raise NotFound(f"no dashboard endpoint at {path}")
    _log.info("dashboard data served", extra={"path": path, "caller": caller})
    response = flask.Response(body, status=200, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _static_file(request: flask.Request, relative: str) -> flask.Response:
    """Only files under static/ with a known web type; no directory listing, no path escape."""
    target = (STATIC_DIR / relative).resolve()
    if not target.is_relative_to(STATIC_DIR) or target.suffix not in _STATIC_TYPES or not target.is_file():
        raise NotFound(f"no dashboard asset {relative!r}")
    mimetype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        mimetype = "text/javascript"
    response = flask.Response(target.read_bytes(), status=200, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-cache"  # revalidate by ETag: cheap, and never stale
    response.add_etag()
    return response.make_conditional(request)


def _int_arg(request: flask.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"query parameter {name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"query parameter {name} must be between {low} and {high}, got {value}")
    return value


def _json_error(status: int, message: str) -> flask.Response:
    return flask.Response(
        json.dumps({"error": message, "status": status}), status=status, mimetype="application/json"
    )


def _secure(response: flask.Response) -> flask.Response:
    for header, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    return response
