"""Forecasting on the real meters: accuracy against the targets, train + backtest speed, service speed.

1. Backtest (what `gridsight forecast backtest` runs) on the 35 meters x 2019, origins 17–30 Nov
   (term time) and 18–31 Dec (Christmas closure), 00:00 UTC, 24 h ahead: MASE / sMAPE / p10–p90
   coverage next to seasonal-naive 24 h and 168 h and statsforecast MSTL(24, 168) refitted per
   origin on 8 weeks. Targets: term MASE >= 25% below seasonal-naive-168h and >= 10% below MSTL,
   coverage 75–85%; Christmas MASE no worse than seasonal-naive-24h.
2. Speed: train + backtest wall time of our model per period (target < 60 s), median of
   `--repeats`; MSTL time reported separately (cold = fitted now; warm = from the disk cache).
3. Service: `forecast_window` for one FeaturesRefreshed over `--devices` devices (real meters
   replicated with noise into a temporary DuckDB warehouse), endpoint = the model server on
   loopback HTTP; median of `--repeats` events (target 1,000 devices < 10 s).

Prints peak RSS of the process at the end.

    .venv/bin/python bench/bench_forecast.py [--repeats 3] [--devices 1000] [--no-mstl]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from services.forecast.backtest import build_panel, load_energy_csv, load_weather_csv, run_backtest

console = Console(width=120)
# (start, end, score MSTL too): the MSTL target is for term time; over Christmas the bar is
# seasonal-naive-24h, and a cold MSTL refit of 490 series costs minutes, so it runs only where needed.
PERIODS = {
    "term 17–30 Nov": (date(2019, 11, 17), date(2019, 11, 30), True),
    "Christmas 18–31 Dec": (date(2019, 12, 18), date(2019, 12, 31), False),
}


def bench_backtest(data: Path, repeats: int, mstl: bool, cache: Path) -> None:
    panel = build_panel(
        load_energy_csv(data / "meters_2019_hourly.csv.gz"),
        load_weather_csv(data / "weather_2019_hourly.csv.gz"),
    )
    for name, (start, end, with_mstl) in PERIODS.items():
        walls = []
        result = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = run_backtest(panel, start, end, mstl=False)
            walls.append(time.perf_counter() - t0)
        assert result is not None
        scores = list(result.scores)
        mstl_note = "not run"
        if mstl and with_mstl:
            cold = not any(cache.glob("mstl-*.npy")) if cache.exists() else True
            t0 = time.perf_counter()
            with_mstl = run_backtest(panel, start, end, mstl=True, cache_dir=cache)
            mstl_s = with_mstl.seconds.get("mstl", time.perf_counter() - t0)
            scores.append(with_mstl.score("mstl"))
            mstl_note = f"{mstl_s:.1f} s ({'cold or partly cold' if cold else 'cache'})"
        table = Table(title=f"{name}: {len(panel.device_ids)} meters x {(end - start).days + 1} origins")
        for col in ("model", "MASE", "vs ours", "sMAPE %", "p10–p90 coverage"):
            table.add_column(col, justify="left" if col == "model" else "right")
        ours = result.score("gridsight").mase
        for s in scores:
            cov = f"{s.coverage:.1%}" if s.coverage is not None else "—"
            rel = f"{(1 - ours / s.mase):+.0%}" if s.model != "gridsight" else ""
            table.add_row(s.model, f"{s.mase:.3f}", rel, f"{s.smape:.1f}", cov)
        console.print(table)
        console.print(
            f"  train + backtest (ours): median {statistics.median(walls):.1f} s of {repeats} "
            f"(runs {', '.join(f'{w:.1f}' for w in walls)}; train {result.seconds['train']:.1f} s); "
            f"MSTL {mstl_note}"
        )


def _fleet_frame(data: Path, devices: int, origin: datetime) -> pd.DataFrame:
    """`devices` series of 336 h before `origin`: the real meters, scaled and jittered."""
    energy = load_energy_csv(data / "meters_2019_hourly.csv.gz")
    start = origin - timedelta(hours=336)
    energy = energy[
        (energy["timestamp_utc"] >= start.replace(tzinfo=None))
        & (energy["timestamp_utc"] < origin.replace(tzinfo=None))
    ]
    rng = np.random.default_rng(1)
    meters = sorted(energy["meter_id"].unique())
    frames = []
    for i in range(devices):
        base = energy[energy["meter_id"] == meters[i % len(meters)]]
        kwh = base["kwh"].to_numpy() * rng.uniform(0.5, 2.0) * rng.normal(1, 0.05, len(base)).clip(0.5)
        frames.append(
            pd.DataFrame(
                {
                    "device_id": f"bench-{i:05d}",
                    "site_id": "s1",
                    "hour": base["timestamp_utc"].dt.tz_localize(UTC),
                    "energy_kwh": kwh,
                    "avg_temp_c": 8.0,
                    "reading_count": 4,
                    "coverage": 1.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def bench_service(data: Path, devices: int, repeats: int) -> None:
    from werkzeug.serving import make_server

    from services.forecast.artefact import save_version
    from services.forecast.forecast import forecast_window
    from services.forecast.model_server import ModelStore, ServerConfig, create_app
    from services.forecast.training import train_panel
    from shared.bus import open_publisher
    from shared.events import FeaturesRefreshed
    from shared.push import PushContext
    from shared.settings import Settings
    from shared.warehouse import open_warehouse

    origin = datetime(2019, 11, 18, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as home:
        os.environ["GRIDSIGHT_HOME"] = home
        settings = Settings()
        energy = load_energy_csv(data / "meters_2019_hourly.csv.gz")
        recent = energy["timestamp_utc"].between(pd.Timestamp("2019-09-01"), pd.Timestamp("2019-11-17 23:00"))
        model, card = train_panel(build_panel(energy[recent]), source="bench", stride_hours=24)
        save_version(model, card, settings.model_dir)
        fleet = _fleet_frame(data, devices, origin)
        ids = sorted(fleet["device_id"].unique())
        with open_warehouse(settings) as wh:
            wh.merge("hourly_consumption", fleet, key=["device_id", "hour"])
            wh.merge(
                "dim_device",
                pd.DataFrame({"device_id": ids, "site_id": "s1", "name": ids}),
                key=["device_id"],
            )
        server = make_server(
            "127.0.0.1", 0, create_app(ModelStore(settings.model_dir), ServerConfig()), threaded=True
        )
        os.environ["GRIDSIGHT_MODEL_SERVER_PORT"] = str(server.server_port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        settings = Settings()
        publisher = open_publisher(settings)
        walls, cpus, rows = [], [], []
        try:
            for r in range(repeats):
                event = FeaturesRefreshed(
                    refresh_id=f"bench-{r}",
                    window_start=origin - timedelta(hours=1),
                    window_end=origin,
                    device_ids=ids,
                )
                ctx = PushContext(settings, publisher, f"m{r}", "bench", 1, f"c{r}")
                t0, c0 = time.perf_counter(), time.process_time()
                result = forecast_window(event, ctx)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                rows.append(result.rows_written)
        finally:
            publisher.close()
            server.shutdown()
        console.print(
            f"service: forecast_window for {devices:,} devices (rows changed per run {rows}, "
            f"{settings.forecast_batch_size} instances per call): "
            f"median {statistics.median(walls):.2f} s of {repeats} "
            f"(runs {', '.join(f'{w:.2f}' for w in walls)}; CPU s of this process incl. the model server "
            f"{', '.join(f'{c:.2f}' for c in cpus)}); target < 10 s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--no-mstl", action="store_true")
    parser.add_argument("--skip", choices=["backtest", "service"], default=None)
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "gridsight-bench-mstl-cache"
    if args.skip != "backtest":
        bench_backtest(args.data, args.repeats, not args.no_mstl, cache)
    if args.skip != "service":
        bench_service(args.data, args.devices, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
