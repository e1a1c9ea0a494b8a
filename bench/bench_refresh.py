"""Refresh benchmark on DuckDB: full rebuild vs incremental refresh after one more day of readings.

Default fleet: 1,000 devices x 90 days at 15 minutes (8.64 M readings), raw rows generated directly
(numpy -> DuckDB, shaped like `fivetran debug` output), not through the connector. Each phase runs in
its own child process so its peak memory (ru_maxrss from wait4) is its own. Goal: incremental <= 1/10
of the full rebuild.

`--history-growth` answers issue #15's "cost grows with new data, not history": for each of
`--histories` (default 30 and 365 days) it lands the history, runs a full refresh, then times
`--cycles` 15-minute cycles as the ingest service runs them (one new reading per device plus one
late reading for one device, then an incremental refresh and the snapshot publish), per statement
with the rows each DuckDB table scan read, and prints the H=365 / H=30 ratio of the median cycle.

    .venv/bin/python bench/bench_refresh.py [--devices 1000] [--days 90] [--runs 1]
    .venv/bin/python bench/bench_refresh.py --history-growth [--devices 1000] [--histories 30,365]
    .venv/bin/python bench/bench_refresh.py --fleet-growth [--fleets 1000,3000,10000] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from _proc import reset_peak, status_mb  # bench/, the script's own folder

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK_DEVICES = 50


def _phase_generate(home: Path, devices: int, days: int, recent_days: int = 0) -> dict[str, object]:
    """H days of history: a backfill landed device by device in one sync (as the connector's first
    sync lands it), then the last `recent_days` in 6-hour syncs in time order (as a running fleet's
    syncs land them), so the newest raw rows are clustered by time like a live system's."""
    from rich.progress import Progress

    from shared.settings import Settings
    from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

    settings = Settings(home=home)
    sites, fleet = make_fleet(devices)
    ids = fleet["device_id"].to_pylist()
    end = START + timedelta(days=days)
    backfill_end = end - timedelta(days=recent_days)
    synced = backfill_end + timedelta(minutes=5)
    with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw, Progress() as bar:
        raw.upsert("site", sites, synced)
        raw.upsert("device", fleet, synced)
        task = bar.add_task("generating readings", total=len(ids))
        for i in range(0, len(ids), CHUNK_DEVICES):
            chunk = ids[i : i + CHUNK_DEVICES]
            rows = make_readings(chunk, START, backfill_end, seed=i)
            raw.upsert("reading", rows, synced)
            bar.advance(task, len(chunk))
        registers = raw.last_registers()
        batch = timedelta(hours=6)
        at = backfill_end
        while at < end:
            rows = make_readings(
                ids, at, at + batch, start_registers=registers, seed=30_000 + int(at.timestamp())
            )
            rows = rows.sort_by([("timestamp", "ascending"), ("device_id", "ascending")])
            raw.upsert("reading", rows, at + batch + timedelta(minutes=5))
            registers = raw.last_registers()
            at += batch
    return {"readings": devices * days * 96}


def _phase_more(home: Path, devices: int, days: int) -> dict[str, object]:
    from shared.settings import Settings
    from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

    settings = Settings(home=home)
    _, fleet = make_fleet(devices)
    ids = fleet["device_id"].to_pylist()
    end = START + timedelta(days=days)
    with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw:
        registers = raw.last_registers()
        for i in range(0, len(ids), CHUNK_DEVICES):
            chunk = ids[i : i + CHUNK_DEVICES]
            rows = make_readings(
                chunk, end, end + timedelta(days=1), start_registers=registers, seed=10_000 + i
            )
            raw.upsert("reading", rows, end + timedelta(days=1, minutes=5))
    return {"readings": devices * 96}


