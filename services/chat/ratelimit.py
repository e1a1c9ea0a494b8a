"""Per-key rate limit and failed-authentication throttle, sliding one-minute windows in process memory.

`RateLimiter` counts calls per API-key fingerprint. `AuthThrottle` counts failed authentications
per peer (the connection's remote address) and, once a peer has failed `per_minute` times in the
last 60 s, answers 429 before even looking at the key it sends, so guessing keys costs a minute per
few tries. Chat and dashboard share one throttle per process and home (`authenticate_throttled`).
Cloud Run runs several instances, so limits hold per instance; they stop a runaway client or a
guesser, they are not billing. The clock is injected so tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from functools import cache
from typing import cast

import flask

from shared.api_keys import authenticate
from shared.errors import GridsightError, SignatureError
from shared.settings import Settings

__all__ = ["AuthThrottle", "RateLimited", "RateLimiter", "auth_throttle", "authenticate_throttled"]


class RateLimited(GridsightError):
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one call for `key`; RateLimited (429) when it has made `per_minute` in the last 60 s."""
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            if len(calls) >= self._limit:
                raise RateLimited(max(1, int(calls[0] + 60 - now + 0.999)))
            calls.append(now)


class AuthThrottle:
    """Failed authentications per peer in the last 60 s; at `per_minute` the peer gets 429s until the
    oldest failure is a minute old. At most `max_peers` are tracked (least recently failed dropped),
    so a flood from many addresses cannot grow memory without bound."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_peers: int = 10_000
    ) -> None:
        self._limit = per_minute
        self._clock = clock
        self._max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, peer: str, now: float) -> deque[float] | None:
        failures = self._failures.get(peer)
        if failures is None:
            return None
        while failures and failures[0] <= now - 60:
            failures.popleft()
        if not failures:
            del self._failures[peer]
            return None
        return failures

    def check(self, peer: str) -> None:
        """RateLimited (429) when `peer` has failed `per_minute` times in the last 60 s."""
        now = self._clock()
        with self._lock:
            failures = self._recent(peer, now)
            if failures is not None and len(failures) >= self._limit:
                raise RateLimited(max(1, int(failures[0] + 60 - now + 0.999)))

    def failed(self, peer: str) -> None:
        now = self._clock()
        with self._lock:
            failures = self._recent(peer, now)
            if failures is None:
                failures = self._failures[peer] = deque()
            failures.append(now)
            self._failures.move_to_end(peer)
            while len(self._failures) > self._max_peers:
                self._failures.popitem(last=False)


@cache
def auth_throttle(home: str, per_minute: int) -> AuthThrottle:
    """One throttle per process and home: chat and dashboard count a peer's failures together."""
    return AuthThrottle(per_minute)


def authenticate_throttled(
    request: flask.Request, settings: Settings, throttle: AuthThrottle | None = None
) -> str:
    """`shared.api_keys.authenticate` behind the failed-authentication throttle: 429 for a peer that
    failed too often (its key is not even compared), a failure counted on every 401."""
    throttle = throttle or auth_throttle(str(settings.home), settings.chat_auth_failures_per_minute)
    peer = request.remote_addr or "unknown"
    throttle.check(peer)
    try:
        return authenticate(cast(Mapping[str, str], request.headers), settings)
    except SignatureError:
        throttle.failed(peer)
        raise
