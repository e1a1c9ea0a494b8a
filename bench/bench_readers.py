"""Reader latency before, while and after a full refresh on DuckDB (readers on the published snapshot).

Lands the bench_refresh fleet (default 1,000 devices x 90 days at 15 min, raw rows straight into the
connector's file), runs a first full refresh so there is something to read, then asks chat questions
and dashboard requests (in this process, through `open_warehouse(read_only=True)` as the services
do) before, while a second full rebuild runs in a child process, and after it. Prints median, p95 and
max per phase and reader, how many reads failed (a 503 from the lock would count here), and what
publishing the snapshot cost (file size, seconds, MB/s; measured inside the refresh child).

    nice -n 10 .venv/bin/python bench/bench_readers.py [--devices 1000] [--days 90] [--pause 0.2]
        [--readers-take-the-lock]   # the old way, for comparison: reads wait for the refresh
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

QUESTIONS = [
    "What was our total consumption last week?",
    "Which meter used the most last week?",
    "Tell me about dev-00004",
    "Which meters are silent?",
    "Load profile of Meter 7 last week",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _refresh_child(home: Path) -> None:
    """A full rebuild, timing every snapshot publication it makes; prints one JSON line."""
    import shared.warehouse as warehouse
    from shared.refresh import refresh_features, warm_up
    from shared.settings import Settings

    settings = Settings(home=home)
    publishes: list[float] = []
    publish = warehouse.publish_snapshot

    def timed(s: Settings) -> bool:
        started = time.perf_counter()
        done = publish(s)
        if done:
            publishes.append(time.perf_counter() - started)
        return done

    warehouse.publish_snapshot = timed  # type: ignore[assignment]
    warm_up(settings)
    started = time.perf_counter()
    result = refresh_features(settings, full=True)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "publish_s": publishes,
                "bytes": settings.duckdb_path.stat().st_size,
                "rows": sum(result.rows_changed.values()),
            }
        )
    )


def _readers(home: Path, *, take_lock: bool) -> dict[str, Callable[[], object]]:
    from services.chat.answer import answer_question, build_deps
    from services.chat.api import ChatRequest
    from services.chat.dashboard.data import device_detail, fleet_overview
    from shared.settings import Settings
    from shared.warehouse import open_warehouse

    settings = Settings(home=home)
    deps = build_deps(settings)
    read_only = not take_lock
    if take_lock:  # how the readers worked before snapshots: the writer's file, under its lock

        def locked(s: Settings, **kwargs: object) -> object:
            return open_warehouse(s, ensure_schema=bool(kwargs.get("ensure_schema", True)))

        deps.open_wh = locked
    turn = {"i": 0}

    def chat() -> object:
        turn["i"] += 1
        question = QUESTIONS[turn["i"] % len(QUESTIONS)]
        return answer_question(ChatRequest(question=question), "bench", deps)

    def fleet() -> object:  # GET /api/dashboard/fleet
        with open_warehouse(settings, read_only=read_only) as wh:
            return fleet_overview(wh)

    def device() -> object:  # GET /api/dashboard/device/<id>?hours=168
        with open_warehouse(settings, read_only=read_only) as wh:
            return device_detail(wh, f"dev-{turn['i'] % 10:05d}", hours=7 * 24)

    return {"chat": chat, "dash-fleet": fleet, "dash-device": device}


def _measure(
    readers: dict[str, Callable[[], object]], until: Callable[[], bool], pause: float
) -> tuple[dict[str, list[float]], int]:
    times: dict[str, list[float]] = {name: [] for name in readers}
    failures = 0
    while True:
        for name, read in readers.items():
            started = time.perf_counter()
            try:
                read()
            except Exception as exc:  # a lock timeout would land here: count it, keep measuring
                failures += 1
                print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            times[name].append(time.perf_counter() - started)
        if until():
            return times, failures
        time.sleep(pause)


def _print(phase: str, times: dict[str, list[float]], failures: int) -> None:
    for name, values in times.items():
        if not values:
            print(f"{phase:<7} {name:<11} no successful reads")
            continue
        print(
            f"{phase:<7} {name:<11} n={len(values):4d}  median {statistics.median(values) * 1000:7.0f} ms"
            f"  p95 {_percentile(values, 0.95) * 1000:7.0f} ms  max {max(values) * 1000:7.0f} ms"
        )
    print(f"{phase:<7} failed reads: {failures}")


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--samples", type=int, default=20, help="reads per reader before and after")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between rounds of reads")
    parser.add_argument(
        "--readers-take-the-lock",
        action="store_true",
        help="readers open the writer's file under the lock, as before snapshots (for comparison)",
    )
    parser.add_argument("--phase", choices=["refresh"])
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if args.phase == "refresh":
        _refresh_child(args.home)
        return

    bench_refresh = str(REPO / "bench" / "bench_refresh.py")
    size = ["--devices", str(args.devices), "--days", str(args.days)]
    readings = args.devices * args.days * 96
    print(f"fleet: {args.devices} devices x {args.days} days at 15 min = {readings:,} readings")
    with tempfile.TemporaryDirectory(prefix="gridsight-bench-readers-") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        _run([sys.executable, bench_refresh, "--phase", "generate", "--home", str(home), *size])
        print(f"raw readings landed in {time.perf_counter() - started:.0f} s")
        first = json.loads(_run([sys.executable, __file__, "--phase", "refresh", "--home", str(home)]))
        print(
            f"first full refresh: {first['seconds']:.0f} s, warehouse file {first['bytes'] / 2**20:.0f} MiB"
        )

        readers = _readers(home, take_lock=args.readers_take_the_lock)
        mode = "under the writer lock" if args.readers_take_the_lock else "on the published snapshot"
        print(f"readers: {mode}")
        for read in readers.values():  # first question builds the chat index: not a steady-state read
            read()
        count = {"n": 0}

        def enough() -> bool:
            count["n"] += 1
            return count["n"] >= args.samples

        _print("before", *_measure(readers, enough, args.pause))

        child = subprocess.Popen(
            [sys.executable, __file__, "--phase", "refresh", "--home", str(home)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while_times = _measure(readers, lambda: child.poll() is not None, args.pause)
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"the refresh child failed with exit code {child.returncode}")
        second = json.loads(out.strip().splitlines()[-1])
        _print("while", *while_times)
        count["n"] = 0
        _print("after", *_measure(readers, enough, args.pause))

        print(f"full refresh while reading: {second['seconds']:.0f} s")
        for label, run in (("first", first), ("second", second)):
            for seconds in run["publish_s"]:
                mib = run["bytes"] / 2**20
                print(
                    f"snapshot publish ({label} refresh): {seconds:.2f} s for {mib:.0f} MiB"
                    f" ({mib / seconds:.0f} MiB/s)"
                )
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
