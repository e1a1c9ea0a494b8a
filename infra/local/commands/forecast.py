"""`gridsight train`, `gridsight forecast backtest|plot|serve`: the forecaster from the command line,
with the same code the trainer job, the model server and the forecast service run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register"]

forecast_app = typer.Typer(help="Backtest, plot and serve the forecaster.", no_args_is_help=True)
console = Console(width=120)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """2: a file given on the command line is unusable (a bad value); 1: the warehouse lacks data."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=code)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )


def _reporter(progress: Progress):
    tasks: dict[str, TaskID] = {}

    def report(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = progress.add_task(step, total=total)
        progress.update(tasks[step], completed=done, total=total)

    return report


def _scores_table(title: str, scores: list) -> Table:
    table = Table(title=title)
    for col in (
        "model",
        "MASE",
        "CV(RMSE) %",
        "pinball p10/p50/p90",
        "sMAPE %",
        "p10–p90 coverage",
        "forecasts",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for s in scores:
        coverage = f"{s.coverage:.1%}" if s.coverage is not None else "—"
        pin = "/".join(f"{p:.3f}" for p in s.pinball) if s.pinball else "—"
        cv = f"{s.cv_rmse:.1f}" if s.cv_rmse is not None else "—"
        table.add_row(s.model, f"{s.mase:.3f}", cv, pin, f"{s.smape:.1f}", coverage, f"{s.forecasts:,}")
    return table


def train(
    energy: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Train from this CSV instead of the warehouse."),
    ] = None,
    weather: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Weather CSV for --energy.")
    ] = None,
    vertex: Annotated[bool, typer.Option(help="Submit a Vertex AI custom training job instead.")] = False,
) -> None:
    """Train a new model version (warehouse by default) into the model directory / bucket."""
    from services.forecast.training import submit_vertex_training, train_from_csv, train_from_warehouse
    from shared.settings import Settings

    settings = Settings()
    try:
        if vertex:
            console.print(f"submitted {submit_vertex_training(settings)}")
            return
        with _progress() as progress:
            report = _reporter(progress)
            if energy is not None:
                card = train_from_csv(settings, energy, weather, progress=report)
            else:
                card = train_from_warehouse(settings, progress=report)
    except ValueError as exc:
        raise _fail(str(exc), code=2 if energy is not None else 1) from exc
    console.print(f"model [bold]{card.version}[/bold]: {card.devices} devices, {card.training_rows:,} rows")
    for model, m in card.backtest.items():
        console.print(
            f"  holdout {model}: MASE {m['mase']:.3f}"
            + (f", coverage {m['coverage']:.1%}" if m.get("coverage") else "")
        )


def _years(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        years = [int(y) for y in value.split(",") if y.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a comma-separated list of years", param_hint="--years"
        ) from None
    if not years or any(y < 2000 or y > 2100 for y in years):
        raise typer.BadParameter(f"{value!r}: years must lie in 2000..2100", param_hint="--years")
    return years


def _run_protocol(
    energy: Path | None,
    weather: Path | None,
    data: Path,
    options: dict,
    json_out: Path | None,
) -> None:
    """`--protocol`: every window of every year, a model per window trained on data before it."""
    import json

    from services.forecast.backtest import build_panel, load_energy_csv, load_weather_csv
    from services.forecast.protocol import load_public_panel, run_protocol
    from services.forecast.protocol_report import DEFINITIONS, protocol_json, summary_table, windows_table
    from shared.settings import Settings

    try:
        if energy is not None:
            panel = build_panel(load_energy_csv(energy), load_weather_csv(weather) if weather else None)
        else:
            panel = load_public_panel(data)
        with _progress() as progress:
            result = run_protocol(
                panel, cache_dir=Settings().home / "cache" / "mstl", progress=_reporter(progress), **options
            )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    wide = Console(width=150)
    wide.print(windows_table(result))
    wide.print(summary_table(result))
    wide.print(DEFINITIONS)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(protocol_json(result), indent=1, default=str))
        console.print(f"protocol figures -> {json_out}")


