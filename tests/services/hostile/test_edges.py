"""#18 edges of the push services and the webhook: bounded bodies (413 JSON) and a JSON 400 for any
body that does not parse, deep nesting included (functions-framework answered an HTML 500)."""

from __future__ import annotations

import threading

import functions_framework
import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from shared.settings import REPO_ROOT, Settings
from tests.pushing import authorized, push_headers

PUSH_PATHS = [("ingest", "/pubsub/sync-completed"), ("forecast", "/pubsub/features-refreshed"),
              ("anomaly", "/pubsub/features-refreshed")]  # fmt: skip


def _client(service: str, settings: Settings) -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / f"services/{service}/main.py"))
    return authorized(app.test_client(), settings)


def _assert_json_error(response, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert words in response.get_json()["error"]


@pytest.mark.parametrize(("service", "path"), PUSH_PATHS)
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xff\xfe not utf-8", b"", b"null"],
    ids=["deep-array", "deep-object", "not-utf8", "empty", "null"],
)
def test_unparsable_push_body_is_json_400(settings: Settings, service: str, path: str, body: bytes) -> None:
    response = _client(service, settings).post(path, data=body, content_type="application/json")
    _assert_json_error(response, 400, "JSON" if body not in (b"null",) else "envelope")


@pytest.mark.parametrize(("service", "path"), PUSH_PATHS)
def test_push_body_over_the_limit_is_413_json(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, service: str, path: str
) -> None:
    assert Settings().push_max_body_bytes == 1024 * 1024  # the documented default
    monkeypatch.setenv("GRIDSIGHT_PUSH_MAX_BODY_BYTES", "4096")
    client = _client(service, settings)
    response = client.post(path, data=b'{"pad": "' + b"x" * 5000 + b'"}', content_type="application/json")
    _assert_json_error(response, 413, "4096 bytes")


def test_webhook_body_over_the_limit_is_413_json(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().webhook_max_body_bytes == 64 * 1024
    monkeypatch.setenv("GRIDSIGHT_WEBHOOK_MAX_BODY_BYTES", "2000")
    client = _client("ingest", settings)
    response = client.post("/webhooks/fivetran", data=b"x" * 2001, content_type="application/json")
    _assert_json_error(response, 413, "2000 bytes")


def test_unsized_chunked_push_body_is_still_bounded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Content-Length (a chunked upload over real HTTP): the limit holds while reading."""
    monkeypatch.setenv("GRIDSIGHT_PUSH_MAX_BODY_BYTES", "4096")
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = requests.post(
            f"http://127.0.0.1:{server.server_port}/pubsub/features-refreshed",
            data=(b"x" * 1000 for _ in range(100)),  # a generator: requests sends it chunked
            headers={**push_headers(settings), "Content-Type": "application/json"},
            timeout=10,
        )
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413, response.text[:300]
    assert "4096 bytes" in response.json()["error"]


def test_model_server_predict_body_over_the_limit_is_413_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.forecast.model_server import ModelStore, ServerConfig, create_app

    assert ServerConfig().max_body_bytes == 8 * 1024 * 1024
    client = create_app(ModelStore(tmp_path), ServerConfig(max_body_bytes=2048)).test_client()
    response = client.post("/predict", data=b'{"instances": [' + b"1," * 2000 + b"1]}",
                           content_type="application/json")  # fmt: skip
    _assert_json_error(response, 413, "2048 bytes")
    deep = client.post("/predict", data=b"[" * 1500, content_type="application/json")
    assert deep.status_code == 400
    assert deep.mimetype == "application/json"


@pytest.mark.parametrize(("service", "path"), [("anomaly", "/healthz"), ("forecast", "/nowhere"),
                                               ("ingest", "/pubsub/sync-completed")])  # fmt: skip
def test_every_route_bounds_the_body_not_only_the_push_routes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, service: str, path: str
) -> None:
    """functions-framework reads the whole body after any response (404, 405, health), so the limit
    must hold before routing, or an announced gigabyte is read into memory anyway."""
    monkeypatch.setenv("GRIDSIGHT_PUSH_MAX_BODY_BYTES", "4096")
    response = _client(service, settings).post(path, data=b"x" * 50_000, content_type="application/json")
    _assert_json_error(response, 413, "4096 bytes")
