"""Scale benchmark: the REAL pipeline for N meters with H days of history, K consecutive 15-min syncs.

Pipeline per cycle (every piece is the production code path, run as the local stack runs it):
  simulator clock +15 min → `fivetran debug` of our connector against the simulator
  (infra.local.sync.run_sync) → the signed sync_end webhook to the ingest process → dispatcher →
  ingest refresh (sync-completed) → features-refreshed to the forecast process (with the model
  server process) and the anomaly process → their pipeline_runs rows, and every delivery settled
  (alerts included).

Backfill (stated in the output): the H days before the first cycle are landed straight into the
connector's raw DuckDB from the simulator's own series (the records the vendor serves, the same
values, minus the malformed ones the connector would quarantine), with the connector's state
(per-device cursors) written as a history sync would leave it; then one full refresh and one model
training, in this process, outside the measured cycles, and the backfill's first anomaly scoring
(its last 3 days, incidents written, not announced: onboarding a fleet's history is not a cycle;
`--alert-backfill` leaves it, and its alert flood, to the first cycle). The simulated fleet starts
H+2 days before today (so no reading is ever in the future of the connector's wall clock), has no
decommissioned devices, and keeps the simulator's late uploaders, feed lag and injected anomalies.
The simulator runs in this process (its CPU is this process's, reported as `simulator`), with its
register totals primed by the backfill, as serving those days would have left them (a vendor's
cost: without them the first sync waited while it summed every device's whole history again).

Per cycle and stage (sync, refresh, forecast, anomaly, end to end): wall seconds (from the runs'
own started_at/finished_at; end to end = sync start → the later of the forecast and anomaly runs
finished; `settled` = until every delivery the cycle caused, alerts included, is acked), rows,
CPU seconds per process tree (/proc/<pid>/stat deltas; the runner's from RUSAGE_CHILDREN) and peak
RSS per process (VmHWM; the runner's sampled).

    python bench/bench_scale.py --devices 1000 --history-days 30 --cycles 3 [--json]
    python bench/bench_scale.py --history-growth --devices 1000 [--growth-days 180] --json
    python bench/bench_scale.py --search [--sizes 1000,10000,30000,100000] --json

Search and history-growth run each configuration in a child process (its own memory), stop at the
first N whose median cycle exceeds 15 minutes (or that fails / runs out of time), and plot stage
time against N (artifacts/bench_scale_h<H>.png). Every finished run is appended to
artifacts/bench_scale_runs.jsonl, which the plot reads.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _proc import cpu_s, status_mb  # noqa: E402  (bench/, the script's own folder)
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from infra.local.ports import free_port  # noqa: E402

CYCLE_MINUTES = 15
BUDGET_S = CYCLE_MINUTES * 60
STAGES = ("sync", "refresh", "forecast", "anomaly", "end_to_end")
ARTIFACTS = REPO / "artifacts"
RUNS_FILE = ARTIFACTS / "bench_scale_runs.jsonl"
API_KEY = "bench-scale-key"
console = Console(stderr=True)


# --- processes: CPU and peak memory ------------------------------------------------------------------
class RunnerWatch:
    """Samples the peak VmHWM of this process's short-lived children (the `fivetran debug` runner
    and what it starts) every 0.2 s; the long-lived stack processes are read directly instead."""

    def __init__(self, exclude: Callable[[], set[int]]) -> None:
        self.exclude = exclude
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):  # sampling interval, not synchronisation
            skip = self.exclude()
            try:  # this process's children that are not stack processes (the runner), and theirs
                runners = [k for k in me.children() if k.pid not in skip]
                kids = [*runners, *(g for r in runners for g in r.children(recursive=True))]
            except psutil.Error:
                continue
            for kid in kids:
                with contextlib.suppress(OSError, ValueError):
                    self.peak_mb = max(self.peak_mb, status_mb("VmHWM", kid.pid))

    def __enter__(self) -> RunnerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the fleet and its backfill ---------------------------------------------------------------------


def _fleet_start(history_days: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=history_days + 2)


def _ts(values: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.asarray(values, dtype="int64") * 1_000_000, pa.timestamp("us", tz="UTC"))


def _entities(fleet: Any, now: int) -> tuple[Any, Any]:
    import pyarrow as pa

    from simulator.fleet import parse_iso

    sites = pa.Table.from_pylist(fleet.site_bodies())
    bodies = fleet.device_bodies(now)
    devices = pa.table(
        {
            "device_id": [b["device_id"] for b in bodies],
            "site_id": [b["site_id"] for b in bodies],
            "name": [b["name"] for b in bodies],
            "meter_type": [b["meter_type"] for b in bodies],
            "nominal_voltage": [float(b["nominal_voltage"]) for b in bodies],
            "interval_minutes": pa.array([b["interval_minutes"] for b in bodies], pa.int32()),
            "installed_at": _ts([parse_iso(b["installed_at"]) for b in bodies]),
            "status": [b["status"] for b in bodies],
            "decommissioned_at": pa.array([None] * len(bodies), pa.timestamp("us", tz="UTC")),
        }
    )
    return sites, devices


def backfill(settings: Any, fleet: Any, now: int, bar: Progress) -> dict[str, Any]:
    """Land what a history sync at `now` would land, vectorised from the simulator's own series
    (Fleet._served_series, the register and received/visible times exactly as `day_records` builds
    them), and write the connector state such a sync leaves (a cursor per device)."""
    import numpy as np
    import pyarrow as pa

    from infra.local.sync import default_configuration, prepare_project
    from shared.warehouse.rawfixture import RawStore
    from simulator.fleet import DAY_S, iso

    started = time.perf_counter()
    spec = fleet.spec
    cursors: dict[str, str] = {}
    landed = 0
    synced = datetime.now(UTC)
    parts: list[pa.Table] = []
    task = bar.add_task(f"backfill: {spec.devices:,} devices × {spec.days:g} days", total=spec.devices)
    with RawStore(settings.raw_duckdb_path, primary_keys=True) as raw:
        sites, devices = _entities(fleet, now)
        raw.upsert("site", sites, synced)
        raw.upsert("device", devices, synced)

        def flush() -> None:
            if parts:
                raw.upsert("reading", pa.concat_tables(parts), synced)
                parts.clear()

        for dev in fleet.devices():
            first = fleet.first_reading(dev)
            register = dev.register0_wh
            cols: dict[str, list[Any]] = {k: [] for k in ("ts", "p", "e", "v", "t", "o", "r")}
            for day in range(first // DAY_S, now // DAY_S + 1):
                s = fleet._served_series(dev, day)
                cumulative = register + np.concatenate(([0.0], np.cumsum(s["delta_wh"])[:-1]))
                register += float(s["delta_wh"].sum())
                # The vendor's register totals, as serving these days would have kept them: without
                # them the first cycle's sync waited while the simulator summed every device's
                # history again (28 CPU-s at 1,000 meters x 180 days), a vendor cost, not a cycle's.
                fleet._note_day_total(dev, day, s["delta_wh"])
                received = fleet._received_at(dev, s["ts"], s["jitter"])
                visible = received + np.where(s["u_lag"] < spec.feed_lag_share, s["lag"], 0)
                ok = s["keep"] & (visible <= now) & ~(s["u_mal"] < spec.malformed_rate)
                cols["ts"].append(s["ts"][ok])
                cols["p"].append(np.round(s["power"][ok], 3))
                cols["e"].append(np.round(cumulative[ok], 3))
                cols["v"].append(np.round(s["voltage"][ok], 2))
                cols["t"].append(np.round(s["temp"][ok], 2))
                cols["o"].append(s["occupancy"][ok])
                cols["r"].append(received[ok])
            flat = {k: np.concatenate(v) if v else np.array([]) for k, v in cols.items()}
            n = len(flat["ts"])
            if n:
                # The connector's cursor: the newest received_at it emitted (not after its clock).
                cursors[dev.device_id] = iso(int(flat["r"].max()))
                parts.append(
                    pa.table(
                        {
                            "device_id": pa.array([dev.device_id] * n, pa.string()),
                            "timestamp": _ts(flat["ts"]),
                            "power_w": flat["p"].astype(float),
                            "energy_wh": flat["e"].astype(float),
                            "voltage": flat["v"].astype(float),
                            "temp_c": flat["t"].astype(float),
                            "occupancy": flat["o"].astype(bool),
                            "received_at": _ts(flat["r"]),
                        }
                    )
                )
                landed += n
            if sum(p.num_rows for p in parts) >= 500_000:
                flush()
            bar.advance(task)
        flush()
    project = settings.connector_dir
    prepare_project(project, default_configuration(settings))
    (project / "files").mkdir(parents=True, exist_ok=True)
    # and the fleet feed's cursor such a sync leaves (connector.sync_fleet_readings): the newest
    # received_at it emitted and the vendor's as_of. Without it the first cycle's sync catches up
    # from the oldest device cursor for the whole fleet (minutes at 10,000 meters), not a cycle.
    newest = max(cursors.values()) if cursors else iso(now)
    state = {
        "cursors": cursors,
        "decommissioned": [],
        "feed": {"received_since": newest, "published_since": iso(now)},
    }
    (project / "files" / "state.json").write_text(json.dumps(state))
    return {"readings": landed, "seconds": time.perf_counter() - started}


# --- one configuration ------------------------------------------------------------------------------
def _settings(home: Path, devices: int, start: datetime, sim_port: int) -> Any:
    from shared.settings import Settings

    return Settings(
        home=home,
        ingest_port=free_port(),
        forecast_port=free_port(),
        anomaly_port=free_port(),
        chat_port=free_port(),
        model_server_port=free_port(),
        simulator_port=sim_port,
        simulator_api_key=API_KEY,
        connector_start_date=start.date().isoformat(),
        dispatcher_poll_s=0.02,
        # Pub/Sub's largest ack deadline: a handler slower than 300 s must not be redelivered
        # while it still works (that would double the work measured).
        bus_ack_deadline_s=600,
        # Each shard's writes queue on the one DuckDB writer lock, and each holder copies the whole
        # file to the readers' snapshot (5-9 GB at 30,000 meters x 30 days): a queue of six forecast
        # shards outlasted the 120 s default and a shard answered 503. Wait up to most of the
        # deadline instead of nacking work that would only be redone (a wait is a stage's time).
        warehouse_lock_timeout_s=480,
    )


def _run_of(settings: Any, handler: str, key: str) -> tuple[str, Any] | None:
    from shared.errors import GridsightError
    from shared.runs import find_run
    from shared.warehouse import open_warehouse

    try:
        with open_warehouse(settings, read_only=True) as wh:
            for status in ("succeeded", "failed"):
                run = find_run(wh, handler, key, status=status)  # type: ignore[arg-type]
                if run is not None:
                    return status, run
    except GridsightError:
        return None
    return None


def _wait_run(settings: Any, stack: Any, handler: str, key: str, timeout_s: float) -> Any:
    """The handler's succeeded run for `key`.

    A failed attempt does not end the wait: the dispatcher redelivers it after its backoff, as
    Pub/Sub does (at 30,000 meters a forecast shard's 503, the warehouse lock still taken after its
    wait, ended the first run although the redelivery would have done the work). Only a
    dead-lettered delivery, a crashed service or the deadline stops it; `_failures` reports them.
    """
    deadline = time.monotonic() + timeout_s
    last = None  # the latest failed attempt seen
    while time.monotonic() < deadline:
        found = _run_of(settings, handler, key)
        if found is not None:
            status, run = found
            if status == "succeeded":
                return run
            last = run
            if _dead_lettered(settings):
                raise RuntimeError(f"{handler} failed for {key} and was dead-lettered: {run.detail}")
        stack.check()
        time.sleep(0.25)  # polling pipeline_runs, with a deadline
    tail = f"; its last failure: {last.detail}" if last is not None else ""
    raise TimeoutError(f"{handler} did not finish {key} within {timeout_s:.0f} s{tail}")


def _failures(settings: Any, handler: str, keys: list[str]) -> list[Any]:
    """Every failed attempt of `handler` for `keys`, oldest first (each is recorded before its
    retry publishes, so once the retries succeeded all are in the snapshot)."""
    from shared.runs import PipelineRun
    from shared.warehouse import open_warehouse

    sql = (
        "SELECT * FROM energy_analytics.pipeline_runs"
        " WHERE handler = @handler AND dedupe_key IN UNNEST(@keys) AND status = 'failed'"
        " ORDER BY started_at"
    )
    with open_warehouse(settings, read_only=True) as wh:
        rows = wh.query(sql, {"handler": handler, "keys": keys}).to_pylist()
    return [PipelineRun.model_validate(r) for r in rows]


def _dead_lettered(settings: Any) -> bool:
    from shared.bus.local import QueueStore

    store = QueueStore.open(settings)
    try:
        return bool(store.dead_letters())
    finally:
        store.close()


def _settled(settings: Any) -> bool:
    from shared.bus.local import QueueStore

    store = QueueStore.open(settings)
    try:
        return store.unsettled() == 0
    finally:
        store.close()


def _train(settings: Any, devices: int) -> int:
    """The production trainer (train_panel, save_version) on the warehouse's first `devices`
    meters: the model is global, and its training is not part of a cycle (Vertex AI does it apart),
    so the bench does not spend a 10k fleet's training time on it."""
    from services.forecast.artefact import save_version
    from services.forecast.dataset import Panel
    from services.forecast.training import load_warehouse_panel, model_root, train_panel
    from shared.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as wh:
        end = _newest_hour(wh)
        full = load_warehouse_panel(wh, end - timedelta(days=settings.forecast_training_days))
    n = min(devices, len(full.device_ids))
    temp = full.temp_c[:n] if full.temp_c is not None else None
    panel = Panel(index=full.index, kwh=full.kwh[:n], device_ids=full.device_ids[:n], temp_c=temp)
    model, card = train_panel(panel, source=f"warehouse (bench: first {n} devices)")
    save_version(model, card, model_root(settings))
    return n


