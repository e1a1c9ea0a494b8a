"""`gridsight up | status | dead-letters | demo`: the embedded runtime from the command line."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.demo import DemoReport, demo_settings, run_demo
from infra.local.runtime_status import RuntimeStatus, collect_status
from infra.local.supervisor import StackOptions, Supervisor, stack_specs
from services.chat.dashboard.link import dashboard_url
from shared.bus.local import QueueStore
from shared.settings import Settings

__all__ = ["register"]

Devices = Annotated[int, typer.Option("--devices", help="Simulated fleet size.")]
Days = Annotated[int, typer.Option("--days", help="Days of history the simulator releases.")]
Seed = Annotated[int, typer.Option("--seed", help="Same seed, same fleet.")]
EmulatedCloud = Annotated[
    bool,
    typer.Option(
        "--emulated-cloud",
        help="Run on the Pub/Sub, BigQuery and Cloud Storage emulators instead of the embedded default.",
    ),
]

dead_app = typer.Typer(help="Messages that ran out of delivery attempts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("status")(status)
    app.command("demo")(demo)
    app.add_typer(dead_app, name="dead-letters")


def up(devices: Devices = 50, days: Days = 28, seed: Seed = 7, emulated_cloud: EmulatedCloud = False) -> None:
    """Run the whole local stack in the foreground; Ctrl-C stops it cleanly."""
    console = Console()
    settings = Settings()
    if emulated_cloud:
        from infra.local import emulated

        emulated.up(
            console, emulated.emulated_settings(settings), StackOptions(devices=devices, days=days, seed=seed)
        )
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stack = Supervisor(settings, stack_specs(settings, StackOptions(devices=devices, days=days, seed=seed)))
    try:
        with console.status("starting the local stack"):
            stack.start()
            stack.wait_healthy()
        table = Table(title=f"gridsight stack up (state in {settings.home})")
        for column in ("process", "pid", "address", "log"):
            table.add_column(column)
        for name, child in stack.children.items():
            address = f"http://127.0.0.1:{child.spec.port}" if child.spec.port else "-"
            pid = str(child.proc.pid) if child.proc else "-"
            table.add_row(name, pid, address, str(stack.log_dir / f"{name}.log"))
        console.print(table)
        if "chat" in stack.children:
            console.print(f"dashboard: [bold]{dashboard_url(settings)}[/]")
        console.print("next: [bold]gridsight sync[/] in another terminal; Ctrl-C here stops everything")
        while not stop.wait(1.0):
            for name in stack.check():
                console.print(f"[yellow]{name} exited and was restarted[/]")
    finally:
        with console.status("stopping"):
            stack.stop()
        console.print("stopped")


def status(runs: Annotated[int, typer.Option("--runs", help="Recent pipeline runs to show.")] = 15) -> None:
    """Processes, queue depth per subscription, dead letters and recent pipeline runs."""
    print_status(Console(), collect_status(Settings(), runs=runs))


@dead_app.command("list")
def dead_list() -> None:
    """Show dead-lettered messages."""
    console = Console()
    _print_dead_letters(console, collect_status(Settings(), runs=0))


@dead_app.command("replay")
def dead_replay(
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription.")
    ] = None,
) -> None:
    """Deliver dead-lettered messages again (after fixing the cause), with a fresh attempt budget."""
    settings = Settings()
    store = QueueStore.open(settings)
    try:
        if subscription is not None and subscription not in store.topology.subscriptions:
            raise typer.BadParameter(f"unknown subscription {subscription!r}")
        count = store.replay_dead_letters(subscription)
    finally:
        store.close()
    Console().print(f"{count} message(s) queued for redelivery; the dispatcher (gridsight up) delivers them")


def demo(
    devices: Devices = 50,
    days: Days = 28,
    seed: Seed = 7,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each stage.")] = 900,
    emulated_cloud: EmulatedCloud = False,
) -> None:
    """up + sync + wait until every event settled + report + stop; state stays in the home folder."""
    console = Console()
    settings = demo_settings(Settings())
    if emulated_cloud:
        from infra.local import emulated

        emulated.demo(
            console,
            emulated.emulated_settings(settings),
            StackOptions(devices=devices, days=days, seed=seed),
            timeout,
        )
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("demo", total=None)
        report = run_demo(
            settings,
            StackOptions(devices=devices, days=days, seed=seed),
            lambda text: bar.update(task, description=text),
            timeout_s=timeout,
        )
    print_demo_report(console, report, settings)


# --- printing --------------------------------------------------------------------------------------
def print_status(console: Console, state: RuntimeStatus) -> None:
    if state.processes:
        table = Table(title="processes")
        for column in ("process", "pid", "port", "alive"):
            table.add_column(column)
        for name, entry in state.processes.items():
            alive = "[green]yes[/]" if entry.get("alive") else "[red]no[/]"
            table.add_row(name, str(entry.get("pid")), str(entry.get("port") or "-"), alive)
        console.print(table)
    else:
        console.print("no stack running from this home (start one with [bold]gridsight up[/])")
    queue = Table(title="queue (per subscription)")
    for column in ("subscription", "due", "retrying", "in flight", "acked", "dead"):
        queue.add_column(column, justify="right" if column != "subscription" else "left")
    for s in state.queue:
        queue.add_row(
            s.subscription, str(s.pending), str(s.retrying), str(s.in_flight), str(s.acked), str(s.dead)
        )
    console.print(queue)
    _print_dead_letters(console, state)
    if state.warehouse_error:
        console.print(f"[yellow]pipeline runs unavailable:[/] {state.warehouse_error}")
        return
    runs = Table(title="recent pipeline runs")
    for column in ("started (UTC)", "handler", "status", "key", "attempt", "rows", "detail"):
        runs.add_column(column)
    for run in state.runs:
        colour = {"succeeded": "green", "failed": "red"}.get(run.status, "white")
        runs.add_row(
            run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            run.handler,
            f"[{colour}]{run.status}[/]",
            run.dedupe_key[:40],
            str(run.delivery_attempt or "-"),
            str(run.rows_written if run.rows_written is not None else "-"),
            (run.detail or "")[:60],
        )
    console.print(runs)


def _print_dead_letters(console: Console, state: RuntimeStatus) -> None:
    if not state.dead_letters:
        console.print("dead letters: none")
        return
    table = Table(title="dead letters (replay: gridsight dead-letters replay)")
    for column in ("dead-letter topic", "message", "event", "attempts", "last status", "last error"):
        table.add_column(column)
    for d in state.dead_letters:
        table.add_row(
            d.topic,
            d.message_id[:12],
            d.event_type or "-",
            str(d.attempts),
            str(d.last_status or "-"),
            (d.last_error or "")[:60],
        )
    console.print(table)


def print_demo_report(console: Console, report: DemoReport, settings: Settings) -> None:
    console.rule("gridsight demo report")
    console.print(f"sync {report.sync_id[:8]} landed: {report.sync_rows}")
    rows = Table(title="rows per table")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for table, count in report.status.table_rows.items():
        rows.add_row(table, f"{count:,}")
    console.print(rows)
    counts = Table(title="pipeline runs (handler/status)")
    counts.add_column("handler/status")
    counts.add_column("runs", justify="right")
    for key, count in report.status.run_counts.items():
        counts.add_row(key, str(count))
    console.print(counts)
    _print_dead_letters(console, report.status)
    if report.replayed_dead_letters:
        console.print(f"replayed {report.replayed_dead_letters} forecast delivery(ies) after training")
    console.print(f"stage times (s since start): {report.durations_s}")
    console.print(
        f"state kept in {settings.home}: try [bold]gridsight query[/], [bold]gridsight chat[/], "
        "[bold]gridsight status[/], or [bold]gridsight up[/] + [bold]gridsight sync[/] for an incremental run"
    )
    console.print(f"dashboard (while [bold]gridsight up[/] runs): [bold]{dashboard_url(settings)}[/]")
