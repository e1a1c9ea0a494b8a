"""Real push endpoints on loopback and a dispatcher running in a thread, for the runtime tests.

(A module of its own, not conftest.py: test modules import from it, and `conftest` is ambiguous
when several test folders are collected together.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import flask
from werkzeug.serving import BaseWSGIServer, make_server

from infra.local.dispatcher import Dispatcher
from shared.bus.local import QueueStore
from shared.settings import Settings

Responder = Callable[[dict[str, Any]], int]


@dataclass
class Endpoint:
    """One service's push endpoint: records every body, answers with `respond(body)`."""

    name: str
    respond: Responder = lambda body: 204
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def attempts(self) -> list[int]:
        return [b["deliveryAttempt"] for b in self.bodies]


@contextmanager
def serving(*endpoints: Endpoint) -> Iterator[dict[str, str]]:
    threads = []
    for endpoint in endpoints:
        app = flask.Flask(endpoint.name)

        @app.post("/<path:_path>")
        def push(_path: str, endpoint: Endpoint = endpoint) -> flask.Response:
            body = flask.request.get_json()
            endpoint.bodies.append(body)
            endpoint.authorizations.append(flask.request.headers.get("Authorization"))
            return flask.Response(status=endpoint.respond(body))

        endpoint.server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
        thread.start()
        threads.append(thread)
    try:
        yield {e.name: e.url for e in endpoints}
    finally:
        for endpoint in endpoints:
            assert endpoint.server is not None
            endpoint.server.shutdown()
        for thread in threads:
            thread.join(timeout=5)


@contextmanager
def dispatching(settings: Settings, endpoints: dict[str, str]) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(settings, endpoints=endpoints)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        thread.join(timeout=30)
        dispatcher.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll a condition with a deadline (synchronising on state, not on elapsed time)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def settled(settings: Settings) -> Callable[[], bool]:
    def check() -> bool:
        store = QueueStore.open(settings)
        try:
            return store.unsettled() == 0
        finally:
            store.close()

    return check