BACKFILL_SCORED = timedelta(days=3)


def _score_backfill(settings: Any) -> int:
    """The backfill's first anomaly scoring, as setup: the production detector on the last
    BACKFILL_SCORED of the backfill for every meter, its incidents written and not announced.

    A fleet brought on with weeks of history holds hundreds of incidents in its last days (1,714
    at 10,000 meters), and delivering them is a one-off of onboarding, not of a 15-minute cycle;
    left to the first cycle it took longer than the cycles measured (docs/scaling.md). The first
    cycle then re-scores those hours and finds the same incidents (same ids: not new), as any
    later cycle does, and alerts what is new or escalated."""
    from services.anomaly.scoring import detect_window, write_incidents
    from shared.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as wh:  # detection reads; only the write locks
        event = newest_window_event(wh, BACKFILL_SCORED, "bench-backfill")
        incidents = detect_window(event, wh, now=datetime.now(UTC), chunk=settings.anomaly_device_chunk)
    with open_warehouse(settings) as wh:
        write_incidents(wh, incidents)
    return len(incidents.new_ids)


def newest_window_event(wh: Any, span: timedelta, refresh_id: str) -> Any:
    """A features-refreshed event for every device and the newest `span` of hourly data."""
    from shared.events import FeaturesRefreshed

    end = _newest_hour(wh) + timedelta(hours=1)
    ids = [str(d) for d in wh.query_df("SELECT device_id FROM energy_analytics.dim_device")["device_id"]]
    return FeaturesRefreshed(refresh_id=refresh_id, window_start=end - span, window_end=end, device_ids=ids)


