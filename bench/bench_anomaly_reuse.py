"""What keeping chunks between the anomaly sweeps saves (`Settings.anomaly_reuse_mb`), on a home a
`bench/bench_scale.py` run left behind (its warehouse: N meters x H days), or, without `--home`, on
one made here the way bench_scale backfills (`--devices` x `--days` of simulator history landed raw,
one full refresh; no forecasts) and deleted afterwards.

Scores the newest `--window-hours` of every meter, as one cycle's features-refreshed event asks,
`--repeat` times with reuse off (0 MB) and on (`--reuse-mb`), alternating, in this process; checks
both give the same incident rows, field for field, and prints the median seconds of each and
their ratio. Read-only on the warehouse (the published snapshot when there is one).

    python bench/bench_anomaly_reuse.py --home /tmp/bench-scale-1000-XXXX [--repeat 3] [--json]
    python bench/bench_anomaly_reuse.py [--devices 200 --days 70]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from bench_scale import newest_window_event

from services.anomaly.scoring import DEFAULT_REUSE_MB, detect_window
from shared.settings import Settings
from shared.warehouse import open_warehouse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="a bench_scale home (GRIDSIGHT_HOME); default: make one")
    parser.add_argument("--devices", type=int, default=200, help="meters of the home made here")
    parser.add_argument("--days", type=int, default=70, help="days of history of the home made here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window-hours", type=int, default=3)
    parser.add_argument("--reuse-mb", type=int, default=DEFAULT_REUSE_MB)
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    args = parser.parse_args()
    if args.home is None:
        with tempfile.TemporaryDirectory(prefix="bench-anomaly-reuse-") as tmp:
            run(_make_home(Path(tmp), args.devices, args.days), args)
        return
    if not (args.home / "warehouse.duckdb").exists():
        sys.exit(f"no warehouse under {args.home}: pass the home a bench/bench_scale.py run kept")
    run(Settings(home=args.home), args)


def _make_home(home: Path, devices: int, days: int) -> Settings:
    from bench_scale import API_KEY, _fleet_start, _settings, backfill
    from rich.progress import Progress

    from shared.refresh import refresh_features
    from simulator.fleet import Fleet, FleetSpec
    from simulator.server import VendorApi

    start = _fleet_start(days)
    fleet = Fleet(FleetSpec(devices=devices, days=days, start=start, seed=7, decommission_share=0.0))
    settings = _settings(home, devices, start, sim_port=0)
    with Progress() as bar:
        backfill(settings, fleet, VendorApi(fleet, API_KEY).now, bar)
    refresh_features(settings, full=True)
    return settings


def run(settings: Settings, args: argparse.Namespace) -> None:
    seconds: dict[int, list[float]] = {0: [], args.reuse_mb: []}
    rows: dict[int, pd.DataFrame] = {}
    now = datetime.now(UTC)
    with open_warehouse(settings, read_only=True) as wh:
        event = newest_window_event(wh, timedelta(hours=args.window_hours), "bench-reuse")
        for _ in range(args.repeat):
            for mb in seconds:
                t0 = time.perf_counter()
                out = detect_window(event, wh, now=now, chunk=settings.anomaly_device_chunk, reuse_mb=mb)
                seconds[mb].append(time.perf_counter() - t0)
                rows[mb] = out.rows
    off, on = (statistics.median(seconds[mb]) for mb in seconds)
    pd.testing.assert_frame_equal(rows[0], rows[args.reuse_mb])  # the same incidents, or no figure
    result = {
        "devices": len(event.device_ids),
        "window_hours": args.window_hours,
        "incident_rows": len(rows[0]),
        "reuse_mb": args.reuse_mb,
        "seconds_reuse_off_median": round(off, 2),
        "seconds_reuse_on_median": round(on, 2),
        "ratio_on_over_off": round(on / off, 3),
        "runs": {str(mb): [round(s, 2) for s in v] for mb, v in seconds.items()},
    }
    print(
        f"detect_window, {result['devices']:,} meters: reuse off {off:.2f} s, on ({args.reuse_mb} MB) "
        f"{on:.2f} s (median of {args.repeat}); ratio {on / off:.2f}; {len(rows[0])} incident rows, identical"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
