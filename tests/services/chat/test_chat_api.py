"""The HTTP edge: auth, validation, rate limit, JSON errors, routes; through the real app function."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import flask
import pytest

from services.chat import main
from services.chat.answer import ChatDeps
from services.chat.conversations import ConversationStore
from services.chat.ratelimit import RateLimiter
from shared.settings import Settings

KEY = {"Authorization": "Bearer local-dev-chat-key"}


@pytest.fixture
def call(chat_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """POST/GET through `main.app` with settings pointed at the demo fleet."""
    monkeypatch.setenv("GRIDSIGHT_HOME", str(chat_settings.home))
    main._runtime.cache_clear()
    web = flask.Flask("chat-test")

    def request(path: str, *, method: str = "POST", body: object = None, headers: dict | None = None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body) if body is not None else None
        with web.test_request_context(path, method=method, data=data, headers=headers or {}):
            return main.app(flask.request)

    yield request
    main._runtime.cache_clear()


def test_health_needs_no_key(call) -> None:
    response = call("/healthz", method="GET")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_a_question_without_a_key_is_401_with_a_json_message(call) -> None:
    response = call("/v1/chat", body={"question": "How much energy did the fleet use yesterday?"})
    assert response.status_code == 401
    assert "API key" in response.get_json()["error"]


def test_a_wrong_key_is_401(call) -> None:
    response = call("/v1/chat", body={"question": "hi"}, headers={"X-API-Key": "nope"})
    assert response.status_code == 401


def test_a_malformed_body_is_400_naming_the_field(call) -> None:
    assert call("/v1/chat", body=b"{not json", headers=KEY).status_code == 400
    response = call("/v1/chat", body={"question": ""}, headers=KEY)
    assert response.status_code == 400
    assert "question" in response.get_json()["error"]
    bad_id = call("/v1/chat", body={"question": "hi", "conversation_id": "../../etc"}, headers=KEY)
    assert bad_id.status_code == 400


def test_get_on_the_chat_route_is_405(call) -> None:
    assert call("/v1/chat", method="GET", headers=KEY).status_code == 405


def test_unknown_route_is_a_json_404(call) -> None:
    response = call("/v1/nothing", method="GET", headers=KEY)
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_an_answer_carries_its_citations_and_a_conversation(call) -> None:
    response = call("/v1/chat", body={"question": "Which meter used the most last week?"}, headers=KEY)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= {"answer", "values", "citations", "intent", "refused", "conversation_id"}
    assert body["intent"] == "top_k"
    sql = body["citations"][0]
    assert sql["kind"] == "sql"
    assert "@start" in sql["sql"]
    assert sql["rows"]
    follow = call(
        "/v1/chat",
        body={"question": "and the week before?", "conversation_id": body["conversation_id"]},
        headers=KEY,
    )
    assert follow.get_json()["intent"] == "top_k"
    assert follow.get_json()["citations"][0]["params"]["start"] < sql["params"]["start"]


def test_a_conversation_belongs_to_the_key_that_opened_it(
    call, chat_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIGHT_CHAT_API_KEYS", "local-dev-chat-key,second-key")
    main._runtime.cache_clear()
    first = call("/v1/chat", body={"question": "How much did the kitchen use yesterday?"}, headers=KEY)
    other = call(
        "/v1/chat",
        body={"question": "and the day before?", "conversation_id": first.get_json()["conversation_id"]},
        headers={"X-API-Key": "second-key"},
    )
    assert other.status_code == 404


def test_the_dashboard_is_still_served_by_the_chat_app(call) -> None:
    assert call("/dashboard", method="GET").status_code == 200


def test_rate_limit_answers_429_with_retry_after(chat_settings: Settings, tmp_path: Path) -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    deps = ChatDeps(settings=chat_settings, store=ConversationStore(tmp_path))
    web = flask.Flask("rate")

    def post() -> flask.Response:
        with web.test_request_context(
            "/v1/chat", method="POST", data='{"question": "tell me a joke"}', headers=KEY
        ):
            return main.handle_chat(flask.request, deps, limiter)

    assert [post().status_code, post().status_code] == [200, 200]
    limited = post()
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) == 60
    now[0] += 61
    assert post().status_code == 200
