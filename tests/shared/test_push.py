"""handle_push through a real Flask request: parse, dedupe on pipeline_runs, status mapping, OIDC."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import flask
import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from shared.bus import UnknownTopic, open_publisher
from shared.bus.local import QueueStore
from shared.errors import InvalidEvent, SignatureError, TransientError
from shared.events import EVENT_TYPES, Event, FeaturesRefreshed, SyncCompleted
from shared.push import PushContext, handle_push, local_push_token, verify_push_token
from shared.runs import PipelineRun, find_run, recent_runs, record_run
from shared.settings import REPO_ROOT, Settings
from shared.topology import load_topology
from shared.warehouse import open_warehouse
from tests.pushing import push_envelope, push_headers

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _event(refresh_id: str = "r1") -> FeaturesRefreshed:
    return FeaturesRefreshed(
        refresh_id=refresh_id, window_start=T0, window_end=T0 + dt.timedelta(hours=2), device_ids=["d1", "d2"]
    )


def _envelope(event: Event, message_id: str = "m1", attempt: int = 1) -> dict[str, Any]:
    return push_envelope(event, message_id=message_id, attempt=attempt, correlation_id="corr-1")


def _write_forecasts(event: FeaturesRefreshed, ctx: PushContext) -> int:
    """A realistic idempotent handler: MERGE one forecast row per device."""
    rows = pd.DataFrame(
        {
            "device_id": event.device_ids,
            "target_hour": [event.window_end] * len(event.device_ids),
            "p10": 1.0,
            "p50": 2.0,
            "p90": 3.0,
            "model_version": "v1",
            "made_at": T0,
        }
    )
    with open_warehouse(ctx.settings) as wh:
        return wh.merge("forecasts", rows, key=["device_id", "target_hour"])


def _post(
    settings: Settings, body: Any, work: Callable[..., object], path: str = "/pubsub", **headers: str
) -> flask.Response:
    """POST through handle_push; it presents the local push token unless the test passes its own
    Authorization header (or runs in another push_auth mode, where the token is not looked at)."""
    app = flask.Flask("test")
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    if settings.push_auth == "token" and "Authorization" not in headers:
        headers = {**headers, **push_headers(settings)}
    with app.test_request_context(
        path, method="POST", data=data, content_type="application/json", headers=headers
    ):
        return handle_push(
            flask.request, expected=FeaturesRefreshed, handler="forecast", work=work, settings=settings
        )


def _forecast_rows(settings: Settings) -> list[dict[str, Any]]:
    with open_warehouse(settings) as wh:
        return wh.query("SELECT * FROM energy_analytics.forecasts ORDER BY device_id").to_pylist()


def test_redelivered_event_is_skipped_and_leaves_forecasts_unchanged(settings: Settings) -> None:
    calls: list[PushContext] = []

    def work(event: FeaturesRefreshed, ctx: PushContext) -> int:
        calls.append(ctx)
        return _write_forecasts(event, ctx)

    assert _post(settings, _envelope(_event()), work).status_code == 204
    once = _forecast_rows(settings)
    # a redelivery (same id) and a re-publish (new message id, same refresh_id) both change nothing
    assert _post(settings, _envelope(_event(), attempt=2), work).status_code == 204
    assert _post(settings, _envelope(_event(), message_id="m2"), work).status_code == 204
    assert len(calls) == 1
    assert calls[0].correlation_id == "corr-1"
    assert calls[0].delivery_attempt == 1
    assert calls[0].subscription == "projects/p/subscriptions/forecast-features"
    assert _forecast_rows(settings) == once
    with open_warehouse(settings) as wh:
        runs = recent_runs(wh)
    assert [(r.handler, r.status, r.dedupe_key, r.rows_written) for r in runs] == [
        ("forecast", "succeeded", "r1", 2)
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ({"subscription": "s"}, "not a Pub/Sub push envelope"),
        ({"message": {"data": "", "attributes": {}}, "subscription": "s"}, "not a Pub/Sub push envelope"),
        ({"message": {"data": "!!", "attributes": {"type": FeaturesRefreshed.TYPE}, "messageId": "x"},
          "subscription": "s"}, "not a valid FeaturesRefreshed"),
        ({"message": {"data": base64.b64encode(b'{"refresh_id": 1}').decode(),
                      "attributes": {"type": FeaturesRefreshed.TYPE}, "messageId": "x"},
          "subscription": "s"}, "not a valid FeaturesRefreshed"),
    ],
)  # fmt: skip
def test_malformed_envelope_is_400_with_reason_and_work_never_runs(
    settings: Settings, body: Any, reason: str
) -> None:
    calls: list[object] = []
    response = _post(settings, body, lambda e, c: calls.append(e))
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    assert calls == []


def test_event_of_another_type_is_400(settings: Settings) -> None:
    other = SyncCompleted(connection_id="c", sync_id="s", sync_ended_at=T0)
    response = _post(settings, _envelope(other), lambda e, c: None)
    assert response.status_code == 400
    assert FeaturesRefreshed.TYPE in response.get_json()["error"]


def test_transient_failure_is_503_recorded_as_failed_then_redelivery_succeeds(settings: Settings) -> None:
    attempts: list[int | None] = []

    def work(event: FeaturesRefreshed, ctx: PushContext) -> int:
        attempts.append(ctx.delivery_attempt)
        if len(attempts) == 1:
            raise TransientError("no model yet")
        return _write_forecasts(event, ctx)

    first = _post(settings, _envelope(_event()), work)
    assert first.status_code == 503
    assert first.get_json()["error"] == "no model yet"
    assert _post(settings, _envelope(_event(), attempt=2), work).status_code == 204
    with open_warehouse(settings) as wh:
        statuses = sorted((r.status, r.delivery_attempt) for r in recent_runs(wh))
    assert statuses == [("failed", 1), ("succeeded", 2)]
    assert len(_forecast_rows(settings)) == 2


def test_invalid_event_raised_by_work_is_400(settings: Settings) -> None:
    def work(event: FeaturesRefreshed, ctx: PushContext) -> None:
        raise InvalidEvent("window is empty")

    response = _post(settings, _envelope(_event()), work)
    assert (response.status_code, response.get_json()["error"]) == (400, "window is empty")


def test_unexpected_error_is_500_without_stack_trace_in_body(settings: Settings) -> None:
    def work(event: FeaturesRefreshed, ctx: PushContext) -> None:
        raise KeyError("secret internals")

    response = _post(settings, _envelope(_event()), work)
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "secret internals" not in text
    assert "internal error in forecast" in response.get_json()["error"]


def test_work_publishes_through_the_context_publisher_onto_the_durable_queue(settings: Settings) -> None:
    def work(event: FeaturesRefreshed, ctx: PushContext) -> str:
        follow_up = SyncCompleted(connection_id="c", sync_id=event.refresh_id, sync_ended_at=T0)
        return ctx.publisher.publish(follow_up, correlation_id=ctx.correlation_id)

    assert _post(settings, _envelope(_event()), work).status_code == 204
    store = QueueStore.open(settings)
    try:
        states = store.delivery_states()
    finally:
        store.close()
    assert [(s, st) for s, _, st, _ in states] == [("ingest-refresh", "pending")]


# --- local push token (the default push_auth outside the cloud) ---------------------------------
def test_local_push_token_is_made_once_private_and_stable(settings: Settings) -> None:
    assert settings.push_auth == "token"  # the default: a local push is authenticated too
    token = local_push_token(settings)
    path = settings.home / "run" / "push-token"
    assert path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 40  # 32 random bytes, url-safe base64
    assert local_push_token(Settings()) == token  # another process of the same home agrees
    other_home = settings.model_copy(update={"home": settings.home.parent / "other"})
    assert local_push_token(other_home) != token


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},  # what any local process could send before: no credentials at all
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_forged_local_push_is_401_json_and_writes_nothing(
    settings: Settings, headers: dict[str, str]
) -> None:
    calls: list[object] = []
    response = _post(settings, _envelope(_event()), lambda e, c: calls.append(e), **headers)
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert "push token" in response.get_json()["error"]
    assert calls == []
    assert _forecast_rows(settings) == []


def test_push_token_in_the_query_is_accepted_for_the_emulator(settings: Settings) -> None:
    """The Pub/Sub emulator cannot set headers; its push URLs carry ?token=."""
    token = local_push_token(settings)
    ok = _post(
        settings, _envelope(_event()), _write_forecasts, path=f"/pubsub?token={token}", Authorization=""
    )
    assert ok.status_code == 204
    bad = _post(settings, _envelope(_event("r2")), _write_forecasts, path="/pubsub?token=x", Authorization="")
    assert bad.status_code == 401
    assert len(_forecast_rows(settings)) == 2  # only the first push wrote


def test_a_token_made_world_readable_is_tightened_again(settings: Settings) -> None:
    token = local_push_token(settings)
    settings.push_token_path.chmod(0o644)
    assert local_push_token(settings) == token
    assert settings.push_token_path.stat().st_mode & 0o777 == 0o600


# --- OIDC (cloud mode) ----------------------------------------------------------------------------
AUDIENCE = "https://forecast-abc.a.run.app/pubsub/features-refreshed"
PUSH_SA = "pubsub-push@gridsight-dev.iam.gserviceaccount.com"


@pytest.fixture
def oidc_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"push_auth": "oidc", "push_audience": AUDIENCE, "push_service_account": PUSH_SA}
    )


@pytest.fixture
def google_signer(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """A key pair standing in for Google's: only the certificate download is replaced; google-auth
    still checks the RS256 signature, expiry and audience for real."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    monkeypatch.setattr("google.oauth2.id_token._fetch_certs", lambda request, url: {"k1": pem})
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    signer = crypt.RSASigner.from_string(key_pem, key_id="k1")

    def sign(**overrides: Any) -> str:
        issued = int(now.timestamp())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": PUSH_SA,
            "email_verified": True,
            "sub": "123",
            "iat": issued,
            "exp": issued + 600,
            **overrides,
        }
        return jwt.encode(signer, claims).decode()

    return sign


