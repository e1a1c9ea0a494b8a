"""Property-based: hostile vendor feeds (vendor_strategies.py) through the connector's real
validation and cursor code; the invariants are in hostile_invariants.py. CI runs 60 cases (about ten
seconds; GRIDSIGHT_FUZZ_EXAMPLES sets more); `bench/bench_fuzz.py` runs the same for minutes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from fakes import Recorder
from hostile_invariants import run_case
from hypothesis import HealthCheck, given, settings
from vendor_strategies import feeds

from infra.local.sync import CONNECTOR_SOURCE


@pytest.fixture(scope="module")
def connector() -> Iterator[ModuleType]:
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector as module

        module.log.LOG_LEVEL = module.log.Level.SEVERE  # outside the runner it is unset
        yield module
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)


EXAMPLES = int(os.environ.get("GRIDSIGHT_FUZZ_EXAMPLES", "60"))
SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(feed=feeds)
def test_no_vendor_feed_fails_the_sync_drops_a_record_or_moves_a_cursor_past_the_clock(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, feed: dict
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(connector, "op", recorder)
    run_case(connector, recorder, feed)