def _phase_refresh(home: Path, full: bool) -> dict[str, object]:
    from shared.refresh import refresh_features, warm_up
    from shared.settings import Settings

    settings = Settings(home=home)
    # A refresh service transpiles its statements once at start; that is reported apart.
    transpile_s = warm_up(settings)
    started = time.perf_counter()
    result = refresh_features(settings, full=full)
    return {
        "transpile_s": transpile_s,
        "seconds": time.perf_counter() - started,
        "rows_changed": result.rows_changed,
        "durations_s": result.durations_s,
        "full": result.full,
    }


def _child(phase: str, home: Path, args: argparse.Namespace) -> tuple[dict[str, object], float]:
    """Run one phase in a child process; returns its JSON result and its peak RSS in MiB."""
    cmd = [sys.executable, __file__, "--phase", phase, "--home", str(home)]
    cmd += ["--devices", str(args.devices), "--days", str(args.days)]
    cmd += [
        "--cycles",
        str(getattr(args, "cycles", 1)),
        "--recent-days",
        str(getattr(args, "recent_days", 0)),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"phase {phase} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def _plot(full: dict[str, float], incremental: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(full)
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(models))
    ax.bar([x - 0.2 for x in xs], [full[m] for m in models], width=0.4, label="full rebuild")
    ax.bar(
        [x + 0.2 for x in xs],
        [incremental.get(m, 0) for m in models],
        width=0.4,
        label="incremental (+1 day)",
    )
    ax.set_xticks(list(xs), models, rotation=20, ha="right")
    ax.set_ylabel("seconds (median)")
    ax.set_title("gridsight refresh on DuckDB, per model")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# --- history growth: the same 15-minute cycle at H = 30 and H = 365 days of history ----------------
CYCLE = timedelta(minutes=15)
LATE_DEVICE = "dev-00000"
LATE_BY = timedelta(days=2)


class _Timed:
    """A Warehouse that times each statement and, on DuckDB, counts the rows each table scan read
    (DuckDB's JSON profile: `operator_rows_scanned` of every TABLE_SCAN, after zone-map pruning)."""

    def __init__(self, wh: object, profile: Path) -> None:
        self._wh = wh
        self._profile = profile
        self.calls: list[dict[str, object]] = []
        conn = getattr(wh, "_conn", None)
        self._conn = conn
        if conn is not None:
            conn.execute("PRAGMA enable_profiling = 'json'")
            conn.execute(f"SET profiling_output = '{profile}'")

    def __getattr__(self, name: str) -> object:
        return getattr(self._wh, name)

    def query(self, sql: str, params: object = None) -> object:
        return self._timed(_label(sql), lambda: self._wh.query(sql, params))  # type: ignore[attr-defined]

    def execute(self, sql: str, params: object = None) -> object:
        return self._timed(_label(sql), lambda: self._wh.execute(sql, params))  # type: ignore[attr-defined]

    def merge(self, table: str, rows: object, key: object) -> object:
        return self._timed(f"write {table}", lambda: self._wh.merge(table, rows, key))  # type: ignore[attr-defined]

    def _timed(self, label: str, run: Callable[[], object]) -> object:
        started = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - started
        self.calls.append({"statement": label, "seconds": seconds, "scanned": self._scanned()})
        return out

    def _scanned(self) -> dict[str, int]:
        if self._conn is None or not self._profile.exists():
            return {}
        scanned: dict[str, int] = {}

        def walk(node: dict[str, Any]) -> None:
            table = node.get("extra_info", {}).get("Table")
            if node.get("operator_type") == "TABLE_SCAN" and table:
                name = str(table).rsplit(".", 1)[-1]
                scanned[name] = scanned.get(name, 0) + int(node.get("operator_rows_scanned", 0))
            for child in node.get("children", []):
                walk(child)

        walk(json.loads(self._profile.read_text()))
        self._profile.unlink()
        return scanned


