"""`gridsight sync`: one connector sync through the real `fivetran debug` runner."""

from __future__ import annotations

import re

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.sync import SyncResult, run_sync
from infra.local.webhook_client import WebhookDeliveryError, send_sync_end
from shared.settings import Settings

__all__ = ["register"]

_CONNECTOR_LINE = re.compile(r"(?:connector|sdk)\s+(?:\S+\s+)?(.*)$")


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)


def sync(
    webhook: bool = typer.Option(
        True, "--webhook/--no-webhook", help="Then send the signed sync_end webhook, as Fivetran does."
    ),
) -> None:
    """Pull the vendor API into the raw tables (files/warehouse.db under the state home)."""
    console = Console()
    settings = Settings()
    with Progress(
        SpinnerColumn(), TextColumn("[bold]sync[/] {task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("starting fivetran debug", total=None)

        def show(line: str) -> None:
            match = _CONNECTOR_LINE.search(line)
            if match and match.group(1):
                bar.update(task, description=match.group(1)[:80])

        result = run_sync(settings, on_line=show)
    _print_result(console, result)
    if not result.ok:
        raise typer.Exit(1)
    if webhook:
        _notify(console, settings, result.sync_id)


def _notify(console: Console, settings: Settings, sync_id: str) -> None:
    """Fivetran's sync_end webhook: the local stack (gridsight up) takes it from here."""
    try:
        answer = send_sync_end(settings, sync_id=sync_id)
    except WebhookDeliveryError as exc:
        console.print(f"[yellow]webhook not delivered:[/] {exc}; raw tables landed, nothing refreshed")
        raise typer.Exit(2) from exc
    console.print(f"sync_end webhook: {answer['status']} (follow it with [bold]gridsight status[/])")


def _print_result(console: Console, result: SyncResult) -> None:
    if not result.ok:
        console.print(f"[red]sync failed:[/] {result.error}\n(full log: {result.log_path})")
        return
    table = Table(
        title=f"sync {result.sync_id[:8]} landed ({(result.ended_at - result.started_at).seconds} s)"
    )
    table.add_column("raw table")
    table.add_column("rows written", justify="right")
    for name, count in result.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"raw file: {result.raw_path}")
