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

4. `--protocol`: the validation protocol (services/forecast/protocol.py) — every window of every
   year (2012–2017, 2019), a model per window trained on data before it, all models side by side;
   prints the full table (years x windows x models), the pooled summary per split / year, the wall
   time per window (ours; MSTL cold or from the per-series cache under .gridsight/cache/mstl) and,
   with `--json PATH`, writes the figures. `--mstl-cost` times MSTL per series and splits it into
   the MSTL decomposition (statsmodels STL) and the AutoETS trend forecast.

Prints peak RSS of the process at the end.

    .venv/bin/python bench/bench_forecast.py [--repeats 3] [--devices 1000] [--no-mstl]
    .venv/bin/python bench/bench_forecast.py --protocol [--split development] [--origins 7] [--json f]
"""

from __future__ import annotations

import argparse
import json
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

from services.forecast.backtest import (
    MSTL_HISTORY_HOURS,
    build_panel,
    load_energy_csv,
    load_weather_csv,
    run_backtest,
)
from services.forecast.protocol import YEARS, load_public_panel, run_protocol
from services.forecast.protocol_report import DEFINITIONS, protocol_json, summary_table, windows_table

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
            files = lambda: len(list(cache.glob("*/*.npy"))) if cache.exists() else 0  # noqa: E731
            n_before = files()
            t0 = time.perf_counter()
            with_mstl = run_backtest(panel, start, end, mstl=True, cache_dir=cache)
            mstl_s = with_mstl.seconds.get("mstl", time.perf_counter() - t0)
            scores.append(with_mstl.score("mstl"))
            mstl_note = f"{mstl_s:.1f} s ({files() - n_before} series fitted cold, the rest from the cache)"
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


def bench_protocol(
    data: Path, split: str, origins: int, mstl: bool, years: list[int], json_out: Path | None
) -> None:
    from shared.settings import Settings

    panel = load_public_panel(data)
    cache = Settings().home / "cache" / "mstl"
    before = len(list(cache.glob("*/*.npy"))) if cache.exists() else 0
    t0 = time.perf_counter()
    result = run_protocol(panel, split=split, years=years, origins=origins, mstl=mstl, cache_dir=cache)
    wall = time.perf_counter() - t0
    wide = Console(width=150)
    wide.print(windows_table(result))
    wide.print(summary_table(result))
    wide.print(DEFINITIONS)
    ours = [w.seconds["gridsight"] for w in result.scored()]
    mstl_s = [w.seconds["mstl"] for w in result.scored() if "mstl" in w.seconds]
    fitted = (len(list(cache.glob("*/*.npy"))) if cache.exists() else 0) - before
    console.print(
        f"protocol wall {wall:.0f} s for {len(result.windows)} windows ({len(result.scored())} scored); "
        f"train + forecast (ours) per window median {statistics.median(ours):.1f} s "
        f"(min {min(ours):.1f}, max {max(ours):.1f})"
        + (
            f"; MSTL per window median {statistics.median(mstl_s):.1f} s, {fitted} series fitted cold, "
            "the rest from the cache"
            if mstl_s
            else ""
        )
    )
    if json_out is not None:
        figures = protocol_json(result)
        figures["wall_seconds"] = wall
        json_out.write_text(json.dumps(figures, indent=1, default=str))
        console.print(f"figures -> {json_out}")


def bench_mstl_cost(data: Path, series: int) -> None:
    """Where one MSTL(24, 168) fit + forecast spends its time: the decomposition vs the trend model."""
    from statsforecast.models import MSTL
    from statsforecast.mstl import mstl as decompose

    panel = build_panel(load_energy_csv(data / "meters_2019_hourly.csv.gz"))
    pos = panel.position(pd.Timestamp("2019-11-17"))
    hists = [
        pd.Series(panel.kwh[d, pos - MSTL_HISTORY_HOURS : pos]).interpolate(limit_direction="both").to_numpy()
        for d in range(min(series, len(panel.device_ids)))
    ]
    MSTL(season_length=[24, 168]).forecast(y=hists[0], h=24)  # warm-up (imports, first call)
    full, decomp = [], []
    for y in hists:
        t0 = time.perf_counter()
        MSTL(season_length=[24, 168]).forecast(y=y, h=24)
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decompose(y, [24, 168])
        decomp.append(time.perf_counter() - t0)
    f, d = statistics.median(full), statistics.median(decomp)
    console.print(
        f"MSTL(24,168) on 8 weeks, one core, median of {len(hists)} series: {f:.3f} s per series; "
        f"decomposition (statsmodels STL x4) {d:.3f} s = {d / f:.0%}, AutoETS trend + rest {f - d:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--no-mstl", action="store_true")
    parser.add_argument("--skip", choices=["backtest", "service"], default=None)
    parser.add_argument("--protocol", action="store_true", help="Run the validation protocol instead.")
    parser.add_argument("--split", default="all", choices=["all", "development", "held-out", "tuned-before"])
    parser.add_argument("--origins", type=int, default=14, choices=[7, 14])
    parser.add_argument("--years", default=",".join(str(y) for y in YEARS))
    parser.add_argument("--json", type=Path, default=None, help="--protocol: write the figures here.")
    parser.add_argument("--mstl-cost", type=int, default=0, metavar="N", help="Time MSTL on N series.")
    args = parser.parse_args()
    if args.mstl_cost:
        bench_mstl_cost(args.data, args.mstl_cost)
    if args.protocol:
        years = [int(y) for y in args.years.split(",")]
        bench_protocol(args.data, args.split, args.origins, not args.no_mstl, years, args.json)
    if args.protocol or args.mstl_cost:
        console.print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        return
    from shared.settings import Settings

    cache = Settings().home / "cache" / "mstl"
    if args.skip != "backtest":
        bench_backtest(args.data, args.repeats, not args.no_mstl, cache)
    if args.skip != "service":
        bench_service(args.data, args.devices, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