@forecast_app.command("backtest")
def backtest(
    energy: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV meter_id,timestamp_utc,kwh (hourly)."),
    ] = None,
    start: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First origin day (00:00 UTC).")
    ] = None,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last origin day.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="Where to write meter_id,origin_utc,timestamp_utc,p10,p50,p90."),
    ] = None,
    weather: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="CSV timestamp_utc,air_temperature_c.")
    ] = None,
    mstl: Annotated[bool, typer.Option(help="Also score statsforecast MSTL (slow; cached).")] = True,
    protocol: Annotated[
        bool,
        typer.Option(
            "--protocol",
            help="The validation protocol: term/exam/summer/Christmas windows on every year, "
            "a model per window trained on data before it (--energy, or the public data in --data).",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="--protocol: folder with the public meter files [../shared/data].",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="--protocol: all, development, held-out or tuned-before windows.")
    ] = "all",
    years: Annotated[
        str | None, typer.Option(help="--protocol: comma-separated years (default all).")
    ] = None,
    windows: Annotated[
        str | None, typer.Option(help="--protocol: comma-separated lent,exams,summer,michaelmas,christmas.")
    ] = None,
    origins: Annotated[
        int, typer.Option(help="--protocol: 14 (daily) or 7 (every other day) origins per window.")
    ] = 14,
    train_days: Annotated[
        int | None,
        typer.Option(
            min=30, help="--protocol: train on this many days before each window [all history, as live]."
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", dir_okay=False, help="--protocol: also write the figures as JSON."),
    ] = None,
) -> None:
    """Forecast each day start..end at 00:00 UTC from earlier data only; compare with baselines.

    With --protocol: the fixed windows of every year instead (see services/forecast/protocol.py)."""
    from services.forecast.backtest import build_panel, load_energy_csv, load_weather_csv, run_backtest
    from services.forecast.protocol import WINDOW_KINDS, YEARS, protocol_windows
    from shared.settings import REPO_ROOT, Settings

    kinds = [k.strip() for k in windows.split(",") if k.strip()] if windows else list(WINDOW_KINDS)
    options = {
        "split": split,
        "years": _years(years) or list(YEARS),
        "kinds": kinds,
        "origins": origins,
        "mstl": mstl,
        "train_days": train_days,
    }
    try:
        protocol_windows(options["years"], kinds, split, origins)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if protocol:
        _run_protocol(energy, weather, data or REPO_ROOT.parent / "shared" / "data", options, json_out)
        return
    for name, value in (("--energy", energy), ("--start", start), ("--end", end), ("--out", out)):
        if value is None:
            raise typer.BadParameter("required unless --protocol", param_hint=name)
    if end < start:
        raise typer.BadParameter(f"{end:%Y-%m-%d} is before --start {start:%Y-%m-%d}", param_hint="--end")
    try:
        panel = build_panel(load_energy_csv(energy), load_weather_csv(weather) if weather else None)
        with _progress() as progress:
            result = run_backtest(
                panel,
                start.date(),
                end.date(),
                mstl=mstl,
                cache_dir=Settings().home / "cache" / "mstl",
                progress=_reporter(progress),
            )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = result.forecasts.copy()
    for col in ("origin_utc", "timestamp_utc"):
        frame[col] = frame[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_csv(out, index=False, float_format="%.4f")
    title = f"{len(panel.device_ids)} meters, origins {start:%Y-%m-%d}..{end:%Y-%m-%d} 00:00 UTC, 24 h ahead"
    console.print(_scores_table(title, result.scores))
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"{len(frame):,} forecasts -> {out}  ({timings})")


@forecast_app.command("plot")
def plot(
    forecasts: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Backtest output CSV.")],
    energy: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="The actuals: CSV meter_id,timestamp_utc,kwh.")
    ],
    out: Annotated[Path, typer.Option(dir_okay=False, help="PNG to write.")],
    meter: Annotated[list[str] | None, typer.Option(help="Meter(s) to draw (default: the first 4).")] = None,
) -> None:
    """Draw actual vs p50 with the p10–p90 band."""
    import pandas as pd

    from services.forecast.backtest import load_energy_csv
    from services.forecast.plot import plot_forecasts

    try:
        fc = pd.read_csv(forecasts, dtype={"meter_id": str})
        missing = {"meter_id", "timestamp_utc", "p10", "p50", "p90"} - set(fc.columns)
        if missing:
            raise ValueError(f"{forecasts}: missing column(s) {sorted(missing)}")
        path = plot_forecasts(fc, load_energy_csv(energy), out, meters=meter or None)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"plot -> {path}")


@forecast_app.command("serve")
def serve() -> None:
    """Run the model server (Vertex custom-container contract) on settings.model_server_port."""
    from infra.local.supervisor import ProcessSpec, ports_in_use
    from services.forecast.model_server import main
    from shared.settings import Settings

    port = Settings().model_server_port
    if ports_in_use([ProcessSpec(name="model-server", argv=[], port=port)]):
        raise _fail(f"port {port} is already in use; set GRIDSIGHT_MODEL_SERVER_PORT to a free one", code=1)
    main()


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(forecast_app, name="forecast")