def _newest_hour(wh: Any) -> datetime:
    """The newest hour of hourly_consumption, in UTC (the backfill's last hour)."""
    import pandas as pd

    last = pd.Timestamp(
        wh.query_df("SELECT MAX(hour) AS h FROM energy_analytics.hourly_consumption")["h"].iloc[0]
    )
    return (last.tz_localize(UTC) if last.tzinfo is None else last).to_pydatetime()


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants (functions-framework serves from gunicorn
    workers): live ones from /proc/<pid>/stat, the ones that exited from the root's cutime/cstime."""
    import psutil

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    for kid in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(OSError):
            total += cpu_s(kid.pid)
    return total


def _tree_hwm_mb(pid: int) -> float:
    """The largest VmHWM in a process tree (the gunicorn worker that does the work)."""
    import psutil

    peaks = [status_mb("VmHWM", pid)]
    for kid in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(OSError):
            peaks.append(status_mb("VmHWM", kid.pid))
    return max(peaks)


def run_config(
    devices: int,
    history_days: int,
    cycles: int,
    *,
    profile: bool,
    timeout_s: float,
    train_devices: int,
    settle: bool = True,
    warmup: int = 0,
    score_backfill: bool = True,
) -> dict:
    from infra.local.supervisor import StackOptions, Supervisor, stack_specs
    from infra.local.sync import default_configuration, run_sync
    from infra.local.webhook_client import send_sync_end
    from shared.refresh import RefreshResult, refresh_features
    from simulator.fleet import Fleet, FleetSpec
    from simulator.server import SimulatorServer, VendorApi

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    start = _fleet_start(history_days)
    spec = FleetSpec(devices=devices, days=history_days, start=start, seed=7, decommission_share=0.0)
    fleet = Fleet(spec)
    api = VendorApi(fleet, API_KEY)
    home = Path(tempfile.mkdtemp(prefix=f"bench-scale-{devices}-"))
    server = SimulatorServer(api).start()
    sim_port = int(server.url.rsplit(":", 1)[1])
    settings = _settings(home, devices, start, sim_port)
    setup: dict[str, Any] = {"home": str(home)}
    out: dict[str, Any] = {
        "devices": devices,
        "history_days": history_days,
        "cycles": cycles,
        "cycle_minutes": CYCLE_MINUTES,
        "backfill": "simulator series landed straight into the raw DuckDB with connector state "
        "(bench_scale.backfill), then one full refresh, one training and (unless --alert-backfill) "
        "the first anomaly scoring of its last 3 days, not alerted, outside the cycles",
        "load_average_start": os.getloadavg()[0],
    }
    try:
        with Progress(console=console) as bar:
            setup["backfill"] = backfill(settings, fleet, api.now, bar)
            t = time.perf_counter()
            with console.status("full refresh of the backfill"):
                refresh_features(settings, full=True)
            setup["full_refresh_s"] = time.perf_counter() - t
            t = time.perf_counter()
            with console.status(f"training the forecast model on {train_devices} devices"):
                setup["train_devices"] = _train(settings, train_devices)
            setup["train_s"] = time.perf_counter() - t
            if score_backfill:
                t = time.perf_counter()
                with console.status("first anomaly scoring of the backfill (not alerted)"):
                    setup["backfill_incidents"] = _score_backfill(settings)
                setup["backfill_scoring_s"] = time.perf_counter() - t
        console.print(f"setup: {setup}")
        wanted = {"ingest", "forecast", "anomaly", "model-server", "dispatcher"}
        specs = [s for s in stack_specs(settings, StackOptions()) if s.name in wanted]
        cfg = default_configuration(settings)
        results: list[dict[str, Any]] = []
        with Supervisor(settings, specs) as stack, Progress(console=console) as bar:
            pids = lambda: {c.proc.pid for c in stack.children.values() if c.proc}  # noqa: E731
            task = bar.add_task(f"{cycles} cycles of {CYCLE_MINUTES} min, {devices:,} devices", total=cycles)
            for k in range(warmup):  # settled and not counted: the first scoring of the backfill
                api.advance(CYCLE_MINUTES / 60)
                first = _cycle(settings, stack, cfg, pids, timeout_s, run_sync, send_sync_end,
                               RefreshResult, True)  # fmt: skip
                out.setdefault("warmup_cycles", []).append(first["seconds"])
                console.print(f"warm-up cycle {k + 1}: {first['seconds']}")
            for k in range(cycles):
                api.advance(CYCLE_MINUTES / 60)
                began = time.monotonic()
                try:
                    results.append(_cycle(settings, stack, cfg, pids, timeout_s, run_sync, send_sync_end,
                                          RefreshResult, settle))  # fmt: skip
                except TimeoutError as exc:  # a stage outlasted --stage-timeout: the cycle is over budget
                    out["timed_out"] = {
                        "cycle": k + 1,
                        "error": str(exc),
                        "after_s": time.monotonic() - began,
                    }
                    console.print(f"cycle {k + 1}: {exc} after {out['timed_out']['after_s']:.0f} s; stopping")
                    break
                console.print(
                    f"cycle {k + 1}: " + ", ".join(f"{s} {results[-1]['seconds'][s]:.1f} s" for s in STAGES)
                )
                bar.advance(task)
            if profile and results:
                tag = f"{devices}x{history_days}"
                out["profile"] = _profile_handlers(settings, results[-1]["event"], tag)
            out["peak_rss_per_process_mb"] = {
                n: _tree_hwm_mb(c.proc.pid) for n, c in stack.children.items() if c.proc
            }
    finally:
        server.stop()
    out["setup"] = setup
    out["per_cycle"] = [{k: v for k, v in r.items() if k != "event"} for r in results]
    if not results:  # not one cycle inside the stage timeout: the cycle time is a lower bound
        bound = out["timed_out"]["after_s"]
        out.update({"cycle_seconds_median": bound, "cycle_seconds_max": bound, "lower_bound": True,
                    "fits_in_cycle": bound <= BUDGET_S})  # fmt: skip
        out["peak_rss_mb"] = max(out["peak_rss_per_process_mb"].values())
        return out
    out.update(_summarise(results))
    if "timed_out" in out:
        out["fits_in_cycle"] = False
    peaks = dict(out["peak_rss_per_process_mb"])
    peaks["connector_runner"] = max(r["runner_peak_mb"] for r in results)
    out["peak_rss_per_process_mb"] = peaks
    out["peak_rss_mb"] = max(peaks.values())
    out["peak_rss_sum_mb"] = sum(peaks.values())
    out["load_average_end"] = os.getloadavg()[0]
    return out


