"""`gridsight up | status | dead-letters | demo`: the embedded runtime from the command line."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.commands.errors import UserError, fail, positive
from infra.local.commands.output import terminal
from infra.local.demo import DemoError, DemoReport, demo_settings, run_demo
from infra.local.runtime_status import RuntimeStatus, collect_status
from infra.local.supervisor import (
    PortsInUse,
    StackFailed,
    StackOptions,
    StackRunning,
    Supervisor,
    stack_settings,
    stack_specs,
)
from services.chat.dashboard.link import dashboard_url
from shared.bus.local import QueueStore
from shared.settings import Settings

__all__ = ["register"]

Devices = Annotated[int, typer.Option("--devices", min=1, max=100_000, help="Simulated fleet size.")]
Days = Annotated[int, typer.Option("--days", min=1, max=3660, help="Days of history the simulator releases.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Same seed, same fleet.")]
Replay = Annotated[
    Path | None,
    typer.Option(
        "--replay",
        exists=True,
        dir_okay=False,
        help="Serve this real meters CSV (meter_id,timestamp_utc,kwh) instead of a simulated fleet; "
        "the connector starts at its first day.",
    ),
]
Weather = Annotated[
    Path | None, typer.Option("--weather", exists=True, dir_okay=False, help="Weather CSV for --replay.")
]
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


def stack_options(
    devices: int, days: int, seed: int, replay: Path | None, weather: Path | None
) -> StackOptions:
    """The options `up` and `demo` share, in one place (add a new stack-wide option here)."""
    if weather is not None and replay is None:
        raise typer.BadParameter("only applies with --replay", param_hint="--weather")
    return StackOptions(devices=devices, days=days, seed=seed, replay=replay, weather=weather)


def up(
    devices: Devices = 50,
    days: Days = 28,
    seed: Seed = 7,
    replay: Replay = None,
    weather: Weather = None,
    emulated_cloud: EmulatedCloud = False,
) -> None:
    """Run the whole local stack in the foreground; Ctrl-C stops it cleanly."""
    console = terminal()
    options = stack_options(devices, days, seed, replay, weather)
    settings = stack_settings(Settings(), options)
    if emulated_cloud:
        from infra.local import emulated

        emulated.up(console, emulated.emulated_settings(settings), options)
        return
    stack = Supervisor(settings, stack_specs(settings, options))
    claim_stack(stack)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        with console.status("starting the local stack"):
            stack.start()
            stack.wait_healthy()
        print_stack(console, stack, settings)
        if replay is not None:
            console.print(f"replaying {replay}: the connector starts at {settings.connector_start_date}")
        console.print(
            f"next: [bold]{cli_name()} sync[/] in another terminal{_home_note(settings)}; "
            "Ctrl-C here stops everything"
        )
        while not stop.wait(1.0):
            for name in stack.check():
                console.print(f"[yellow]{name} exited and was restarted[/]")
    except StackFailed as exc:
        raise fail(str(exc), "the log above says why; fix it and run `gridsight up` again") from exc
    finally:
        with console.status("stopping"):
            stack.stop()
        console.print("stopped")


def claim_stack(stack: Supervisor) -> None:
    """This home's stack lock and the ports, before anything starts."""
    try:
        stack.claim()
    except (StackRunning, PortsInUse) as exc:
        raise stack_error(exc) from exc


def stack_error(exc: StackRunning | PortsInUse) -> UserError:
    """What to tell the user when the home or the ports are taken (up and demo alike)."""
    if isinstance(exc, StackRunning):
        urls = ", ".join(f"{name} {url}" for name, url in exc.urls.items())
        stop_hint = f" (or `kill {exc.supervisor_pid}`)" if exc.supervisor_pid else ""
        return fail(
            f"{exc}: {urls or 'no addresses recorded'}",
            f"use that one, stop it with Ctrl-C in its terminal{stop_hint}, "
            "or give this one its own GRIDSIGHT_HOME and GRIDSIGHT_*_PORT variables",
        )
    variables = " ".join(f"GRIDSIGHT_{name.upper().replace('-', '_')}_PORT" for name in exc.taken)
    return fail(
        f"{exc}; nothing was started",
        f"stop what listens there, or choose other ports with {variables}",
    )


def print_stack(console: Console, stack: Supervisor, settings: Settings) -> None:
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


def status(
    runs: Annotated[
        int, typer.Option("--runs", min=0, max=10_000, help="Recent pipeline runs to show.")
    ] = 15,
) -> None:
    """Processes, queue depth per subscription, dead letters and recent pipeline runs."""
    print_status(terminal(), collect_status(Settings(), runs=runs))


@dead_app.command("list")
def dead_list() -> None:
    """Show dead-lettered messages."""
    console = terminal()
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
    terminal().print(f"{count} message(s) queued for redelivery; the dispatcher (gridsight up) delivers them")