def test_valid_push_token_is_accepted(oidc_settings: Settings, google_signer: Callable[..., str]) -> None:
    token = google_signer()
    response = _post(oidc_settings, _envelope(_event()), _write_forecasts, Authorization=f"Bearer {token}")
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://elsewhere"}, "rejected"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"email": "someone@example.com"}, "not the push service account"),
        ({"email_verified": False}, "not verified"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "rejected"),
    ],
)
def test_bad_push_token_is_401_and_work_never_runs(
    oidc_settings: Settings, google_signer: Callable[..., str], overrides: dict[str, Any], reason: str
) -> None:
    calls: list[object] = []
    token = google_signer(**overrides)
    response = _post(
        oidc_settings, _envelope(_event()), lambda e, c: calls.append(e), Authorization=f"Bearer {token}"
    )
    assert response.status_code == 401
    assert reason in response.get_json()["error"]
    assert calls == []


def test_missing_or_forged_token_is_401(oidc_settings: Settings, google_signer: Callable[..., str]) -> None:
    assert _post(oidc_settings, _envelope(_event()), lambda e, c: None).status_code == 401
    forged = google_signer()[:-8] + "AAAAAAAA"
    with pytest.raises(SignatureError):
        verify_push_token(f"Bearer {forged}", oidc_settings)