def _cycle(settings, stack, cfg, pids, timeout_s, run_sync, send_sync_end, refresh_result, settle) -> dict:  # type: ignore[no-untyped-def]
    from services.ingest.refresh import shard_events

    names = {n: c.proc.pid for n, c in stack.children.items() if c.proc}
    cpu0 = {n: _tree_cpu_s(p) for n, p in names.items()}
    kids0, self0 = _children_cpu_s(), _self_cpu_s()
    began = datetime.now(UTC)
    t0 = time.monotonic()
    with RunnerWatch(pids) as watch:
        sync = run_sync(settings, configuration=cfg)
    sync_s = time.monotonic() - t0
    runner_cpu, sim_cpu = _children_cpu_s() - kids0, _self_cpu_s() - self0
    if not sync.ok:
        raise RuntimeError(f"sync failed: {sync.error} (log {sync.log_path})")
    send_sync_end(settings, sync_id=sync.sync_id)
    key = f"{settings.fivetran_connection_id}/{sync.sync_id}"
    ingest = _wait_run(settings, stack, "ingest", key, timeout_s)
    refresh = _wait_run(settings, stack, "ingest.refresh", key, timeout_s)
    result = refresh_result.model_validate_json(refresh.detail)
    failed = _failures(settings, "ingest", [key])
    first = min(r.started_at for r in [ingest, *failed])  # a redelivery is part of the stage
    seconds = {"sync": sync_s, "refresh": (ingest.finished_at - first).total_seconds()}
    failed += _failures(settings, "ingest.refresh", [key])
    rows = {"sync": sum(sync.rows.values()), "refresh": sum(result.rows_changed.values())}
    finished = [ingest.finished_at]
    event = None
    if result.window_start is not None:
        # ingest announces the window in shards of event_shard_devices: a stage lasts from its
        # first shard's start to its last shard's finish (shards run side by side or in turn)
        shards = [e.refresh_id for e in shard_events(result, settings)]
        for handler in ("forecast", "anomaly"):
            runs = [_wait_run(settings, stack, handler, key, timeout_s) for key in shards]
            failures = _failures(settings, handler, shards)
            failed += failures
            seconds[handler] = (  # from the first attempt's start: a redelivery is part of the stage
                max(r.finished_at for r in runs) - min(r.started_at for r in runs + failures)
            ).total_seconds()
            rows[handler] = sum(int(r.rows_written or 0) for r in runs)
            finished.extend(r.finished_at for r in runs)
        event = {
            "refresh_id": result.refresh_id,
            "window_start": result.window_start.isoformat(),
            "window_end": result.window_end.isoformat() if result.window_end else None,
            "device_ids": result.device_ids,
        }
    else:
        seconds["forecast"] = seconds["anomaly"] = 0.0
        rows["forecast"] = rows["anomaly"] = 0
    seconds["end_to_end"] = (max(finished) - began).total_seconds()
    if settle:  # alerts and follow-ups the cycle published, delivered before the next sync
        deadline = time.monotonic() + timeout_s
        while not _settled(settings):
            if time.monotonic() > deadline:
                raise TimeoutError("deliveries did not settle")
            time.sleep(0.25)
        seconds["settled"] = (datetime.now(UTC) - began).total_seconds()
    cpu = {n: _tree_cpu_s(p) - cpu0[n] for n, p in names.items()}
    cpu["connector_runner"] = runner_cpu
    cpu["simulator_and_bench"] = sim_cpu
    return {
        "seconds": seconds,
        "rows": rows,
        "sync_rows": sync.rows,
        "refresh_durations_s": result.durations_s,
        "refresh_devices": len(result.device_ids),
        "refresh_window": [event["window_start"], event["window_end"]] if event else None,
        "cpu_s": cpu,
        "rss_mb": {n: _tree_hwm_mb(p) for n, p in names.items()},
        "runner_peak_mb": watch.peak_mb,
        "event": event,
        "failed_attempts": [
            {"handler": f.handler, "key": f.dedupe_key, "attempt": f.delivery_attempt, "detail": f.detail}
            for f in failed
        ],
    }


