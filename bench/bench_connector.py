"""Connector throughput: our connector through `fivetran debug` vs the SDK's own ceiling.

Default: 1,000 devices x 7 days at 15 minutes (672,000 readings) from the simulator (in this
process, on loopback). The ceiling is a trivial connector that upserts the very rows our run
landed, from memory, through the same runner in the same session. Rows/s uses the runner's own
"SYNC SUCCEEDED — total elapsed" (schema, update and every flush; not interpreter start-up or the
pipreqs pre-check), wall time is printed too. Peak memory is the runner's process-tree RSS,
sampled every 0.1 s. Goal: ratio >= 0.8. A smaller sweep over the checkpoint interval follows
(--sweep-devices 0 skips it); --repeats N alternates ours/ceiling and reports medians.

    .venv/bin/python bench/bench_connector.py [--devices 1000] [--days 7] [--sweep-devices 150]

--cycle 1000,10000,100000 instead measures one 15-minute cycle (#15) per fleet size, fleet change
feed vs per-device feeds: the state a sync at T left (every device's cursor at T, and for the feed
its fleet cursor and `as_of` T, and the fingerprints of the site and device pages it upserted;
written to files/state.json, so no backfill is run), the simulator's
clock moved to T + 15 min, one sync each way against the same data. Per run: API requests,
reading rows, rows/s (runner elapsed, all tables), peak RSS of the runner. `--json` prints the
results as the last line. The simulator runs in this process: its time is in the sync's elapsed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_ELAPSED = re.compile(r"SYNC SUCCEEDED — total elapsed (\d+):(\d+):(\d+)\.(\d+)")

CEILING_CONNECTOR = '''"""Trivial connector: upserts rows held in memory (the SDK's local ceiling)."""
import json

from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Operations as op

with open("rows.json", encoding="utf-8") as f:  # loaded before the runner's clock starts
    ROWS = json.load(f)


def schema(configuration):
    return {schema}


def update(configuration, state):
    done = 0
    for table, row in ROWS:
        op.upsert(table, row)
        done += 1
        if done % {every} == 0:
            op.checkpoint({{"done": done}})
    op.checkpoint({{"done": done}})


connector = Connector(update=update, schema=schema)
'''


def run_debug(project: Path, config_path: Path) -> dict[str, float]:
    """Peak memory is sampled from the runner's process tree with psutil: ru_maxrss would carry the
    size of this (forking) process across the child's exec, and this process holds the rows."""
    import psutil

    from infra.local.sync import start_runner

    started = time.perf_counter()
    peak = 0
    with (project / "run.log").open("w") as log:
        process = start_runner(project, config_path, stdout=log)
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.1)  # sampling interval, not synchronisation
    wall = time.perf_counter() - started
    text = (project / "run.log").read_text()
    if process.returncode != 0:
        raise SystemExit(f"fivetran debug failed in {project}:\n{text[-3000:]}")
    h, m, s, ms = (int(x) for x in _ELAPSED.search(text).groups())  # type: ignore[union-attr]
    return {"elapsed_s": h * 3600 + m * 60 + s + ms / 1000, "wall_s": wall, "peak_mb": peak / 1024**2}


def count_landed(project: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(project / "files" / "warehouse.db"), read_only=True) as con:
        return {
            t: con.sql(f"select count(*) from tester.{t}").fetchone()[0]  # type: ignore[index]
            for t in ("site", "device", "reading", "invalid_reading")
        }


def export_rows(project: Path) -> list[list[object]]:
    """What our run landed, as the (table, row) pairs our connector emitted (times as ISO text)."""
    import duckdb

    out: list[list[object]] = []
    with duckdb.connect(str(project / "files" / "warehouse.db"), read_only=True) as con:
        for table in ("site", "device", "reading", "invalid_reading"):
            rel = con.sql(f"select * exclude (_fivetran_synced, _fivetran_deleted) from tester.{table}")
            columns = rel.columns
            for values in rel.fetchall():
                row = {
                    c: (v.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(v, "strftime") else v)
                    for c, v in zip(columns, values, strict=True)
                }
                out.append([table, row])
    return out


def real_run(
    url: str, key: str, root: Path, name: str, checkpoint_rows: int
) -> tuple[Path, dict[str, float]]:
    from infra.local.sync import prepare_project

    project = root / name
    config = {
        "base_url": url,
        "api_key": key,
        "page_size": "5000",
        "start_date": "2026-01-01",
        "lookback_hours": "3",
        "checkpoint_rows": str(checkpoint_rows),
    }
    return project, run_debug(project, prepare_project(project, config))


def ceiling_run(rows_file: Path, root: Path, name: str, checkpoint_rows: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO / "fivetran_connector"))
    import connector as ours  # the same schema() declaration

    project = root / name
    project.mkdir(parents=True)
    (project / "rows.json").symlink_to(rows_file)
    (project / "connector.py").write_text(
        CEILING_CONNECTOR.format(schema=repr(ours.schema({})), every=checkpoint_rows)
    )
    config_path = project / "configuration.json"
    config_path.write_text("{}")
    return run_debug(project, config_path)


def cycle_run(
    url: str, key: str, project: Path, state: dict, change_feed: bool, checkpoint_rows: int
) -> dict[str, float]:
    """One sync from a prepared state (what the previous sync left), in a fresh warehouse."""
    from infra.local.sync import prepare_project

    config = {
        "base_url": url,
        "api_key": key,
        "page_size": "5000",
        "start_date": "2026-01-01",
        "lookback_hours": "3",
        "change_feed": "true" if change_feed else "false",
        "checkpoint_rows": str(checkpoint_rows),
    }
    config_path = prepare_project(project, config)
    (project / "files").mkdir(exist_ok=True)
    (project / "files" / "state.json").write_text(json.dumps(state))
    return run_debug(project, config_path)


def entity_fingerprints(url: str, key: str) -> dict:
    """The site and device page fingerprints a previous sync leaves in its state (the connector's
    own `_unchanged_page` over the vendor's pages), so the cycle does not re-upsert them."""
    sys.path.insert(0, str(REPO / "fivetran_connector"))
    import client as vendor_client
    import connector as ours

    api = vendor_client.VendorClient(url, key)
    state: dict = {}
    for path, table, column in (("/v1/sites", "site", "site_id"), ("/v1/devices", "device", "device_id")):
        for page in api.pages(path, {"page_size": 1000}):  # the connector's entity page size
            ours._unchanged_page(state, table, page, column)
    return state["pages"]


def cycle_bench(
    sizes: list[int],
    key: str,
    root: Path,
    console,
    out: Path | None = None,
    checkpoint_rows: int = 5000,
    modes: tuple[bool, ...] = (True, False),
) -> list[dict[str, object]]:
    """One 15-minute cycle per fleet size and mode (see the module docstring)."""
    from simulator.feed import BLOCK_S
    from simulator.fleet import Fleet, FleetSpec, iso
    from simulator.server import SimulatorServer, VendorApi

    results: list[dict[str, object]] = []
    for n in sizes:
        # days=0.5: T is 12:00 on the fleet's first day, so no register history is generated.
        fleet = Fleet(FleetSpec(devices=n, days=0.5, seed=1, decommission_share=0.0))
        api = VendorApi(fleet, key)
        with SimulatorServer(api) as server:
            then = api.now
            cursors = {device_id: iso(then) for device_id in fleet.fleet_ids()}
            pages = entity_fingerprints(server.url, key)
            api.advance(0.25)
            for change_feed in modes:
                mode = "change feed" if change_feed else "per device"
                state: dict = {"cursors": cursors, "decommissioned": [], "pages": pages}
                if change_feed:
                    state["feed"] = {"received_since": iso(then), "published_since": iso(then)}
                index_s = 0.0
                if change_feed:
                    # The vendor's side, built before the sync and reported apart: the simulator
                    # indexes receipts per 3-hour block, once per block (twelve 15-minute cycles),
                    # where a real head-end system reads its database.
                    started = time.perf_counter()
                    lower = then - fleet.feed_lag_s
                    for block in range(lower // BLOCK_S, api.now // BLOCK_S + 1):
                        api.feed.block(block)
                    index_s = time.perf_counter() - started
                console.print(f"[bold]{n:,} devices[/], {mode}: one 15-minute cycle ...")
                before = dict(api.stats)
                project = root / f"cycle-{n}-{'feed' if change_feed else 'device'}"
                run = cycle_run(server.url, key, project, state, change_feed, checkpoint_rows)
                requests = {k: v - before.get(k, 0) for k, v in api.stats.items() if v - before.get(k, 0)}
                landed = count_landed(project)
                rows = sum(landed.values())
                results.append(
                    {
                        "devices": n,
                        "mode": mode,
                        "requests": sum(requests.values()),
                        "requests_by_route": requests,
                        "reading_rows": landed["reading"] + landed["invalid_reading"],
                        "rows": rows,
                        "rows_per_s": rows / run["elapsed_s"],
                        "elapsed_s": run["elapsed_s"],
                        "wall_s": run["wall_s"],
                        "peak_rss_mb": run["peak_mb"],
                        "vendor_index_s": index_s,
                    }
                )
                console.print(results[-1])
                if out is not None:  # each run as it ends: a long sweep keeps what it measured
                    with out.open("a") as file:
                        file.write(json.dumps(results[-1]) + "\n")
    return results


def print_cycles(results: list[dict[str, object]], console) -> None:
    from rich.table import Table

    table = Table(title="one 15-minute cycle: fleet change feed vs per-device feeds")
    columns = ("devices", "mode", "requests", "reading rows", "rows (all tables)", "rows/s", "elapsed s",
               "peak RSS MB", "vendor index s")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            f"{r['devices']:,}",
            str(r["mode"]),
            f"{r['requests']:,}",
            f"{r['reading_rows']:,}",
            f"{r['rows']:,}",
            f"{r['rows_per_s']:,.0f}",
            f"{r['elapsed_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['vendor_index_s']:.1f}" if r["vendor_index_s"] else "-",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--checkpoint-rows", type=int, default=5000)
    parser.add_argument("--feed-only", action="store_true", help="--cycle: skip the per-device feeds.")
    parser.add_argument("--sweep-devices", type=int, default=150)
    parser.add_argument(
        "--repeats", type=int, default=1, help="ours/ceiling pairs, order alternating; medians."
    )
    parser.add_argument("--cycle", default="", help="fleet sizes, e.g. 1000,10000,100000 (see above)")
    parser.add_argument("--json", action="store_true", help="with --cycle: the results as a last JSON line")
    parser.add_argument("--out", type=Path, help="with --cycle: append each run as a JSON line here")
    args = parser.parse_args()
    if args.cycle:
        from rich.console import Console

        try:
            sizes = [int(x) for x in args.cycle.split(",")]
        except ValueError:
            raise SystemExit(f"--cycle must be fleet sizes like 1000,10000 (got {args.cycle!r})") from None
        console = Console(stderr=args.json, width=120)
        with tempfile.TemporaryDirectory(prefix="bench-connector-") as tmp:
            results = cycle_bench(
                sizes,
                "bench-key",
                Path(tmp),
                console,
                args.out,
                args.checkpoint_rows,
                (True,) if args.feed_only else (True, False),
            )
        print_cycles(results, console)
        if args.json:
            print(json.dumps(results))
        return

    from rich.console import Console
    from rich.table import Table

    from simulator.fleet import Fleet, FleetSpec
    from simulator.server import SimulatorServer, VendorApi

    console = Console()
    key = "bench-key"
    with tempfile.TemporaryDirectory(prefix="bench-connector-") as tmp:
        root = Path(tmp)
        spec = FleetSpec(devices=args.devices, days=args.days, seed=1, decommission_share=0.0)
        with SimulatorServer(VendorApi(Fleet(spec), key)) as server:
            console.print(
                f"[bold]ours[/]: {args.devices} devices x {args.days} days through fivetran debug ..."
            )
            project, first = real_run(server.url, key, root, "ours-0", args.checkpoint_rows)
            landed = count_landed(project)
            rows_file = root / "rows.json"
            rows_file.write_text(json.dumps(export_rows(project)))
            ours_runs, ceiling_runs = [first], []
            for r in range(args.repeats):
                # Alternate the order so a change in machine load does not always favour one side.
                if r % 2 == 1:
                    ours_runs.append(real_run(server.url, key, root, f"ours-{r}", args.checkpoint_rows)[1])
                console.print(
                    f"[bold]ceiling[/] {r + 1}/{args.repeats}: the same rows upserted from memory ..."
                )
                ceiling_runs.append(ceiling_run(rows_file, root, f"ceiling-{r}", args.checkpoint_rows))
                if r % 2 == 0 and r > 0:
                    ours_runs.append(real_run(server.url, key, root, f"ours-{r}", args.checkpoint_rows)[1])
        ours = {k: statistics.median(run[k] for run in ours_runs) for k in first}
        ceiling = {k: statistics.median(run[k] for run in ceiling_runs) for k in first}

        total = sum(landed.values())
        table = Table(title=f"connector throughput, medians of {len(ours_runs)} + {len(ceiling_runs)} runs")
        for column in ("run", "rows/s (runner elapsed)", "elapsed s", "wall s", "peak RSS MB"):
            table.add_column(column, justify="right")
        for name, r in (("ours (simulator over HTTP)", ours), ("ceiling (from memory)", ceiling)):
            table.add_row(
                name,
                f"{total / r['elapsed_s']:,.0f}",
                f"{r['elapsed_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['peak_mb']:.0f}",
            )
        console.print(table)
        console.print(f"rows landed: {total:,} {landed}")
        console.print(
            f"ratio ours/ceiling = [bold]{ceiling['elapsed_s'] / ours['elapsed_s']:.2f}[/] (goal >= 0.8)"
        )

        if args.sweep_devices:
            sweep = Table(
                title=f"checkpoint interval sweep ({args.sweep_devices} devices x {args.days} days)"
            )
            for column in ("checkpoint_rows", "rows/s", "peak RSS MB"):
                sweep.add_column(column, justify="right")
            small = FleetSpec(devices=args.sweep_devices, days=args.days, seed=2, decommission_share=0.0)
            with SimulatorServer(VendorApi(Fleet(small), key)) as server:
                for every in (1000, 5000, 20000):
                    project, r = real_run(server.url, key, root, f"sweep-{every}", every)
                    n = sum(count_landed(project).values())
                    sweep.add_row(f"{every:,}", f"{n / r['elapsed_s']:,.0f}", f"{r['peak_mb']:.0f}")
            console.print(sweep)


if __name__ == "__main__":
    main()
