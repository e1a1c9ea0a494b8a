"""Fuzz the connector's validation and cursors with hostile vendor feeds for a few minutes.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_fuzz.py [--minutes 3] [--pipeline-every 50]

The property of tests/connector/test_connector_properties.py (strategies in
tests/connector/vendor_strategies.py, invariants in tests/connector/hostile_invariants.py), run in
rounds of 200 fresh random cases until the time is up; every `--pipeline-every`-th round also runs
the end-to-end property of tests/services/hostile/test_pipeline_properties.py (land, refresh,
anomaly push, memory bound) for 3 cases. Prints cases tried, records served and how they split,
and exits 1 with the falsifying example if any invariant breaks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "connector"), str(REPO / "fivetran_connector")]

import connector  # noqa: E402
from fakes import Recorder  # noqa: E402
from hostile_invariants import run_case  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from rich.console import Console  # noqa: E402
from vendor_strategies import feeds  # noqa: E402

connector.log.LOG_LEVEL = connector.log.Level.SEVERE
totals: Counter[str] = Counter()


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(feed=feeds)
def _round(feed: dict) -> None:
    recorder = Recorder()
    connector.op = recorder  # type: ignore[assignment]
    totals.update(run_case(connector, recorder, feed))
    totals["cases"] += 1


def _pipeline_round() -> int:
    import pytest

    args = ["-q", "-p", "no:cacheprovider", str(REPO / "tests/services/hostile/test_pipeline_properties.py")]
    modules = {name: sys.modules[name] for name in ("connector", "client")}
    try:
        return int(pytest.main(args))
    finally:
        sys.modules.update(modules)  # the test's fixture unloads the connector it imported


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--pipeline-every", type=int, default=50, help="0: never")
    args = parser.parse_args()
    console = Console()
    deadline = time.monotonic() + 60 * args.minutes
    started = time.perf_counter()
    rounds = pipeline_runs = 0
    while time.monotonic() < deadline:
        _round()  # raises (and prints the falsifying feed) when an invariant breaks
        rounds += 1
        if args.pipeline_every and rounds % args.pipeline_every == 1:
            if _pipeline_round() != 0:
                raise SystemExit("pipeline property failed (see pytest output above)")
            pipeline_runs += 1
    elapsed = time.perf_counter() - started
    cases = totals["cases"]
    console.print(
        f"{cases:,} connector cases in {elapsed:.0f} s ({cases / elapsed:.0f}/s), each synced twice"
    )
    console.print(f"{pipeline_runs} pipeline rounds of 3 cases (land, refresh, anomaly push)")
    console.print(
        f"records served {totals['served']:,}: reading {totals['reading']:,}, invalid_reading"
        f" {totals['invalid_reading']:,}, conflicting duplicates {totals['reading_conflict']:,}"
    )
    console.print(
        "invariants held in every case: sync completed; each served record in exactly one of reading /"
        " invalid_reading; every reading inside its meter type's bounds and not after the clock; no cursor"
        " past the clock; conflicts pair different values"
    )


if __name__ == "__main__":
    main()