def _summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    out: dict[str, Any] = {}
    for stage in STAGES:
        vals = [r["seconds"][stage] for r in results]
        out[f"{stage}_seconds_median"] = med(vals)
        out[f"{stage}_seconds_max"] = max(vals)
    for stage in ("sync", "refresh", "forecast", "anomaly"):
        out[f"{stage}_rows_median"] = med([r["rows"][stage] for r in results])
    out["cycle_seconds_median"] = out["end_to_end_seconds_median"]
    out["cycle_seconds_max"] = out["end_to_end_seconds_max"]
    if all("settled" in r["seconds"] for r in results):
        settled = [r["seconds"]["settled"] for r in results]
        out["settled_seconds_median"], out["settled_seconds_max"] = med(settled), max(settled)
    procs = results[0]["cpu_s"].keys()
    out["cpu_seconds_median"] = {p: med([r["cpu_s"][p] for r in results]) for p in procs}
    out["cpu_seconds_per_cycle_median"] = sum(out["cpu_seconds_median"].values())
    models = results[0]["refresh_durations_s"].keys()
    out["refresh_model_seconds_median"] = {
        m: med([r["refresh_durations_s"].get(m, 0.0) for r in results]) for m in models
    }
    # redelivered handler attempts (a 503 and its retry are inside the stage times above)
    out["failed_attempts"] = sum(len(r["failed_attempts"]) for r in results)
    out["fits_in_cycle"] = out["cycle_seconds_max"] <= BUDGET_S
    return out


