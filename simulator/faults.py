"""Faults on demand: the share of API calls answered with 429, a 5xx, or slowly.

Only transport faults are random here; malformed records are part of the data (see
`simulator.fleet`) so that a faulty run and a clean run must land exactly the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from threading import Lock
from typing import Literal

FaultKind = Literal["rate_limited", "server_error", "slow"]


@dataclass
class FaultPolicy:
    rate: float = 0.0
    retry_after_s: int = 1
    slow_s: float = 1.5
    seed: int = 0
    kinds: tuple[FaultKind, ...] = ("rate_limited", "server_error", "slow")
    path_contains: str = ""  # only requests whose path contains this (tests: one device's feed)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = Lock()

    def draw(self, path: str = "") -> FaultKind | None:
        """Decide the fate of one request; thread-safe so concurrent clients see the configured share."""
        if self.rate <= 0 or self.path_contains not in path:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)
