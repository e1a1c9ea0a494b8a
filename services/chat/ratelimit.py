"""Per-key rate limit: a sliding one-minute window per API-key fingerprint, in process memory.

Cloud Run runs several instances, so the limit holds per instance; it stops a runaway client, it is
not billing. The clock is injected so tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from shared.errors import GridsightError

__all__ = ["RateLimited", "RateLimiter"]


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
