"""The one way a service handles a Pub/Sub push: verify, parse, dedupe, work, record, map to a status.

    @functions_framework.http
    def app(request):
        if request.path == "/pubsub/features-refreshed":
            return handle_push(request, expected=FeaturesRefreshed, handler="forecast",
                               work=forecast_window_handler, settings=Settings())

The raw push body is parsed here (not functions-framework's CloudEvent conversion, which drops
`deliveryAttempt` and `subscription`). Delivery is at least once, so a succeeded run of
(handler, event.dedupe_key()) in pipeline_runs turns a redelivery into a 204 without work; `work`
itself must still be idempotent (MERGE), because a crash between work and record redelivers.
Locally (`push_auth=token`, the default) a push must carry the per-installation token of
`local_push_token` as `Authorization: Bearer <token>` (the dispatcher) or as a `token` query
parameter (the Pub/Sub emulator cannot set headers): the same place and shape as the cloud's OIDC
check, so no other process on the machine can forge an event.
Status codes are Pub/Sub's contract: 204 ack, 400 InvalidEvent (never succeeds: retried until
dead-lettered, and visible there), 401 bad token, 503 TransientError and 500 anything else (retried).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import flask
from pydantic import BaseModel

from shared.bodies import PayloadTooLarge, limit_request, parse_json, read_body
from shared.bus import Publisher, open_publisher
from shared.errors import GridsightError, SignatureError, status_for
from shared.events import Event, PushEnvelope, check_event, decode_event, parse_envelope
from shared.logging import bind_correlation_id, configure_logging, get_logger
from shared.runs import PipelineRun, has_succeeded, record_run
from shared.settings import Settings
from shared.warehouse import open_warehouse

__all__ = [
    "PushContext",
    "PushRoute",
    "error_response",
    "forwarded_claims",
    "handle_push",
    "local_push_token",
    "serve_push",
    "service_settings",
    "verify_local_push_token",
    "verify_push_token",
]

E = TypeVar("E", bound=Event)
log = get_logger(__name__)

_GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


@dataclass(frozen=True)
class PushContext:
    """What a push handler gets besides the event: where to publish and which delivery this is."""

    settings: Settings
    publisher: Publisher
    message_id: str
    subscription: str
    delivery_attempt: int | None
    correlation_id: str


@dataclass(frozen=True)
class PushRoute:
    """One push endpoint of a service: the event it takes and the plain function that handles it."""

    expected: type[Event]
    handler: str
    work: Callable[[Any, PushContext], object]


def service_settings() -> Settings:
    """Built per request (cheap), so a test can point an app at its own home."""
    configure_logging()
    return Settings()


def serve_push(
    request: flask.Request, *, service: str, routes: Mapping[str, PushRoute], settings: Settings
) -> flask.Response:
    """The edge every push-driven service shares: health, 405 for non-POST, one route per path, 404.
    Every request's body is bounded first, whatever its route (functions-framework drains it)."""
    try:
        limit_request(request, settings.push_max_body_bytes)
    except PayloadTooLarge as exc:
        return error_response(413, str(exc))
    if request.path == "/healthz":
        return flask.jsonify(service=service, ok=True)
    if request.method != "POST":
        return error_response(405, f"{request.method} not allowed on {request.path}")
    route = routes.get(request.path)
    if route is None:
        return error_response(404, f"no route {request.path}")
    return handle_push(
        request, expected=route.expected, handler=route.handler, work=route.work, settings=settings
    )


def error_response(status: int, message: str) -> flask.Response:
    """A JSON error body with a message a caller can act on, never a stack trace."""
    return flask.Response(
        flask.json.dumps({"error": message, "status": status}), status=status, mimetype="application/json"
    )