def _profile_handlers(settings: Any, event: dict[str, Any] | None, tag: str) -> dict[str, str]:
    """cProfile of the forecast and anomaly handler functions on the last cycle's event, called in
    this process against the same warehouse and model server (idempotent: same rows MERGEd). The
    whole profile is kept as artifacts/bench_scale_<tag>_<handler>.prof for `python -m pstats`."""
    if event is None:
        return {}
    from services.anomaly.scoring import score_window
    from services.forecast.forecast import forecast_window
    from shared.bus import open_publisher
    from shared.events import FeaturesRefreshed
    from shared.push import PushContext

    ev = FeaturesRefreshed(
        refresh_id=event["refresh_id"],
        window_start=datetime.fromisoformat(event["window_start"]),
        window_end=datetime.fromisoformat(event["window_end"]),
        device_ids=event["device_ids"],
    )
    publisher = open_publisher(settings, source="gridsight/bench")
    ctx = PushContext(settings, publisher, "bench", "bench", 1, "bench-profile")
    out = {}
    try:
        for name, fn in (("forecast", forecast_window), ("anomaly", score_window)):
            prof = cProfile.Profile()
            prof.enable()
            fn(ev, ctx)  # type: ignore[operator]
            prof.disable()
            ARTIFACTS.mkdir(exist_ok=True)
            prof.dump_stats(ARTIFACTS / f"bench_scale_{tag}_{name}.prof")
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
            out[name] = text.getvalue()
    finally:
        publisher.close()
    return out