def demo(
    devices: Devices = 50,
    days: Days = 28,
    seed: Seed = 7,
    replay: Replay = None,
    weather: Weather = None,
    timeout: Annotated[
        float, typer.Option("--timeout", callback=positive, help="Seconds to wait for each stage.")
    ] = 900,
    emulated_cloud: EmulatedCloud = False,
) -> None:
    """up + sync + wait until every event settled + report + stop; state stays in the home folder."""
    console = terminal()
    options = stack_options(devices, days, seed, replay, weather)
    settings = stack_settings(demo_settings(Settings()), options)
    if emulated_cloud:
        from infra.local import emulated

        emulated.demo(console, emulated.emulated_settings(settings), options, timeout)
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("demo", total=None)
        try:
            report = run_demo(
                settings,
                options,
                lambda text: bar.update(task, description=text),
                timeout_s=timeout,
            )
        except (StackRunning, PortsInUse) as exc:
            raise stack_error(exc) from exc
        except (DemoError, StackFailed) as exc:
            raise fail(f"demo stopped: {exc}", f"logs are in {settings.home / 'logs'}") from exc
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
        if not any(entry.get("alive") for entry in state.processes.values()):
            console.print(
                "no stack running from this home: the one above stopped without cleaning up "
                "(start one with [bold]gridsight up[/])"
            )
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
    console.print(f"vendor data: {report.source}; the connector started at {settings.connector_start_date}")
    landed = Table(title=f"sync {report.sync_id[:8]}: rows the connector wrote")
    landed.add_column("raw table")
    landed.add_column("rows", justify="right")
    for table, count in report.sync_rows.items():
        landed.add_row(table, f"{count:,}")
    console.print(landed)
    rows = Table(title="rows per table")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    rows.add_column("what the count is")
    for table, count in report.status.table_rows.items():
        rows.add_row(table, f"{count:,}", report.counts_explained.get(table, ""))
    console.print(rows)
    counts = Table(title="pipeline runs")
    counts.add_column("handler")
    counts.add_column("status")
    counts.add_column("runs", justify="right")
    for key, count in report.status.run_counts.items():
        handler, _, status = key.partition("/")
        counts.add_row(handler, status, str(count))
    console.print(counts)
    if report.started_after_training:
        attempts = ", ".join(str(a) for a in report.forecast_attempts) or "none"
        console.print(
            f"{', '.join(report.started_after_training)} started once the first model was trained; "
            f"its deliveries waited in the queue meanwhile (delivery attempts per message: {attempts})"
        )
    _print_dead_letters(console, report.status)
    if report.replayed_dead_letters:
        console.print(f"replayed {report.replayed_dead_letters} forecast delivery(ies) after training")
    stages = Table(title="stage times")
    stages.add_column("stage")
    stages.add_column("done after (s)", justify="right")
    for stage, seconds in report.durations_s.items():
        stages.add_row(stage.replace("_", " "), f"{seconds:.1f}")
    console.print(stages)
    print_next_steps(console, settings)


def print_next_steps(console: Console, settings: Settings) -> None:
    """The last lines: exactly what to type next, with the CLI as this shell can find it."""
    cli = cli_name()
    say = functools.partial(console.print, soft_wrap=True)  # commands stay on one line, to copy
    say(f"state kept in {settings.home}{_home_note(settings)}. Next:")
    if cli != "gridsight":
        say(
            f"  (gridsight is not on your PATH: type [bold]{cli}[/], or first "
            f"[bold]source {Path(cli).parent.parent}/bin/activate[/] and then just gridsight)"
        )
    say(
        f'  [bold]{cli} query "SELECT device_id, ROUND(SUM(energy_kwh), 1) AS kwh FROM '
        'energy_analytics.hourly_consumption GROUP BY 1 ORDER BY 2 DESC LIMIT 5"[/]'
    )
    say(f'  [bold]{cli} chat "Which meter used the most last week?"[/]')
    say(f"  [bold]{cli} up[/]   (then {cli} sync in another terminal; dashboard {dashboard_url(settings)})")


def cli_name() -> str:
    """How this user can type the CLI: `gridsight` if the shell finds this very one, else its path
    (`.venv/bin/gridsight` after `make demo`, which does not activate the environment)."""
    here = Path(sys.executable).with_name("gridsight")
    found = shutil.which("gridsight")
    if found and Path(found).resolve() == here.resolve():
        return "gridsight"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def _home_note(settings: Settings) -> str:
    default = Settings.model_fields["home"].default
    if settings.home == default or "GRIDSIGHT_HOME" not in os.environ:
        return ""
    return f" (keep GRIDSIGHT_HOME={settings.home} set)"