def _label(sql: str) -> str:
    """A short name for a statement the refresh runs (what the per-statement table is keyed by)."""
    known = _known_statements()
    if sql in known:
        return known[sql]
    if match := re.match(r"\s*MERGE INTO energy_analytics\.(\w+)", sql):
        return f"merge {match.group(1)}"
    if match := re.search(r"MAX\(_fivetran_synced\) AS mark FROM raw\.(\w+)", sql):
        return f"watermark raw.{match.group(1)}"
    if match := re.search(r"FROM energy_analytics\.(\w+)", sql):
        return f"read {match.group(1)}"
    return " ".join(sql.split())[:28]


@cache
def _known_statements() -> dict[str, str]:
    from shared import refresh
    from shared.warehouse.models import ordered_models

    known = {refresh._compiled(q): n for q, n in zip(refresh._WINDOW_QUERIES, _WINDOW_NAMES, strict=True)}
    known[refresh._dimension_diff_sql()] = "dimension diff"
    staged = getattr(refresh, "_model_staged_sql", None)  # the staged DuckDB writes, where they exist
    for contract in ordered_models():
        if staged is None or contract.materialization == "full":
            continue
        for column in (None, refresh._restrict_column(contract)):
            steps = staged(contract.table, column)
            for kind, sql in zip(("stage", "upsert", "delete"), steps, strict=False):
                known[sql] = f"{kind} {contract.table}"
            known[steps[-1]] = "drop stage"
    return known


_WINDOW_NAMES = ("changed readings", "implausible readings", "changed devices", "device span", "device sites")


def _phase_cycles(home: Path, devices: int, days: int, cycles: int) -> dict[str, object]:
    """K incremental 15-minute cycles as the ingest service runs them: one new reading per device,
    one late (re-sent, corrected) reading two days back for one device, then a refresh."""
    import duckdb

    import shared.warehouse as warehouse
    from shared.refresh import WindowLimits, run_refresh, warm_up
    from shared.settings import Settings
    from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

    settings = Settings(home=home)
    warm_up(settings)
    limits = WindowLimits.from_settings(settings)
    ids = make_fleet(devices)[1]["device_id"].to_pylist()
    publish = warehouse.publish_snapshot
    published: list[float] = []

    def timed_publish(s: Settings) -> bool:
        started = time.perf_counter()
        try:
            return publish(s)
        finally:
            published.append(time.perf_counter() - started)

    warehouse.publish_snapshot = timed_publish  # type: ignore[assignment]
    end = START + timedelta(days=days)
    with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw:
        registers = raw.last_registers()
    out = []
    for k in range(cycles):
        at = end + k * CYCLE
        synced = at + timedelta(minutes=5)
        new = make_readings(ids, at, at + CYCLE, start_registers=registers, seed=20_000 + k)
        registers = dict(zip(new["device_id"].to_pylist(), new["energy_wh"].to_pylist(), strict=True))
        late_at = at - LATE_BY
        with duckdb.connect(str(settings.raw_duckdb_path), read_only=True) as conn:
            late = conn.execute(
                'SELECT device_id, "timestamp", power_w + 1 AS power_w, energy_wh, voltage, temp_c,'
                ' occupancy, received_at FROM tester.reading WHERE device_id = ? AND "timestamp" = ?'
                " ORDER BY _fivetran_synced DESC LIMIT 1",
                [LATE_DEVICE, late_at],
            ).to_arrow_table()
        with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw:
            raw.upsert("reading", new, synced)
            raw.upsert("reading", late, synced)
        published.clear()
        resident = status_mb("VmRSS")
        reset_peak()  # the refresh's own peak, not this bench's landing of its readings before it
        started = time.perf_counter()
        with warehouse.open_warehouse(settings) as wh:
            opened = time.perf_counter()
            timed = _Timed(wh, home / "profile.json")
            result = run_refresh(timed, limits=limits)  # type: ignore[arg-type]
            refreshed = time.perf_counter()
        closed = time.perf_counter()
        peak = status_mb("VmHWM")
        assert not result.full, "a cycle must be incremental"
        out.append(
            {
                "seconds": closed - started,
                "open_s": opened - started,
                "refresh_s": refreshed - opened,
                "close_publish_s": closed - refreshed,
                "publish_s": sum(published),
                "statements": timed.calls,
                "rows_changed": result.rows_changed,
                "passes": result.passes,
                "window": [str(result.window_start), str(result.window_end)],
                "late_rows": late.num_rows,
                "rss_before_mb": resident,
                "refresh_peak_rss_mb": peak,
            }
        )
    size = settings.duckdb_path.stat().st_size
    return {"cycles": out, "warehouse_mb": size / 2**20}