# --- reporting ----------------------------------------------------------------------------------
def _table(result: dict[str, Any]) -> Table:
    title = f"{result['devices']:,} devices × {result['history_days']} days, {result['cycles']} cycles"
    table = Table(title=title)
    for col in ("stage", "median s", "max s", "rows (median)"):
        table.add_column(col, justify="right")
    for stage in (*STAGES, "settled"):
        if f"{stage}_seconds_median" not in result:
            continue
        rows = result.get(f"{stage}_rows_median")
        table.add_row(
            stage,
            f"{result[f'{stage}_seconds_median']:.1f}",
            f"{result[f'{stage}_seconds_max']:.1f}",
            "" if rows is None else f"{rows:,.0f}",
        )
    return table


def _print_run(result: dict[str, Any]) -> None:
    if result.get("lower_bound"):
        console.print(f"{result['devices']:,} devices: no cycle finished; {result['timed_out']}")
        return
    console.print(_table(result))
    if result.get("failed_attempts"):
        console.print(f"handler attempts that failed and were redelivered: {result['failed_attempts']}")
    console.print(f"backfill: {result['backfill']}; setup {result['setup']}")
    console.print("CPU s per cycle (median) per process: " + ", ".join(
        f"{p} {v:.1f}" for p, v in result["cpu_seconds_median"].items()))  # fmt: skip
    console.print("peak RSS MB per process: " + ", ".join(
        f"{p} {v:.0f}" for p, v in result["peak_rss_per_process_mb"].items()))  # fmt: skip
    console.print("refresh models (median s): " + ", ".join(
        f"{m} {v:.2f}" for m, v in result["refresh_model_seconds_median"].items()))  # fmt: skip
    verdict = "inside" if result["fits_in_cycle"] else "OUTSIDE"
    median, worst = result["cycle_seconds_median"], result["cycle_seconds_max"]
    console.print(
        f"cycle median {median:.1f} s, max {worst:.1f} s: {verdict} the {CYCLE_MINUTES}-minute budget"
    )
    for name, text in result.get("profile", {}).items():
        console.print(f"[bold]cProfile {name}[/]\n{text}")


