"""`gridsight refresh` and `gridsight query`: the warehouse from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.commands.output import format_value, terminal
from shared.errors import GridsightError
from shared.readonly_sql import ReadOnlyViolation, ensure_read_only
from shared.refresh import RefreshResult, refresh_features
from shared.settings import Settings
from shared.warehouse import open_warehouse
from shared.warehouse.models import ordered_models

__all__ = ["register"]

MAX_TABLE_ROWS = 200  # the terminal table shows this many; --json prints them all


def register(app: typer.Typer) -> None:
    app.command("refresh")(refresh)
    app.command("query")(query)


def refresh(
    full: Annotated[bool, typer.Option("--full", help="Rebuild every model from all raw data.")] = False,
) -> None:
    """Recompute the modelled tables from what the connector landed (incremental by default)."""
    console = terminal()
    steps = len(ordered_models())
    with Progress(
        TextColumn("[bold]refresh[/] {task.description:<24}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} models"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("starting", total=steps)
        seen: list[str] = []

        def advance(model: str) -> None:
            if seen:
                bar.advance(task)
            seen.append(model)
            bar.update(task, description=model)

        try:
            result = refresh_features(Settings(), full=full, progress=advance)
        except GridsightError as exc:
            console.print(f"[red]refresh failed:[/] {exc}")
            raise typer.Exit(1) from exc
        bar.update(task, completed=steps, description="done")
    _print_refresh(console, result)


def query(
    sql: Annotated[
        str, typer.Argument(help="One read-only GoogleSQL SELECT over raw.* / energy_analytics.*")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows (full precision) instead of a rounded table.")
    ] = False,
) -> None:
    """Run one read-only GoogleSQL query against the configured warehouse."""
    console = terminal()
    try:
        ensure_read_only(sql)
        with open_warehouse(Settings(), read_only=True) as wh:
            rows = wh.query(sql).to_pylist()
    except ReadOnlyViolation as exc:
        terminal(stderr=True).print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from exc
    except (GridsightError, ValueError) as exc:
        terminal(stderr=True).print(f"[red]query failed:[/] {exc}")
        raise typer.Exit(1) from exc
    except Exception as exc:  # the engine's own errors (unknown column, type mismatch): message only
        terminal(stderr=True).print(f"[red]query failed:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table(*(rows[0].keys() if rows else []), show_lines=False)
    for row in rows[:MAX_TABLE_ROWS]:
        table.add_row(*(format_value(v) for v in row.values()))
    console.print(table)
    shown = min(len(rows), MAX_TABLE_ROWS)
    console.print(
        f"{len(rows)} rows" + (f" ({shown} shown; use --json for all)" if shown < len(rows) else "")
    )


def _print_refresh(console: Console, result: RefreshResult) -> None:
    if result.skipped_reason:
        console.print(f"nothing to do: {result.skipped_reason}")
        return
    table = Table("model", "rows changed", "seconds", title="full rebuild" if result.full else "incremental")
    for model, changed in result.rows_changed.items():
        table.add_row(model, str(changed), f"{result.durations_s.get(model, 0):.2f}")
    console.print(table)
    if not result.has_changes:
        console.print("no changes since the last refresh")
        return
    console.print(
        f"window {result.window_start} .. {result.window_end}, {len(result.device_ids)} devices,"
        f" watermark {result.watermark}, refresh {result.refresh_id}"
    )
