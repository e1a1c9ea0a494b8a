"""`gridsight anomaly score|evaluate|plot`: the anomaly detectors on CSV files, measured against
labels and drawn, with the same code the anomaly service runs on the warehouse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register"]

anomaly_app = typer.Typer(help="Score, evaluate and plot anomalies.", no_args_is_help=True)
console = Console(width=120)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """2: a file given on the command line is unusable (a bad value); 1: the warehouse lacks data."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=code)


@anomaly_app.command("score")
def score(
    energy: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV with meter_id,timestamp_utc,kwh (hourly).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            dir_okay=False, help="Where to write meter_id,timestamp_utc,score,is_anomaly,anomaly_type."
        ),
    ],
    weather: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Optional weather CSV; validated, not used by the detectors."
        ),
    ] = None,
) -> None:
    """Score every input hour causally (an hour's score uses only data up to that hour)."""
    from services.anomaly.csvscore import load_energy_csv, load_weather_csv, score_energy

    with _progress() as progress:
        task = progress.add_task("reading energy", total=None)
        try:
            frame = load_energy_csv(energy)
            if weather is not None:
                load_weather_csv(weather)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        progress.update(
            task, description=f"scoring {frame['device_id'].nunique()} meters, {len(frame):,} hours"
        )
        scores = score_energy(frame)
        progress.update(task, description="writing scores")
        out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(out, index=False)
    console.print(f"{len(scores):,} hours scored, {int(scores['is_anomaly'].sum()):,} flagged -> {out}")


def metrics_table(rows: list, title: str = "anomaly evaluation (point-wise and event-wise)") -> Table:
    """One table for `gridsight anomaly evaluate` and bench/bench_anomaly.py, so the two read alike."""
    table = Table(title=title)
    for col in ("method", "AUC", "P", "R", "F1", "ev P", "ev R", "ev F1", "flagged"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for m in rows:
        table.add_row(
            m.method,
            f"{m.roc_auc:.3f}",
            f"{m.point_precision:.3f}",
            f"{m.point_recall:.3f}",
            f"{m.point_f1:.3f}",
            f"{m.event_precision:.3f}",
            f"{m.event_recall:.3f}",
            f"{m.event_f1:.3f}",
            f"{m.flagged_hours:,}",
        )
    return table


def _kind_table(rows: list) -> Table:
    kinds = sorted({k for m in rows for k in m.recall_by_kind})
    table = Table(title="recall by kind: events found (hours flagged)")
    table.add_column("method")
    for k in kinds:
        table.add_column(k, justify="right")
    for m in rows:
        cells = [
            f"{m.recall_by_kind.get(k, float('nan')):.2f} ({m.point_recall_by_kind.get(k, float('nan')):.2f})"
            for k in kinds
        ]
        table.add_row(m.method, *cells)
    return table


@anomaly_app.command("evaluate")
def evaluate(
    scores: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Output of `gridsight anomaly score`.")
    ],
    labels: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="CSV with meter_id,timestamp_utc,kwh,label[,anomaly_kind]."
        ),
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", dir_okay=False, help="Also write the metrics as JSON.")
    ] = None,
) -> None:
    """Precision/recall/F1 (point and event) and ROC-AUC, beside two baselines from the same run."""
    from services.anomaly.evaluate import (
        evaluate_scores,
        isolation_forest_scores,
        join_scores,
        label_events,
        load_labels,
        rolling_z_scores,
    )

    with _progress() as progress:
        task = progress.add_task("reading", total=None)
        try:
            truth = load_labels(labels)
            joined = join_scores(pd.read_csv(scores), truth)
        except (ValueError, OSError, KeyError) as exc:
            raise _fail(str(exc)) from exc
        if "kwh" not in joined.columns:
            raise _fail("labels file needs a kwh column to compute the baselines")
        events = label_events(truth)
        rows = [
            evaluate_scores(
                "gridsight", joined, joined["score"].to_numpy(), joined["is_anomaly"].to_numpy(bool), events
            )
        ]
        progress.update(task, description="baseline: rolling robust z (causal, 168 h)")
        z, z_flag = rolling_z_scores(joined)
        rows.append(evaluate_scores("rolling z", joined, z, z_flag, events))
        progress.update(task, description="baseline: isolation forest (fitted on all hours)")
        iso, iso_flag = isolation_forest_scores(joined)
        rows.append(evaluate_scores("iso forest", joined, iso, iso_flag, events))
    console.print(f"{len(joined):,} hours, {int(joined['label'].sum()):,} labelled, {len(events)} events")
    console.print(metrics_table(rows))
    console.print(_kind_table(rows))
    if json_out is not None:
        json_out.write_text(pd.Series([m.model_dump() for m in rows]).to_json(orient="values", indent=1))


