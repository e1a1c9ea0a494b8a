"""`gridsight sync`: one connector sync through the real `fivetran debug` runner."""

from __future__ import annotations

import re

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.commands.errors import INTERRUPTED, fail
from infra.local.commands.output import terminal
from infra.local.supervisor import running_start_date
from infra.local.sync import (
    SyncResult,
    VendorApiUnavailable,
    check_vendor_api,
    default_configuration,
    run_sync,
    start_after_data,
)
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
    console = terminal()
    settings = Settings()
    recorded = running_start_date(settings)
    if recorded and "connector_start_date" not in settings.model_fields_set:
        settings = settings.model_copy(update={"connector_start_date": recorded})  # e.g. up --replay
    configuration = default_configuration(settings)
    try:
        as_of = check_vendor_api(configuration)
    except VendorApiUnavailable as exc:
        raise fail(str(exc), exc.hint) from exc
    if start_after_data(configuration, as_of):
        terminal(stderr=True).print(
            f"[yellow]warning:[/] the connector starts at {configuration['start_date']}, after everything "
            f"the vendor API has (its clock is {as_of}), so no readings will land.\n"
            "Set GRIDSIGHT_CONNECTOR_START_DATE to the data's first day (for the Cambridge meters "
            "2019-01-01), or use `gridsight up --replay PATH`, which sets it from the data."
        )
    with Progress(
        SpinnerColumn(), TextColumn("[bold]sync[/] {task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("starting fivetran debug", total=None)

        def show(line: str) -> None:
            match = _CONNECTOR_LINE.search(line)
            if match and match.group(1):
                bar.update(task, description=match.group(1)[:80])

        try:
            result = run_sync(settings, configuration=configuration, on_line=show)
        except KeyboardInterrupt as exc:
            raise fail(
                "sync interrupted; what it landed up to its last checkpoint is kept",
                "run `gridsight sync` again: it resumes from that checkpoint",
                exit_code=INTERRUPTED,
            ) from exc
    _print_result(console, result)
    if not result.ok:
        raise typer.Exit(1)  # _print_result said why and where the log is
    if webhook:
        _notify(console, settings, result.sync_id)


def _notify(console: Console, settings: Settings, sync_id: str) -> None:
    """Fivetran's sync_end webhook: the local stack (gridsight up) takes it from here."""
    try:
        answer = send_sync_end(settings, sync_id=sync_id)
    except WebhookDeliveryError as exc:
        raise fail(
            f"the raw tables landed, but the sync_end webhook was not delivered: {exc}",
            "with the stack up, `gridsight sync` again delivers it; without one, `gridsight refresh` "
            "updates the modelled tables (use --no-webhook to skip this step)",
        ) from exc
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
