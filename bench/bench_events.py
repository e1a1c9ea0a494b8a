"""Event runtime benchmark on loopback: end-to-end latency and dispatcher throughput.

1. Latency: a fleet of `--devices` meters with `--history-days` of readings is landed (connector-
   shaped DuckDB, shared.warehouse.rawfixture) and fully refreshed once; then, `--runs` times, one
   new day is landed and the signed sync_end webhook is sent to the real ingest process. Measured:
   webhook sent → features-refreshed handled (handle_push, pipeline_runs recorded) by BOTH
   subscribers, with the stages in between (webhook answered, refresh, fan-out). Median of runs.
2. Throughput: `--messages` features-refreshed messages queued, then the dispatcher process
   started against two endpoints that return 204 at once (2 deliveries per message). Measured:
   deliveries per second from the first request to the last ack, median of `--runs`; also
   publishes per second into the durable queue, and the dispatcher's peak RSS (VmHWM).

    .venv/bin/python bench/bench_events.py [--devices 1000] [--history-days 8] [--runs 3] [--messages 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import flask  # noqa: E402
from _proc import cpu_s, status_mb  # noqa: E402  (bench/, the script's own folder)
from filelock import FileLock  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from infra.local.dispatcher import HEARTBEAT_KEY  # noqa: E402
from infra.local.ports import free_port  # noqa: E402
from infra.local.supervisor import ProcessSpec, Supervisor  # noqa: E402
from infra.local.webhook_client import send_sync_end  # noqa: E402
from shared.bus import open_publisher  # noqa: E402
from shared.bus.local import QueueStore  # noqa: E402
from shared.events import FeaturesRefreshed  # noqa: E402
from shared.push import PushContext, handle_push  # noqa: E402
from shared.refresh import RefreshResult, refresh_features  # noqa: E402
from shared.runs import find_run  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.warehouse import open_warehouse  # noqa: E402
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 100
console = Console()


def _settings(home: Path, **extra: Any) -> Settings:
    return Settings(
        home=home,
        ingest_port=free_port(),
        forecast_port=free_port(),
        anomaly_port=free_port(),
        dispatcher_poll_s=0.005,
        **extra,
    )


@contextmanager
def _serve(port: int, view: Callable[[], flask.Response]) -> Iterator[None]:
    app = flask.Flask(f"bench-{port}")
    app.add_url_rule("/<path:_p>", "push", lambda _p: view(), methods=["POST"])
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def _land(
    settings: Settings, ids: list[str], start: datetime, end: datetime, seed: int, *, first: bool
) -> None:
    """Readings for [start, end) as one sync lands them; the first sync also lands sites and devices."""
    with FileLock(str(settings.lock_path)), RawStore(settings.raw_duckdb_path, primary_keys=False) as raw:
        registers = None if first else raw.last_registers()
        if first:
            sites, fleet = make_fleet(len(ids))
            raw.upsert("site", sites, end)
            raw.upsert("device", fleet, end)
        for i in range(0, len(ids), CHUNK):
            rows = make_readings(ids[i : i + CHUNK], start, end, start_registers=registers, seed=seed + i)
            raw.upsert("reading", rows, end + timedelta(minutes=5))


# --- 1. latency ------------------------------------------------------------------------------------
def bench_latency(devices: int, history_days: int, runs: int) -> list[dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="bench-events-"))
    settings = _settings(home)
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    _, fleet = make_fleet(devices)
    ids = fleet["device_id"].to_pylist()
    history_end = START + timedelta(days=history_days)
    with console.status(f"landing {devices} devices × {history_days} days and refreshing in full"):
        _land(settings, ids, START, history_end, seed=0, first=True)
        started = time.perf_counter()
        refresh_features(settings, full=True)
        console.print(f"initial full refresh: {time.perf_counter() - started:.1f} s")

    handled: dict[str, dict[str, float]] = {}

    def subscriber(name: str) -> Callable[[], flask.Response]:
        def work(event: FeaturesRefreshed, ctx: PushContext) -> None:
            handled.setdefault(event.refresh_id, {})[name] = time.perf_counter()

        return lambda: handle_push(
            flask.request, expected=FeaturesRefreshed, handler=name, work=work, settings=settings
        )

    ingest_argv = [str(Path(sys.executable).with_name("functions-framework")), "--source",
                   str(REPO / "services/ingest/main.py"), "--target", "app", "--host", "127.0.0.1",
                   "--port", str(settings.ingest_port)]  # fmt: skip
    specs = [
        ProcessSpec(name="ingest", argv=ingest_argv, port=settings.ingest_port),
        ProcessSpec(name="dispatcher", argv=[sys.executable, "-m", "infra.local.dispatcher"]),
    ]
    results = []
    with (
        _serve(settings.forecast_port, subscriber("forecast")),
        _serve(settings.anomaly_port, subscriber("anomaly")),
        Supervisor(settings, specs) as stack,
        Progress(console=console) as bar,
    ):
        stack.wait_healthy()
        task = bar.add_task(f"latency runs ({devices} devices × 1 new day)", total=runs)
        for run in range(runs):
            day = history_end + timedelta(days=run)
            _land(settings, ids, day, day + timedelta(days=1), seed=1000 * (run + 1), first=False)
            sync_id = f"bench-{run}"
            t0 = time.perf_counter()
            send_sync_end(settings, sync_id=sync_id)
            t_webhook = time.perf_counter()
            refresh = _wait_for_refresh(settings, sync_id)
            _wait(lambda r=refresh: len(handled.get(r.refresh_id, {})) == 2, 300, "both subscribers")
            done = handled[refresh.refresh_id]
            results.append(
                {
                    "end_to_end_s": max(done.values()) - t0,
                    "webhook_answered_s": t_webhook - t0,
                    "refresh_s": sum(refresh.durations_s.values()),
                    "forecast_handled_s": done["forecast"] - t0,
                    "anomaly_handled_s": done["anomaly"] - t0,
                    "rows_changed": float(sum(refresh.rows_changed.values())),
                }
            )
            bar.advance(task)
    return results


def _wait_for_refresh(settings: Settings, sync_id: str) -> RefreshResult:
    key = f"{settings.fivetran_connection_id}/{sync_id}"
    found: list[RefreshResult] = []

    def recorded() -> bool:
        with open_warehouse(settings) as wh:
            run = find_run(wh, "ingest.refresh", key)
        if run is not None and run.detail:
            found.append(RefreshResult.model_validate_json(run.detail))
        return bool(found)

    _wait(recorded, 600, "the refresh")
    return found[0]


# --- 2. throughput ---------------------------------------------------------------------------------
def bench_throughput(messages: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    settings = _settings(home)
    publisher = open_publisher(settings)
    event = FeaturesRefreshed(refresh_id="x", window_start=START, window_end=START, device_ids=["d"])
    started = time.perf_counter()
    for _ in range(messages):
        publisher.publish(event)
    publish_rate = messages / (time.perf_counter() - started)
    publisher.close()

    fw = str(Path(sys.executable).with_name("functions-framework"))
    ack = [
        fw,
        "--source",
        str(REPO / "bench" / "_ack_app.py"),
        "--target",
        "app",
        "--host",
        "127.0.0.1",
        "--port",
    ]
    specs = [
        ProcessSpec(name="forecast", argv=[*ack, str(settings.forecast_port)], port=settings.forecast_port),
        ProcessSpec(name="anomaly", argv=[*ack, str(settings.anomaly_port)], port=settings.anomaly_port),
        ProcessSpec(name="dispatcher", argv=[sys.executable, "-m", "infra.local.dispatcher"]),
    ]
    store = QueueStore.open(settings)
    beats: list[float] = []

    def first_beat() -> bool:
        beat = store.get_meta(HEARTBEAT_KEY)
        if beat is not None:
            beats.append(float(beat))
        return bool(beats)

    with Supervisor(settings, specs) as stack:
        _wait(first_beat, 60, "the dispatcher to start")  # its first heartbeat is written as it starts
        _wait(lambda: store.unsettled() == 0, 600, "all deliveries acked")
        proc = stack.children["dispatcher"].proc
        assert proc is not None
        peak_mib = status_mb("VmHWM", proc.pid)
        cpu = cpu_s(proc.pid)  # the cost per delivery, whatever else loads the machine
    last_ack = store._conn.execute("SELECT MAX(updated_at) FROM deliveries WHERE state = 'acked'").fetchone()[
        0
    ]
    acked = store._conn.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'acked'").fetchone()[0]
    store.close()
    if acked != 2 * messages:
        raise SystemExit(f"only {acked} of {2 * messages} deliveries acked")
    return {
        "publish_per_s": publish_rate,
        "deliveries_per_s": acked / (last_ack - beats[0]),
        "dispatcher_peak_mib": peak_mib,
        "dispatcher_cpu_ms_per_delivery": 1000 * cpu / acked,
    }


def _plot(latencies: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["webhook verified + sync-completed published", "refresh (models MERGEd)",
              "queueing, run records, fan-out, both handlers"]  # fmt: skip
    colours = ["#4c72b0", "#dd8452", "#55a868"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, run in enumerate(latencies):
        parts = [run["webhook_answered_s"], run["refresh_s"]]
        parts.append(max(run["end_to_end_s"] - sum(parts), 0.0))
        left = 0.0
        for j, width in enumerate(parts):
            ax.barh(f"run {i + 1}", width, left=left, color=colours[j], label=labels[j] if i == 0 else None)
            left += width
    ax.set_xlabel("seconds since the webhook was sent")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=1, fontsize=8, frameon=False)
    ax.set_title("gridsight: sync_end webhook → features-refreshed handled (1 new day)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would drown the figures
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--history-days", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()

    latencies = bench_latency(args.devices, args.history_days, args.runs)
    table = Table(title=f"end-to-end latency, {args.devices} devices × 1 new day (median of {args.runs})")
    table.add_column("stage (seconds after the webhook was sent)")
    table.add_column("median", justify="right")
    table.add_column("runs", justify="right")
    for key in ("webhook_answered_s", "refresh_s", "forecast_handled_s", "anomaly_handled_s", "end_to_end_s"):
        values = [r[key] for r in latencies]
        table.add_row(key, f"{statistics.median(values):.2f}", " ".join(f"{v:.2f}" for v in values))
    console.print(table)
    console.print(
        f"rows changed per refresh (median): {statistics.median(r['rows_changed'] for r in latencies):,.0f}"
    )
    png = REPO / "artifacts" / "bench_events.png"
    _plot(latencies, png)
    console.print(f"chart: {png}")

    throughput = [bench_throughput(args.messages) for _ in range(args.runs)]
    table = Table(title=f"dispatcher throughput, {args.messages} messages × 2 subscriptions, 204 on loopback")
    table.add_column("figure")
    table.add_column("median", justify="right")
    table.add_column("runs", justify="right")
    for key in ("deliveries_per_s", "publish_per_s", "dispatcher_peak_mib", "dispatcher_cpu_ms_per_delivery"):
        values = [t[key] for t in throughput]
        table.add_row(key, f"{statistics.median(values):,.1f}", " ".join(f"{v:,.1f}" for v in values))
    console.print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    console.print(table)


if __name__ == "__main__":
    main()