@anomaly_app.command("plot")
def plot(
    device: Annotated[str, typer.Option(help="Device (meter_id) to draw.")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="PNG to write.")] = Path("anomalies.png"),
    energy: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Score this CSV (meter_id,timestamp_utc,kwh[,label]); default: the warehouse.",
        ),
    ] = None,
    start: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day to draw (UTC), e.g. 2019-03-01.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day after the last one to draw (UTC).")
    ] = None,
) -> None:
    """PNG of a device's load and expected load, its incidents shaded by type."""
    from services.anomaly.plot import plot_incidents

    if start is not None and end is not None and end <= start:
        raise typer.BadParameter(f"{end:%Y-%m-%d} is not after --start {start:%Y-%m-%d}", param_hint="--end")
    lo = pd.Timestamp(start, tz="UTC") if start else None
    hi = pd.Timestamp(end, tz="UTC") if end else None
    labels = None
    if energy is not None:
        load, incidents, labels = _csv_view(energy, device)
    else:
        load, incidents = _warehouse_view(device, lo, hi)
    lo = lo if lo is not None else load["hour"].min()
    hi = hi if hi is not None else load["hour"].max() + pd.Timedelta(hours=1)
    load = load[(load["hour"] >= lo) & (load["hour"] < hi)]
    incidents = incidents[(incidents["end_hour"] > lo) & (incidents["start_hour"] < hi)]
    if labels is not None:
        labels = labels[(labels["hour"] >= lo) & (labels["hour"] < hi)]
    plot_incidents(load, incidents, out, title=f"{device}: {len(incidents)} incidents", labels=labels)
    console.print(
        f"{len(incidents)} incidents; {int(np.isfinite(load['actual']).sum()):,} hours drawn -> {out}"
    )


def _csv_view(energy: Path, device: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    from services.anomaly.combine import group_incidents, rank_hours
    from services.anomaly.csvscore import load_energy_csv
    from services.anomaly.detectors import panel_from_long, run_detectors

    try:
        frame = load_energy_csv(energy)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if device not in set(frame["device_id"]):
        raise _fail(f"meter {device!r} is not in {energy}")
    panel = panel_from_long(frame)
    base, findings = run_detectors(panel)
    ranked = rank_hours(panel, findings)
    col = panel.devices.index(device)
    load = pd.DataFrame(
        {"hour": panel.hours, "actual": panel.energy_kwh[:, col], "expected": base.expected[:, col]}
    )
    incidents = group_incidents(ranked[ranked["device_id"] == device].reset_index(drop=True), findings)
    raw = pd.read_csv(energy)
    labels = None
    if "label" in raw.columns:
        sel = raw[raw["meter_id"].astype(str) == device]
        labels = pd.DataFrame({"hour": pd.to_datetime(sel["timestamp_utc"], utc=True), "label": sel["label"]})
    return load, incidents, labels


def _warehouse_view(
    device: str, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from services.anomaly.scoring import device_view
    from shared.errors import GridsightError
    from shared.settings import Settings
    from shared.warehouse import open_warehouse

    try:
        with open_warehouse(Settings()) as wh:
            return device_view(
                wh,
                device,
                start=start.to_pydatetime() if start is not None else None,
                end=end.to_pydatetime() if end is not None else None,
            )
    except GridsightError as exc:
        raise _fail(str(exc), code=1) from exc


def register(app: typer.Typer) -> None:
    app.add_typer(anomaly_app, name="anomaly")
