"""#18: failed authentication is throttled on chat and dashboard (a guesser gets 429s, not unlimited
401s), and the chat body is bounded (413 JSON). Through the real chat app."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import flask
import pytest

from services.chat import main
from services.chat.ratelimit import AuthThrottle, RateLimited
from shared.settings import Settings

GOOD = {"Authorization": "Bearer local-dev-chat-key"}
Call = Callable[..., flask.Response]


@pytest.fixture
def call(chat_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Call]:
    monkeypatch.setenv("GRIDSIGHT_HOME", str(chat_settings.home))
    monkeypatch.setenv("GRIDSIGHT_CHAT_AUTH_FAILURES_PER_MINUTE", "3")
    main._runtime.cache_clear()
    web = flask.Flask("chat-throttle-test")

    def request(path: str, *, method: str = "POST", data: bytes | None = None, headers: dict | None = None,
                peer: str = "10.0.0.7") -> flask.Response:  # fmt: skip
        with web.test_request_context(
            path, method=method, data=data, headers=headers or {}, environ_base={"REMOTE_ADDR": peer}
        ):
            return main.app(flask.request)

    yield request
    main._runtime.cache_clear()


def test_a_peer_guessing_keys_gets_429_after_the_limit_even_with_the_right_key(call: Call) -> None:
    question = json.dumps({"question": "hi"}).encode()
    statuses = [
        call("/v1/chat", data=question, headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(3)
    ]
    assert statuses == [401, 401, 401]
    blocked = call("/v1/chat", data=question, headers=GOOD)
    assert blocked.status_code == 429
    assert blocked.mimetype == "application/json"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    # the dashboard shares the throttle: the same peer is blocked there too
    dash = call("/api/dashboard/fleet", method="GET", headers=GOOD)
    assert dash.status_code == 429
    assert "Retry-After" in dash.headers
    # another peer is not
    other = call("/api/dashboard/fleet", method="GET", headers={"X-API-Key": "nope"}, peer="10.0.0.8")
    assert other.status_code == 401


def test_dashboard_failures_count_too(call: Call) -> None:
    for _ in range(3):
        assert call("/api/dashboard/fleet", method="GET", headers={"X-API-Key": "x"}).status_code == 401
    assert call("/api/dashboard/fleet", method="GET", headers={"X-API-Key": "x"}).status_code == 429


def test_throttle_window_slides_after_a_minute() -> None:
    now = [1000.0]
    throttle = AuthThrottle(2, clock=lambda: now[0])
    throttle.failed("p")
    now[0] += 30
    throttle.failed("p")
    with pytest.raises(RateLimited) as blocked:
        throttle.check("p")
    assert blocked.value.retry_after_s == 30  # the first failure leaves the window at t=1060
    now[0] += 30.5
    throttle.check("p")  # one failure left in the window: allowed again


def test_throttle_tracks_a_bounded_number_of_peers() -> None:
    throttle = AuthThrottle(1, clock=lambda: 0.0, max_peers=100)
    for i in range(10_000):
        throttle.failed(f"peer-{i}")
    assert len(throttle._failures) == 100
    with pytest.raises(RateLimited):
        throttle.check("peer-9999")  # the most recent are the ones kept


def test_chat_body_over_the_limit_is_413_json(call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().chat_max_body_bytes == 64 * 1024
    monkeypatch.setenv("GRIDSIGHT_CHAT_MAX_BODY_BYTES", "2048")
    main._runtime.cache_clear()
    body = json.dumps({"question": "x" * 5000}).encode()
    response = call("/v1/chat", data=body, headers=GOOD)
    assert response.status_code == 413
    assert "2048 bytes" in response.get_json()["error"]


def test_deeply_nested_chat_body_is_json_400(call: Call) -> None:
    response = call("/v1/chat", data=b"[" * 60_000, headers=GOOD)
    assert response.status_code == 400
    assert response.mimetype == "application/json"


def test_a_large_body_on_any_chat_route_is_413_before_routing(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIGHT_CHAT_MAX_BODY_BYTES", "2048")
    main._runtime.cache_clear()
    for path in ("/dashboard", "/api/dashboard/fleet", "/nowhere"):
        response = call(path, data=b"x" * 10_000, headers=GOOD)
        assert response.status_code == 413, path
        assert "2048 bytes" in response.get_json()["error"]
