"""`gridsight simulator serve|truth|advance`: the smart-meter vendor API on this machine."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Annotated
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import typer
from rich.progress import BarColumn, Progress, TextColumn

from infra.local.commands.errors import fail, positive
from infra.local.commands.output import terminal
from shared.settings import REPO_ROOT, Settings
from simulator.faults import FaultPolicy
from simulator.feed import Source
from simulator.fleet import Fleet, FleetSpec, iso
from simulator.replay import Replay
from simulator.server import SimulatorServer, VendorApi

__all__ = ["register"]

DEFAULT_WEATHER = REPO_ROOT.parent / "shared" / "data" / "weather_2019_hourly.csv.gz"

sim_app = typer.Typer(help="The smart-meter vendor API simulator.", no_args_is_help=True)

# The ranges are FleetSpec's, so a bad value is a usage error here rather than a pydantic dump later.
Devices = Annotated[int, typer.Option("--devices", min=1, max=100_000, help="Fleet size.")]
Days = Annotated[
    float, typer.Option("--days", callback=positive, max=3660, help="Days of history released at start.")
]
Interval = Annotated[int, typer.Option("--interval-minutes", min=1, max=1440, help="Reading interval.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Same seed, same data.")]
Share = dict(min=0.0, max=1.0)
MAX_ADVANCE_H = 24 * 366  # the simulator's own limit (simulator/server.py)


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="simulator")


@sim_app.command("serve")
def serve(
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Default: settings.simulator_port.")
    ] = None,
    devices: Devices = 20,
    days: Days = 3,
    interval_minutes: Interval = 15,
    seed: Seed = 42,
    fault_rate: Annotated[
        float, typer.Option("--fault-rate", **Share, help="Share of 429/5xx/slow responses.")
    ] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option("--malformed-rate", **Share, help="Share of malformed records.")
    ] = 0.002,
    late_share: Annotated[
        float, typer.Option("--late-share", **Share, help="Devices uploading late backlogs.")
    ] = 0.1,
    decommission_share: Annotated[float, typer.Option("--decommission-share", **Share)] = 0.05,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Default: settings.simulator_api_key.")
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            exists=True,
            dir_okay=False,
            help="Serve a meters CSV (meter_id,timestamp_utc,kwh) instead.",
        ),
    ] = None,
    weather: Annotated[
        Path | None,
        typer.Option(
            "--weather",
            exists=True,
            dir_okay=False,
            help=f"Weather CSV for --replay (default {DEFAULT_WEATHER}).",
        ),
    ] = None,
) -> None:
    """Serve the vendor API on 127.0.0.1 until interrupted."""
    settings = Settings()
    if api_key is not None and not api_key.strip():
        raise typer.BadParameter("the API key cannot be empty", param_hint="--api-key")
    source: Source
    if replay is not None:
        source = load_replay(replay, weather or DEFAULT_WEATHER, days)
    else:
        source = Fleet(
            FleetSpec(
                devices=devices,
                days=days,
                interval_minutes=interval_minutes,
                seed=seed,
                malformed_rate=malformed_rate,
                late_share=late_share,
                decommission_share=decommission_share,
            )
        )
    key = api_key or settings.simulator_api_key.get_secret_value()
    port = port or settings.simulator_port
    try:
        server = SimulatorServer(VendorApi(source, key, FaultPolicy(rate=fault_rate, seed=seed)), port=port)
    except OSError as exc:
        raise fail(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
            "is another simulator or `gridsight up` running? Stop it, or pick another --port "
            "(and set GRIDSIGHT_SIMULATOR_PORT for `gridsight sync`)",
        ) from exc
    terminal().print(
        f"vendor API on [bold]{server.url}[/] (simulated now {iso(source.initial_now)}); Ctrl-C stops"
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@sim_app.command("truth")
def truth(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="CSV file for the labelled anomalies.")],
    devices: Devices = 20,
    days: Days = 3,
    interval_minutes: Interval = 15,
    seed: Seed = 42,
    advanced_hours: Annotated[
        float, typer.Option("--advanced-hours", min=0, help="Clock advances since start.")
    ] = 0.0,
) -> None:
    """Write the injected anomalies' ground truth (never served by the API)."""
    fleet = Fleet(FleetSpec(devices=devices, days=days, interval_minutes=interval_minutes, seed=seed))
    now = fleet.initial_now + int(advanced_hours * 3600)
    with Progress(
        TextColumn("truth"), BarColumn(), TextColumn("{task.completed}/{task.total} devices")
    ) as bar:
        task = bar.add_task("devices", total=devices)
        rows = fleet.truth(now, progress=lambda: bar.advance(task))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["device_id", "anomaly_type", "start", "end", "magnitude"])
        for ev in sorted(rows, key=lambda e: (e.device_id, e.start)):
            writer.writerow([ev.device_id, ev.kind, iso(ev.start), iso(ev.end), round(ev.magnitude, 4)])
    terminal().print(f"{len(rows)} anomalies over {devices} devices up to {iso(now)} -> {out}")


