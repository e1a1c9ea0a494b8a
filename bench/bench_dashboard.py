"""Dashboard endpoint latency on a DuckDB warehouse the size of a small utility's fleet.

Builds `--devices` x `--days` of hourly_consumption (plus forecasts for the last two days and the
next one, and a few anomalies) in a temporary home through `open_warehouse` + `merge`, then times the
two JSON endpoints through the Flask test client (auth, unit of work under the lock, SQL, pydantic,
JSON): median and p95 over repeated calls, and the response size. Prints peak memory of the process.

    .venv/bin/python bench/bench_dashboard.py --devices 1000 --days 30
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from services.chat.dashboard import handle_dashboard
from shared.settings import Settings
from shared.warehouse import open_warehouse

END = datetime(2026, 11, 20, 14, tzinfo=UTC)
KEY = "bench-key"


def build(settings: Settings, devices: int, days: int, console: Console) -> None:
    rng = np.random.default_rng(7)
    hours = pd.date_range(end=END - timedelta(hours=1), periods=days * 24, freq="h", tz="UTC")
    ids = [f"dev-{i:05d}" for i in range(devices)]
    sites = pd.DataFrame({"site_id": [f"site-{i // 10:04d}" for i in range(0, devices, 10)]})
    sites["name"] = "Site " + sites.site_id
    dims = pd.DataFrame({"device_id": ids, "site_id": [f"site-{i // 10:04d}" for i in range(devices)]})
    dims["name"] = "Meter " + dims.device_id
    shape = 0.6 + 0.5 * np.sin((hours.hour.to_numpy() - 9) / 24 * 2 * np.pi)
    with Progress(console=console, transient=True) as progress, open_warehouse(settings) as wh:
        wh.merge("dim_site", sites, key=["site_id"])
        wh.merge("dim_device", dims, key=["device_id"])
        task = progress.add_task("hourly_consumption", total=devices)
        chunk = 100
        for start in range(0, devices, chunk):
            block = ids[start : start + chunk]
            energy = np.concatenate(
                [shape * (1 + rng.random()) + rng.normal(0, 0.05, len(hours)) for _ in block]
            )
            frame = pd.DataFrame(
                {
                    "device_id": np.repeat(block, len(hours)),
                    "site_id": np.repeat([f"site-{int(b[4:]) // 10:04d}" for b in block], len(hours)),
                    "hour": np.tile(hours, len(block)),
                    "energy_kwh": energy,
                    "avg_power_w": energy * 1000,
                    "reading_count": 4,
                    "coverage": 1.0,
                }
            )
            wh.merge("hourly_consumption", frame, key=["device_id", "hour"])
            progress.advance(task, len(block))
        fhours = pd.date_range(end=END + timedelta(hours=24), periods=72, freq="h", tz="UTC")
        fshape = 0.6 + 0.5 * np.sin((fhours.hour.to_numpy() - 9) / 24 * 2 * np.pi)
        forecasts = pd.DataFrame(
            {
                "device_id": np.repeat(ids, len(fhours)),
                "target_hour": np.tile(fhours, devices),
                "p50": np.tile(fshape, devices),
            }
        )
        forecasts["p10"] = forecasts.p50 * 0.8
        forecasts["p90"] = forecasts.p50 * 1.25
        wh.merge("forecasts", forecasts, key=["device_id", "target_hour"])
        picks = rng.choice(devices, size=max(1, devices // 20), replace=False)
        anomalies = pd.DataFrame(
            {
                "incident_id": [f"inc-{p}" for p in picks],
                "device_id": [ids[p] for p in picks],
                "start_hour": [END - timedelta(hours=int(rng.integers(2, 24 * min(days, 7)))) for _ in picks],
                "severity": "high",
                "explanation": "bench",
            }
        )
        anomalies["end_hour"] = anomalies.start_hour + timedelta(hours=2)
        wh.merge("anomalies", anomalies, key=["incident_id"])


def timed(client: flask.testing.FlaskClient, path: str, runs: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code} {response.get_data(as_text=True)}")
        size = len(response.get_data())
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as home:
        os.environ["GRIDSIGHT_HOME"] = home
        os.environ["GRIDSIGHT_CHAT_API_KEYS"] = KEY
        settings = Settings()
        started = time.perf_counter()
        build(settings, args.devices, args.days, console)
        build_s = time.perf_counter() - started
        app = flask.Flask("bench")

        @app.route("/<path:path>")
        def _all(path: str) -> flask.Response:
            return handle_dashboard(flask.request, settings) or flask.Response(status=404)

        client = app.test_client()
        rows = args.devices * args.days * 24
        size_mb = Path(settings.duckdb_path).stat().st_size / 1e6
        console.print(
            f"warehouse: {args.devices} devices x {args.days} days = {rows:,} hourly rows, "
            f"{size_mb:.0f} MB, built in {build_s:.1f} s"
        )
        fleet, fleet_bytes = timed(client, "/api/dashboard/fleet", args.runs)
        device_paths = [
            f"/api/dashboard/devices/dev-{random.Random(i).randrange(args.devices):05d}"
            for i in range(args.runs)
        ]
        device = []
        device_bytes = 0
        for path in device_paths:
            t, device_bytes = timed(client, path, 1)
            device += t
        for name, times, size in (("fleet", fleet, fleet_bytes), ("device (7 days)", device, device_bytes)):
            p95 = float(np.percentile(times, 95))
            console.print(
                f"{name:16s} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms   "
                f"({len(times)} calls, {size / 1e3:.0f} kB JSON)"
            )
        opens = []
        for _ in range(args.runs):
            started = time.perf_counter()
            with open_warehouse(settings):
                pass
            opens.append((time.perf_counter() - started) * 1000)
        console.print(
            f"of which open_warehouse alone (lock, connect, ensure schema): median "
            f"{statistics.median(opens):.1f} ms"
        )
        console.print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        console.print(f"peak memory (max RSS) {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
