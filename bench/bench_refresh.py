"""Refresh benchmark on DuckDB: full rebuild vs incremental refresh after one more day of readings.

Default fleet: 1,000 devices x 90 days at 15 minutes (8.64 M readings), raw rows generated directly
(numpy -> DuckDB, shaped like `fivetran debug` output), not through the connector. Each phase runs in
its own child process so its peak memory (ru_maxrss from wait4) is its own. Goal: incremental <= 1/10
of the full rebuild.

    .venv/bin/python bench/bench_refresh.py [--devices 1000] [--days 90] [--runs 1]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK_DEVICES = 50


def _phase_generate(home: Path, devices: int, days: int) -> dict[str, object]:
    from rich.progress import Progress

    from shared.settings import Settings
    from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings

    settings = Settings(home=home)
    sites, fleet = make_fleet(devices)
    ids = fleet["device_id"].to_pylist()
    synced = START + timedelta(days=days, minutes=5)
    with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw, Progress() as bar:
        raw.upsert("site", sites, synced)
        raw.upsert("device", fleet, synced)
        task = bar.add_task("generating readings", total=len(ids))
        for i in range(0, len(ids), CHUNK_DEVICES):
            chunk = ids[i : i + CHUNK_DEVICES]
            rows = make_readings(chunk, START, START + timedelta(days=days), seed=i)
            raw.upsert("reading", rows, synced)
            bar.advance(task, len(chunk))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=1, help="full+incremental pairs (medians reported)")
    parser.add_argument("--phase", choices=["generate", "more", "full", "incremental"])
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()

    if args.phase:
        os.environ.setdefault("DO_NOT_TRACK", "1")
        if args.phase == "generate":
            result = _phase_generate(args.home, args.devices, args.days)
        elif args.phase == "more":
            result = _phase_more(args.home, args.devices, args.days)
        else:
            result = _phase_refresh(args.home, full=args.phase == "full")
        print(json.dumps(result))
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