@sim_app.command("advance")
def advance(
    hours: Annotated[
        float,
        typer.Option(
            "--hours", callback=positive, max=MAX_ADVANCE_H, help="Release this many more hours of data."
        ),
    ] = 24,
    url: Annotated[
        str | None, typer.Option("--url", help="Default: http://127.0.0.1:<simulator_port>.")
    ] = None,
) -> None:
    """Move a running simulator's clock forward (for a second, incremental sync)."""
    settings = Settings()
    base = url or f"http://127.0.0.1:{settings.simulator_port}"
    if not base.startswith(("http://", "https://")):
        raise typer.BadParameter("--url must be http(s)://")
    request = Request(  # noqa: S310 (scheme checked above)
        f"{base}/_admin/advance",
        data=json.dumps({"hours": hours}).encode(),
        headers={
            "Authorization": f"Bearer {settings.simulator_api_key.get_secret_value()}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urlopen(request, timeout=10) as response:  # noqa: S310 (scheme checked above)
            terminal().print(f"simulated now: {json.loads(response.read())['now']}")
    except HTTPError as exc:
        raise fail(f"the simulator at {base} refused: {_error_text(exc)}") from exc
    except (URLError, OSError) as exc:
        raise fail(
            f"no simulator answering at {base}",
            "start it with `gridsight simulator serve` or `gridsight up` (or pass --url)",
        ) from exc


def _error_text(exc: HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


def load_replay(meters: Path, weather: Path | None, days: float) -> Replay:
    """The real data set as a source; an unreadable file is the user's to fix, not a traceback."""
    try:
        return Replay(meters, weather, days)
    except (ValueError, KeyError, OSError) as exc:
        raise fail(
            f"cannot replay {meters}: {exc}",
            "it needs meter_id,timestamp_utc,kwh columns (as ../shared/data/meters_2019_hourly.csv.gz)",
        ) from exc


@sim_app.command("plot")
def plot(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="PNG file.")],
    device: Annotated[int, typer.Option("--device", min=0, help="Device index (dev-00007 is 7).")] = 0,
    devices: Devices = 20,
    days: Days = 7,
    interval_minutes: Interval = 15,
    seed: Seed = 42,
) -> None:
    """Draw one simulated device's load, temperature and voltage with its anomalies shaded."""
    from simulator.plot import plot_device  # matplotlib is slow to import; only this verb needs it

    if device >= devices:
        raise typer.BadParameter(f"the fleet has devices 0..{devices - 1}", param_hint="--device")
    fleet = Fleet(FleetSpec(devices=devices, days=days, interval_minutes=interval_minutes, seed=seed))
    plot_device(fleet, fleet.device(device), out)
    terminal().print(f"wrote {out}")