def _child(
    devices: int, history_days: int, cycles: int, timeout_s: float, extra: list[str]
) -> dict[str, Any]:
    """One configuration in a child process (its own memory); its last stdout line is the JSON."""
    cmd = [sys.executable, __file__, "--devices", str(devices), "--history-days", str(history_days),
           "--cycles", str(cycles), "--json", "--stage-timeout", str(timeout_s), *extra]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout_s * (cycles + 3))
    except subprocess.TimeoutExpired:
        return {"devices": devices, "history_days": history_days, "error": "timed out"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"devices": devices, "history_days": history_days, "error": f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def _record(result: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    slim = {k: v for k, v in result.items() if k not in ("profile", "per_cycle")}
    with RUNS_FILE.open("a") as f:
        f.write(json.dumps(slim) + "\n")


def plot(history_days: int, path: Path) -> Path | None:
    """Stage medians against N, from every recorded run with this much history (latest per N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not RUNS_FILE.exists():
        return None
    latest: dict[int, dict[str, Any]] = {}
    for line in RUNS_FILE.read_text().splitlines():
        run = json.loads(line)
        if run.get("history_days") == history_days and "error" not in run and not run.get("lower_bound"):
            latest[int(run["devices"])] = run
    if not latest:
        return None
    ns = sorted(latest)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stage in STAGES:
        ax.plot(ns, [latest[n][f"{stage}_seconds_median"] for n in ns], marker="o", label=stage)
    ax.axhline(BUDGET_S, color="grey", linestyle="--", label="15-minute budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("meters (N)")
    ax.set_ylabel("seconds per 15-min cycle (median)")
    ax.set_title(f"gridsight real pipeline on {os.cpu_count()} cores, {history_days} days of history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--history-growth", action="store_true", help="H=30 vs H=--growth-days, same N")
    parser.add_argument("--growth-days", type=int, default=180)
    parser.add_argument("--search", action="store_true", help="largest N whose cycle fits 15 minutes")
    parser.add_argument("--sizes", default="1000,10000,30000,100000")
    parser.add_argument("--profile", action="store_true", help="cProfile the forecast/anomaly handlers")
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="start the next sync without waiting for alert deliveries (their backlog competes)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="settled cycles run first and not counted (the backfill's first scoring)",
    )
    parser.add_argument(
        "--alert-backfill",
        action="store_true",
        help="leave the backfill's first scoring (and its alerts) to the first cycle instead of setup",
    )
    parser.add_argument("--train-devices", type=int, default=100, help="meters the model is trained on")
    parser.add_argument("--stage-timeout", type=float, default=1500.0, help="seconds per stage wait")
    args = parser.parse_args()
    for name in ("devices", "history_days", "cycles", "growth_days", "train_devices"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        raise SystemExit("--warmup must be 0 or more")
    if args.growth_days < 180:
        raise SystemExit("--growth-days must be at least 180")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--sizes must be comma-separated integers (got {args.sizes!r})") from None

    extra = ["--train-devices", str(args.train_devices), "--warmup", str(args.warmup)]
    extra += ["--no-settle"] if args.no_settle else []
    extra += ["--alert-backfill"] if args.alert_backfill else []
    if args.history_growth:
        short = _child(args.devices, 30, args.cycles, args.stage_timeout, extra)
        long = _child(args.devices, args.growth_days, args.cycles, args.stage_timeout, extra)
        for run in (short, long):
            if "error" in run:
                raise SystemExit(f"history-growth run at H={run['history_days']} failed: {run['error']}")
            _print_run(run)
        out = {
            "devices": args.devices,
            "history_days": [30, args.growth_days],
            "cycle_seconds_median": [short["cycle_seconds_median"], long["cycle_seconds_median"]],
            "history_growth_ratio": long["cycle_seconds_median"] / short["cycle_seconds_median"],
            "stage_ratios": {
                s: long[f"{s}_seconds_median"] / max(short[f"{s}_seconds_median"], 1e-9) for s in STAGES
            },
            "runs": [short, long],
        }
        console.print(f"history growth ratio (H={args.growth_days} / H=30): {out['history_growth_ratio']:.2f}"
                      " (goal <= 1.2)")  # fmt: skip
    elif args.search:
        found: list[dict[str, Any]] = []
        largest = None
        for n in sizes:
            console.rule(f"N = {n:,}")
            run = _child(n, args.history_days, args.cycles, args.stage_timeout, extra)
            found.append(run)
            if "error" in run:
                console.print(f"N = {n:,}: {run['error']}; stopping")
                break
            _print_run(run)
            if run["cycle_seconds_median"] > BUDGET_S:
                median = run["cycle_seconds_median"]
                console.print(f"N = {n:,}: median cycle {median:.0f} s > {BUDGET_S} s; stopping")
                break
            largest = n
        png = plot(args.history_days, ARTIFACTS / f"bench_scale_h{args.history_days}.png")
        out = {"sizes": [r["devices"] for r in found], "largest_n_within_15_min": largest, "runs": found,
               "history_days": args.history_days, "chart": str(png)}  # fmt: skip
        console.print(f"largest N inside {CYCLE_MINUTES} min: {largest}; chart {png}")
    else:
        out = run_config(args.devices, args.history_days, args.cycles, profile=args.profile,
                         timeout_s=args.stage_timeout, train_devices=args.train_devices,
                         settle=not args.no_settle, warmup=args.warmup,
                         score_backfill=not args.alert_backfill)  # fmt: skip
        _record(out)
        _print_run(out)
        png = plot(args.history_days, ARTIFACTS / f"bench_scale_h{args.history_days}.png")
        console.print(f"chart: {png}")
    if args.json:
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