def _statement_medians(cycles: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """Per statement label: the median over cycles of its summed seconds, and the largest scan counts."""
    per: dict[str, list[float]] = {}
    scans: dict[str, dict[str, int]] = {}
    for cycle in cycles:
        totals: dict[str, float] = {}
        for call in cycle["statements"]:
            totals[call["statement"]] = totals.get(call["statement"], 0.0) + call["seconds"]
            seen = scans.setdefault(call["statement"], {})
            for table, rows in call["scanned"].items():
                seen[table] = max(seen.get(table, 0), rows)
        for label, seconds in totals.items():
            per.setdefault(label, []).append(seconds)
    return {label: statistics.median(v) for label, v in per.items()}, scans


def _landed_cycles(
    devices: int, days: int, cycles: int
) -> tuple[dict[str, Any], tuple[dict[str, Any], float], tuple[dict[str, Any], float]]:
    """In a fresh home: land `days` (the last 2 in 6-hour syncs), the full refresh, then `cycles`
    15-minute cycles, each phase in its own child. (generate, (full, its peak), (cycles, their peak))."""
    with tempfile.TemporaryDirectory(prefix="gridsight-cycles-") as tmp:
        home = Path(tmp)
        sub = argparse.Namespace(devices=devices, days=days, cycles=cycles, recent_days=2)
        gen, _ = _child("generate", home, sub)
        return gen, _child("full", home, sub), _child("cycles", home, sub)


def _history_growth(args: argparse.Namespace) -> None:
    histories = [int(h) for h in args.histories.split(",")]
    print(f"history growth: {args.devices} devices, {args.cycles} 15-min cycles at H = {histories} days")
    runs: dict[int, dict[str, Any]] = {}
    for days in histories:
        gen, (full, _), (res, mem) = _landed_cycles(args.devices, days, args.cycles)
        print(f"H={days}: {gen['readings']:,} readings, full refresh {float(full['seconds']):.1f} s")
        res["peak_rss_mb"] = mem
        runs[days] = res
        med = statistics.median(c["seconds"] for c in res["cycles"])
        size = res["warehouse_mb"]
        print(f"H={days}: cycle median {med:.3f} s, warehouse {size:.0f} MiB, peak {mem:.0f} MiB")
    base, top = histories[0], histories[-1]
    medians = {h: _statement_medians(r["cycles"]) for h, r in runs.items()}
    labels = list(dict.fromkeys(label for h in histories for label in medians[h][0]))
    print()
    print("per statement, median seconds per cycle (max rows scanned per table, DuckDB profile)")
    print(
        f"  {'statement':<24} "
        + " ".join(f"{'H=' + str(h):>9}" for h in histories)
        + "    ratio  scanned at H="
        + str(top)
    )
    for label in labels:
        secs = [medians[h][0].get(label, 0.0) for h in histories]
        ratio = secs[-1] / secs[0] if secs[0] else float("nan")
        scanned = ", ".join(f"{t} {n:,}" for t, n in sorted(medians[top][1].get(label, {}).items()))
        print(f"  {label:<28} " + " ".join(f"{s:9.3f}" for s in secs) + f"  {ratio:7.2f}  {scanned}")
    stages = ("open_s", "refresh_s", "close_publish_s", "publish_s", "seconds")
    for stage in stages:
        secs = [statistics.median(c[stage] for c in runs[h]["cycles"]) for h in histories]
        ratio = secs[-1] / secs[0] if secs[0] else float("nan")
        print(f"  {'cycle ' + stage:<28} " + " ".join(f"{s:9.3f}" for s in secs) + f"  {ratio:7.2f}")
    cycle = {h: statistics.median(c["seconds"] for c in runs[h]["cycles"]) for h in histories}
    refresh_only = {h: statistics.median(c["refresh_s"] for c in runs[h]["cycles"]) for h in histories}
    ratio = cycle[top] / cycle[base]
    print(f"history_growth_ratio (median cycle H={top} / H={base}) = {ratio:.3f} (goal <= 1.2)")
    print(f"refresh statements only: {refresh_only[top] / refresh_only[base]:.3f}")
    summary = {
        "devices": args.devices,
        "histories": histories,
        "cycles": args.cycles,
        "cycle_seconds_median": cycle,
        "refresh_seconds_median": refresh_only,
        "history_growth_ratio": ratio,
        "statement_seconds_median": {h: medians[h][0] for h in histories},
        "peak_rss_mb": {h: runs[h]["peak_rss_mb"] for h in histories},
        "warehouse_mb": {h: runs[h]["warehouse_mb"] for h in histories},
    }
    print(json.dumps(summary))


def _fleet_growth(args: argparse.Namespace) -> None:
    """Issue #15's "memory stays bounded and flat in N where the work is streamed": the same
    15-minute cycles as `--history-growth` for each fleet in `--fleets`, at `--days` of history,
    each phase in a child process. The figure is the refresh's own peak RSS (`reset_peak` before
    each refresh), beside the full rebuild's and the cycles process's (ru_maxrss)."""
    fleets = [int(n) for n in args.fleets.split(",")]
    print(f"fleet growth: {fleets} devices, {args.days} days, {args.cycles} 15-min cycles each")
    rows = []
    for devices in fleets:
        gen, (full, full_mem), (res, mem) = _landed_cycles(devices, args.days, args.cycles)
        med = statistics.median(c["refresh_s"] for c in res["cycles"])
        own = max(c["refresh_peak_rss_mb"] for c in res["cycles"])
        before = max(c["rss_before_mb"] for c in res["cycles"])
        rows.append({"devices": devices, "readings": gen["readings"], "full_refresh_s": full["seconds"],
                     "full_refresh_peak_rss_mb": full_mem, "cycle_refresh_s_median": med,
                     "cycle_peak_rss_mb": mem, "refresh_peak_rss_mb": own, "rss_before_refresh_mb": before,
                     "warehouse_mb": res["warehouse_mb"]})  # fmt: skip
        print(f"N={devices:,}: {gen['readings']:,} readings; full refresh {float(full['seconds']):.1f} s, "
              f"peak {full_mem:.0f} MiB; cycle refresh median {med:.2f} s, process peak {mem:.0f} MiB, "
              f"refresh's own peak {own:.0f} MiB (RSS before it {before:.0f})")  # fmt: skip
    first, last = rows[0], rows[-1]
    grown = last["refresh_peak_rss_mb"] - first["refresh_peak_rss_mb"]
    per_meter = grown / max(last["devices"] - first["devices"], 1)
    print(f"the refresh's peak RSS grows {per_meter * 1024:.1f} KiB per meter from N={first['devices']:,} "
          f"to N={last['devices']:,}")  # fmt: skip
    print(json.dumps({"days": args.days, "cycles": args.cycles, "fleets": rows,
                      "refresh_peak_kib_per_meter": per_meter * 1024}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=1, help="full+incremental pairs (medians reported)")
    parser.add_argument("--phase", choices=["generate", "more", "full", "incremental", "cycles"])
    parser.add_argument(
        "--history-growth",
        action="store_true",
        help="time --cycles 15-min cycles at each of --histories days of history (per statement)",
    )
    parser.add_argument("--histories", default="30,365", help="days of history, comma-separated")
    parser.add_argument(
        "--fleet-growth",
        action="store_true",
        help="peak memory of --cycles 15-min cycles for each of --fleets at --days of history",
    )
    parser.add_argument("--fleets", default="1000,3000,10000", help="fleet sizes, comma-separated")
    parser.add_argument(
        "--recent-days", type=int, default=0, help="last days landed in 6-h syncs in time order"
    )
    parser.add_argument("--cycles", type=int, default=5, help="15-min cycles per history (--history-growth)")
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()

    if args.phase:
        os.environ.setdefault("DO_NOT_TRACK", "1")
        if args.phase == "generate":
            result = _phase_generate(args.home, args.devices, args.days, args.recent_days)
        elif args.phase == "cycles":
            result = _phase_cycles(args.home, args.devices, args.days, args.cycles)
        elif args.phase == "more":
            result = _phase_more(args.home, args.devices, args.days)
        else:
            result = _phase_refresh(args.home, full=args.phase == "full")
        print(json.dumps(result))
        return

    if args.history_growth:
        _history_growth(args)
        return
    if args.fleet_growth:
        _fleet_growth(args)
        return
    readings = args.devices * args.days * 96
    print(f"fleet: {args.devices} devices x {args.days} days at 15 min = {readings:,} readings")
    fulls, incs, full_mem, inc_mem, transpiles = [], [], [], [], []
    full_models: list[dict[str, float]] = []
    inc_models: list[dict[str, float]] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="gridsight-bench-") as tmp:
            home = Path(tmp)
            gen, gen_mem = _child("generate", home, args)
            print(f"run {run + 1}: generated {gen['readings']:,} raw readings (peak {gen_mem:.0f} MiB)")
            full, mem = _child("full", home, args)
            fulls.append(float(full["seconds"]))  # type: ignore[arg-type]
            transpiles.append(float(full["transpile_s"]))  # type: ignore[arg-type]
            full_mem.append(mem)
            full_models.append(full["durations_s"])  # type: ignore[arg-type]
            _child("more", home, args)
            inc, mem = _child("incremental", home, args)
            assert not inc["full"], "the second refresh must be incremental"
            incs.append(float(inc["seconds"]))  # type: ignore[arg-type]
            transpiles.append(float(inc["transpile_s"]))  # type: ignore[arg-type]
            inc_mem.append(mem)
            inc_models.append(inc["durations_s"])  # type: ignore[arg-type]
            print(f"run {run + 1}: full {fulls[-1]:.2f} s, incremental {incs[-1]:.2f} s")
            print(f"        full rows: {full['rows_changed']}")
            print(f"        incremental rows: {inc['rows_changed']}")
    full_s, inc_s = statistics.median(fulls), statistics.median(incs)
    print()
    print(f"full rebuild      median {full_s:8.2f} s   peak memory {max(full_mem):7.0f} MiB")
    print(f"incremental +1 d  median {inc_s:8.2f} s   peak memory {max(inc_mem):7.0f} MiB")
    transpile_s = statistics.median(transpiles)
    print(f"SQL transpilation, once per process (not in the times above): median {transpile_s:.2f} s")
    verdict = "MET" if inc_s <= full_s / 10 else "NOT MET"
    print(f"incremental / full = {inc_s / full_s:.3f} (goal <= 0.100): {verdict}")
    per_full = {m: statistics.median(d[m] for d in full_models) for m in full_models[0]}
    per_inc = {m: statistics.median(d[m] for d in inc_models) for m in inc_models[0]}
    for model in per_full:
        print(f"  {model:<24} full {per_full[model]:7.2f} s   incremental {per_inc.get(model, 0):6.2f} s")
    png = REPO / "artifacts" / "bench_refresh.png"
    _plot(per_full, per_inc, png)
    print(f"chart: {png}")


if __name__ == "__main__":
    main()