def verify_push_token(
    authorization: str | None, settings: Settings, verify: Callable[..., dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Check the OIDC token Pub/Sub attaches to a push, the way it reaches this service.

    `push_auth=oidc` (a service with invoker IAM switched off, i.e. ingest): the token arrives as
    Pub/Sub signed it, so its signature, expiry and audience are verified by google-auth.
    `push_auth=cloud_run` (an IAM-protected service): Cloud Run has already verified signature,
    expiry, audience and the caller's run.invoker before the request arrives, and forwards the token
    with its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE` (Cloud Run docs, "Authenticating
    service-to-service"), so only the claims can be read; a token that still carries a signature is
    verified in full. In both modes the claims must then name Google as issuer, our audience and
    the push service account, with a verified email."""
    if not authorization or not authorization.startswith("Bearer "):
        raise SignatureError("missing bearer token on push request")
    if not settings.push_audience or not settings.push_service_account:
        raise SignatureError(
            f"push_auth={settings.push_auth} needs push_audience and push_service_account set"
        )
    token = authorization.removeprefix("Bearer ").strip()
    if (
        settings.push_auth == "cloud_run"
        and token.count(".") == 2
        and token.rsplit(".", 1)[1] == STRIPPED_SIGNATURE
    ):
        claims = forwarded_claims(token)
    else:
        claims = _verified_claims(token, settings.push_audience, verify)
    _check_claims(claims, settings)
    return claims


STRIPPED_SIGNATURE = "SIGNATURE_REMOVED_BY_GOOGLE"
_CLOCK_SKEW_S = 60


def forwarded_claims(token: str) -> dict[str, Any]:
    """The payload of a token Cloud Run verified and forwarded with its signature stripped."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError) as exc:
        raise SignatureError("forwarded push token is not a JWT") from exc
    if not isinstance(claims, dict):
        raise SignatureError("forwarded push token has no claims")
    # Cloud Run checked expiry already; a stale forwarded token means a replayed request.
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + _CLOCK_SKEW_S < time.time():
        raise SignatureError("forwarded push token is expired")
    return claims


def _verified_claims(
    token: str, audience: str, verify: Callable[..., dict[str, Any]] | None
) -> dict[str, Any]:
    if verify is None:
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        def verify(token: str, audience: str) -> dict[str, Any]:
            return dict(id_token.verify_oauth2_token(token, google_requests.Request(), audience=audience))

    from google.auth.exceptions import GoogleAuthError

    try:
        return verify(token, audience=audience)
    except (ValueError, GoogleAuthError) as exc:  # bad signature, expiry, audience, issuer
        raise SignatureError(f"push token rejected: {exc}") from exc


def _check_claims(claims: dict[str, Any], settings: Settings) -> None:
    if claims.get("iss") not in _GOOGLE_ISSUERS:
        raise SignatureError(f"push token issuer {claims.get('iss')!r} is not Google")
    if claims.get("aud") != settings.push_audience:
        raise SignatureError("push token audience does not match")
    if claims.get("email") != settings.push_service_account:
        raise SignatureError(f"push token is for {claims.get('email')!r}, not the push service account")
    if claims.get("email_verified") is not True:
        raise SignatureError("push token email is not verified")


def local_push_token(settings: Settings) -> str:
    """This installation's push secret, made once (256 random bits) in `<home>/run/push-token`, 0600.

    Made by whichever process asks first (dispatcher, service, test); a temp file hard-linked into
    place makes creation atomic, so two racing processes agree on one token and nobody ever reads a
    half-written file.
    """
    path = settings.push_token_path
    try:
        return _read_token(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process won the race: use its token
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_token(path)


def _read_token(path: os.PathLike[str]) -> str:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd) as handle:
        if os.fstat(handle.fileno()).st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)  # someone loosened it: a secret is never group/world-readable
        token = handle.read().strip()
    if not token:
        raise SignatureError(f"{path} is empty; delete it and a new push token is made")
    return token


def verify_local_push_token(authorization: str | None, query_token: str | None, settings: Settings) -> None:
    """Check a local push's token (header from the dispatcher, query parameter from the emulator),
    in constant time; anything else is a 401."""
    presented = None
    if authorization and authorization.startswith("Bearer "):
        presented = authorization.removeprefix("Bearer ").strip()
    elif query_token:
        presented = query_token
    if not presented:
        raise SignatureError("missing push token (Authorization: Bearer <token> or ?token=)")
    expected = local_push_token(settings)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise SignatureError("push token rejected")


def _outcome(result: object) -> tuple[str | None, int | None]:
    """(detail, rows_written) for pipeline_runs from whatever `work` returned."""
    if result is None:
        return None, None
    if isinstance(result, int) and not isinstance(result, bool):
        return None, result
    if isinstance(result, BaseModel):
        rows = getattr(result, "rows_written", None)
        return result.model_dump_json(), rows if isinstance(rows, int) else None
    return str(result), None


def _parse(request: flask.Request, settings: Settings) -> PushEnvelope:
    if settings.push_auth in ("oidc", "cloud_run"):
        verify_push_token(request.headers.get("Authorization"), settings)
    elif settings.push_auth == "token":
        verify_local_push_token(request.headers.get("Authorization"), request.args.get("token"), settings)
    return parse_envelope(parse_json(read_body(request, settings.push_max_body_bytes), "push body"))


def handle_push(
    request: flask.Request,
    *,
    expected: type[E],
    handler: str,
    work: Callable[[E, PushContext], object],
    settings: Settings,
    publisher: Publisher | None = None,
) -> flask.Response:
    started = time.perf_counter()
    try:
        envelope = _parse(request, settings)
        event = check_event(decode_event(envelope, expected), envelope.message.attributes, settings)
    except GridsightError as exc:
        log.warning("push rejected", extra={"handler": handler, "status": exc.status, "reason": str(exc)})
        return error_response(exc.status, str(exc))

    msg = envelope.message
    cid = msg.attributes.get("correlation_id") or msg.message_id
    run = PipelineRun(
        handler=handler,
        dedupe_key=event.dedupe_key(),
        event_type=expected.TYPE,
        message_id=msg.message_id,
        subscription=envelope.subscription,
        delivery_attempt=envelope.delivery_attempt,
        correlation_id=cid,
        status="running",
    )
    facts = {
        "handler": handler,
        "message_id": msg.message_id,
        "subscription": envelope.subscription,
        "delivery_attempt": envelope.delivery_attempt,
        "dedupe_key": run.dedupe_key,
    }
    with bind_correlation_id(cid):
        own_publisher = publisher is None
        try:
            # A check, not a write: it must not republish the snapshot (finding 22: each publish
            # reads the whole file); the next publishing write, or a reader catching up, does.
            with open_warehouse(settings, publish=False) as wh:
                if has_succeeded(wh, handler, run.dedupe_key):
                    log.info("duplicate delivery skipped", extra=facts)
                    return flask.Response(status=204)
            publisher = publisher or open_publisher(settings, source=f"gridsight/{handler}")
            ctx = PushContext(
                settings, publisher, msg.message_id, envelope.subscription, envelope.delivery_attempt, cid
            )
            detail, rows = _outcome(work(event, ctx))
            run = run.model_copy(update={"status": "succeeded", "detail": detail, "rows_written": rows})
            _finish(settings, run)
            log.info("push handled", extra={**facts, "ms": round(1000 * (time.perf_counter() - started), 1)})
            return flask.Response(status=204)
        except Exception as exc:
            status = status_for(exc)
            message = str(exc) if isinstance(exc, GridsightError) else f"{type(exc).__name__}: {exc}"
            log.log(
                40 if status == 500 else 30,
                "push failed",
                extra={**facts, "status": status, "reason": message},
                exc_info=status == 500,
            )
            _finish(settings, run.model_copy(update={"status": "failed", "detail": message}), quiet=True)
            public = message if status != 500 else f"internal error in {handler} (run {run.run_id}, see logs)"
            return error_response(status, public)
        finally:
            if own_publisher and publisher is not None:
                publisher.close()


def _finish(settings: Settings, run: PipelineRun, *, quiet: bool = False) -> None:
    """Record the finished run; when recording a failure fails too, the log line is the record."""
    run = run.model_copy(update={"finished_at": datetime.now(UTC)})
    try:
        # no snapshot copy for a run record: the duplicate check reads it under the lock, and
        # readers (status, the bench) get it with the next copy (shared.warehouse module doc)
        with open_warehouse(settings, publish=False) as wh:
            record_run(wh, run)
    except Exception:
        if not quiet:
            raise
        log.exception("could not record failed run", extra={"handler": run.handler, "run_id": run.run_id})