# --- topics used in code exist in infra/events.yaml -----------------------------------------------
def _event_classes_published_in_code() -> set[str]:
    """Names of Event classes constructed in any module that calls `.publish(`: a module that
    publishes an event it builds must publish it to a topic that exists."""
    names = set()
    event_names = {cls.__name__ for cls in EVENT_TYPES.values()}
    for folder in ("shared", "services", "infra"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            tree = ast.parse(Path(path).read_text())
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
            if not any(isinstance(c.func, ast.Attribute) and c.func.attr == "publish" for c in calls):
                continue
            names |= {c.func.id for c in calls if isinstance(c.func, ast.Name) and c.func.id in event_names}
    return names


def test_every_event_published_in_code_has_its_topic_in_the_topology() -> None:
    topology = load_topology()
    published = _event_classes_published_in_code()
    assert {"SyncCompleted", "FeaturesRefreshed"} <= published  # the scan finds the ingest publishers
    by_name = {cls.__name__: cls for cls in EVENT_TYPES.values()}
    missing = {n: by_name[n].TOPIC for n in published if by_name[n].TOPIC not in topology.topics}
    assert missing == {}
    for cls in EVENT_TYPES.values():
        assert topology.topics[cls.TOPIC].event_type == cls.TYPE


class _Stray(Event):
    TYPE: ClassVar[str] = "gridsight.stray.v1"
    TOPIC: ClassVar[str] = "stray-topic"
    key: str

    def dedupe_key(self) -> str:
        return self.key


def test_publishing_a_topic_missing_from_the_topology_is_refused(settings: Settings) -> None:
    publisher = open_publisher(settings)
    try:
        with pytest.raises(UnknownTopic, match="stray-topic"):
            publisher.publish(_Stray(key="k"))
    finally:
        publisher.close()


# --- pipeline_runs details ------------------------------------------------------------------------
def test_run_detail_is_cut_for_people_but_kept_whole_for_state(settings: Settings) -> None:
    """The ingest refresh stores its result (all device ids of a 1,000-meter fleet) and parses it
    on redelivery, so that detail must come back whole; summaries are cut."""
    long = json.dumps({"device_ids": [f"dev-{i:05d}" for i in range(1000)]})
    with open_warehouse(settings) as wh:
        record_run(wh, PipelineRun(handler="ingest.refresh", dedupe_key="k", status="succeeded", detail=long),
                   truncate=False)  # fmt: skip
        record_run(wh, PipelineRun(handler="forecast", dedupe_key="k", status="succeeded", detail=long))
        whole = find_run(wh, "ingest.refresh", "k")
        cut = find_run(wh, "forecast", "k")
    assert whole is not None
    assert whole.detail == long
    assert cut is not None
    assert cut.detail is not None
    assert len(cut.detail) < len(long)
