"""`gridsight up|demo --emulated-cloud`: the same services on Google's emulators, not the embedded default.

| part            | embedded default (`gridsight demo`) | emulated cloud (this module)                   |
|-----------------|-------------------------------------|------------------------------------------------|
| events          | local dispatcher + SQLite queue     | official Pub/Sub emulator, push subscriptions  |
| warehouse       | DuckDB file                         | bqemulator through the official BigQuery client |
| model artefacts | `<home>/models`                     | Cloud Storage emulator, `gs://<bucket>/models`  |

Settings switch the backends (`bus_backend=pubsub`, `warehouse_backend=bigquery`, `model_bucket`),
never code. Topics and push subscriptions come from infra/events.yaml through
`shared.bus.pubsub_admin` (what Terraform's topology.tf creates in the cloud). The connector still
runs in `fivetran debug` and writes DuckDB; `land_raw` then copies its raw tables into the BigQuery
raw dataset, standing in for Fivetran's BigQuery destination, before the sync_end webhook is sent.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.local.counts import explain_counts
from infra.local.demo import DemoError, DemoReport
from infra.local.dispatcher import service_urls
from infra.local.emulators import (
    bigquery_emulator_spec,
    emulator_env,
    missing_emulators,
    pointed_at_emulators,
    pubsub_emulator_spec,
    storage_emulator_spec,
)
from infra.local.runtime_status import collect_status
from infra.local.supervisor import ProcessSpec, StackOptions, Supervisor, stack_specs
from infra.local.sync import run_sync
from infra.local.webhook_client import send_sync_end
from shared.bus.local import DeadLetter
from shared.bus.pubsub_admin import DeadLetterMessage, PubsubAdmin
from shared.errors import GridsightError
from shared.push import local_push_token
from shared.runs import find_run, run_counts
from shared.settings import Settings
from shared.topology import load_topology
from shared.warehouse import open_warehouse
from shared.warehouse.bigquery import BigQueryWarehouse

__all__ = [
    "DEFAULT_BUCKET",
    "Backend",
    "ChainResult",
    "EmulatedDemoReport",
    "backends",
    "emulated_dead_letters",
    "emulated_settings",
    "emulated_specs",
    "emulated_stack",
    "land_raw",
    "model_root",
    "prepare_cloud",
    "push_token",
    "run_chain",
    "run_emulated_demo",
]

DEFAULT_BUCKET = "gridsight-models"
_RAW_TABLES = ("site", "device", "reading", "invalid_reading")
_INSERT_CHUNK = 5_000
_BQ_TYPES = {"string": "STRING", "double": "FLOAT64", "int32": "INT64", "int64": "INT64", "bool": "BOOL"}

Step = Callable[[str], None]


class Backend(BaseModel):
    part: str
    backend: str
    where: str


class EmulatedDemoReport(DemoReport):
    backends: list[Backend]
    model_versions: list[str]


def emulated_settings(settings: Settings) -> Settings:
    """The same settings with every cloud-shaped backend switched on and pointed at an emulator."""
    return settings.model_copy(
        update={
            "bus_backend": "pubsub",
            "warehouse_backend": "bigquery",
            "bigquery_api_endpoint": f"http://127.0.0.1:{settings.bigquery_emulator_port}",
            "model_bucket": settings.model_bucket or DEFAULT_BUCKET,
        }
    )


def model_root(settings: Settings) -> str:
    return f"gs://{settings.model_bucket}/models"


def push_token(settings: Settings) -> str | None:
    """The per-installation token local push endpoints require (shared/push.py), carried in the push
    URL since the emulator can set no header; None when push_auth is not "token"."""
    return local_push_token(settings) if settings.push_auth == "token" else None


def emulated_specs(settings: Settings, options: StackOptions) -> list[ProcessSpec]:
    """The three emulators, then the local stack's processes minus the dispatcher (the Pub/Sub
    emulator pushes), each pointed at the emulators."""
    missing = missing_emulators()
    if missing:
        raise DemoError("cannot run the emulated cloud: " + "; ".join(missing))
    env = emulator_env(settings)
    specs = [
        pubsub_emulator_spec(settings),
        bigquery_emulator_spec(settings),
        storage_emulator_spec(settings, str(settings.model_bucket)),
    ]
    for spec in stack_specs(settings, options):
        if spec.name == "dispatcher":
            continue
        extra = {**spec.extra_env, **env}
        if spec.name == "model-server":
            extra["AIP_STORAGE_URI"] = model_root(settings)
        specs.append(spec.model_copy(update={"extra_env": extra}))
    return specs


def prepare_cloud(settings: Settings) -> list[str]:
    """Create the topology (topics, dead-letter topics, push subscriptions to the local services)
    and the analytics dataset; safe to repeat. Returns the push subscriptions."""
    topology = load_topology()
    urls = service_urls(settings, topology)
    with pointed_at_emulators(settings):
        admin = PubsubAdmin(settings, topology)
        try:
            subscriptions = admin.ensure_topology(urls, token=push_token(settings))
        finally:
            admin.close()
        # what `terraform apply` does in a project: the services never create datasets or tables
        warehouse = BigQueryWarehouse.from_settings(settings)
        try:
            warehouse.create_schema()
        finally:
            warehouse.close()
    return subscriptions


def land_raw(settings: Settings, *, raw_path: Path | None = None) -> dict[str, int]:
    """Copy the connector's raw tables (`raw_path`, default this home's) into the BigQuery raw
    dataset (what Fivetran's BigQuery destination does after a sync); returns rows per table.
    Whole tables, so `_fivetran_synced` and the refresh watermarks behave as after a real load."""
    import duckdb
    import pyarrow as pa
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=settings.gcp_project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=settings.bigquery_api_endpoint),
    )
    counts: dict[str, int] = {}
    con = duckdb.connect(str(raw_path or settings.raw_duckdb_path), read_only=True)
    try:
        client.create_dataset(f"{settings.gcp_project}.{settings.raw_dataset}", exists_ok=True)
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'tester'"
            ).fetchall()
        }
        for table in (t for t in _RAW_TABLES if t in present):
            arrow = con.execute(f"SELECT * FROM tester.{table}").to_arrow_table()
            schema = [
                bigquery.SchemaField(
                    f.name, "TIMESTAMP" if pa.types.is_timestamp(f.type) else _BQ_TYPES[str(f.type)]
                )
                for f in arrow.schema
            ]
            ref = f"{settings.gcp_project}.{settings.raw_dataset}.{table}"
            client.delete_table(ref, not_found_ok=True)
            created = client.create_table(bigquery.Table(ref, schema=schema))
            rows = arrow.to_pylist()
            for offset in range(0, len(rows), _INSERT_CHUNK):
                errors = client.insert_rows(created, rows[offset : offset + _INSERT_CHUNK])
                if errors:
                    raise DemoError(f"landing raw.{table} in BigQuery failed: {errors[:3]}")
            counts[table] = len(rows)
    finally:
        con.close()
        client.close()
    return counts


def backends(settings: Settings) -> list[Backend]:
    """Which backend each part used, read from the settings the processes ran with."""
    return [
        Backend(part="events", backend=f"Pub/Sub emulator (bus_backend={settings.bus_backend})",
                where=f"127.0.0.1:{settings.pubsub_emulator_port}, project {settings.gcp_project}"),
        Backend(part="warehouse", backend=f"bqemulator (warehouse_backend={settings.warehouse_backend})",
                where=f"{settings.bigquery_api_endpoint}, datasets {settings.raw_dataset} + "
                f"{settings.analytics_dataset}"),
        Backend(part="model artefacts", backend="Cloud Storage emulator", where=model_root(settings)),
        Backend(part="connector", backend="fivetran debug, raw tables landed into BigQuery",
                where=str(settings.raw_duckdb_path)),
        Backend(part="forecast endpoint", backend=f"model server (endpoint={settings.endpoint_backend})",
                where=f"http://127.0.0.1:{settings.model_server_port}"),
    ]  # fmt: skip


def as_dead_letter(message: DeadLetterMessage, topology_suffix: str) -> DeadLetter:
    """A dead-lettered Pub/Sub message in the shape `gridsight status` prints. Pub/Sub records the
    attempts (CloudPubSubDeadLetterSourceDeliveryCount) but not the handler's last status or error:
    those are in pipeline_runs and the service log."""
    attempts = int(message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "0"))
    published = message.attributes.get("CloudPubSubDeadLetterSourceTopicPublishTime")
    return DeadLetter(
        topic=f"{message.subscription}{topology_suffix}",
        subscription=message.subscription,
        message_id=message.message_id,
        event_type=message.event_type,
        correlation_id=message.correlation_id,
        attempts=attempts,
        last_status=None,
        last_error="see pipeline_runs / the service log (Pub/Sub keeps no response)",
        dead_lettered_at=datetime.fromisoformat(published.replace("Z", "+00:00"))
        if published
        else datetime.now(UTC),
    )


def _wait(condition: Callable[[], bool], stack: Supervisor, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        stack.check()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)  # polling warehouse state, with a deadline


def _succeeded(settings: Settings, handler: str, dedupe_key: str | None = None) -> Callable[[], bool]:
    def done() -> bool:
        try:
            with open_warehouse(settings, ensure_schema=False) as wh:
                if dedupe_key is not None:
                    return find_run(wh, handler, dedupe_key) is not None
                return run_counts(wh).get((handler, "succeeded"), 0) > 0
        except GridsightError:
            return False

    return done


@contextmanager
def emulated_stack(
    settings: Settings, options: StackOptions, timeout_s: float = 120.0
) -> Iterator[Supervisor]:
    """The emulators and the services, up and healthy, with the topology created; stopped on exit.
    This process's Google clients point at the emulators meanwhile."""
    with Supervisor(settings, emulated_specs(settings, options)) as stack, pointed_at_emulators(settings):
        stack.wait_healthy(timeout_s=timeout_s)
        prepare_cloud(settings)
        yield stack


class ChainResult(BaseModel):
    sync_id: str
    sync_rows: dict[str, int]
    replayed_dead_letters: int


def run_chain(
    settings: Settings, stack: Supervisor, step: Step, mark: Step, timeout_s: float = 900.0
) -> ChainResult:
    """sync → land raw → webhook → (Pub/Sub push) ingest refresh → train into gs:// → forecast and
    anomaly runs, on a running `emulated_stack`."""
    from services.forecast.training import train_from_warehouse

    step("syncing history through fivetran debug")
    result = run_sync(settings)
    if not result.ok:
        raise DemoError(f"sync failed: {result.error} (log: {result.log_path})")
    step("landing the raw tables in the BigQuery emulator")
    land_raw(settings)
    mark("sync")
    step("sending the signed sync_end webhook")
    answer = send_sync_end(settings, sync_id=result.sync_id)
    if answer.get("status") != "published":
        raise DemoError(f"webhook not published: {answer}")
    step("refreshing the modelled tables on BigQuery (ingest, pushed by the Pub/Sub emulator)")
    key = f"{settings.fivetran_connection_id}/{result.sync_id}"
    _wait(_succeeded(settings, "ingest", key), stack, timeout_s, "the refresh")
    mark("refresh")
    step("training the forecast model into the Cloud Storage emulator")
    train_from_warehouse(settings)
    mark("train")
    step("waiting for forecasts and anomalies")
    admin = PubsubAdmin(settings)
    replayed = 0
    try:
        _wait(_succeeded(settings, "anomaly"), stack, timeout_s, "the anomaly run")

        def forecast_done() -> bool:
            nonlocal replayed
            if admin.dead_letters("forecast-features"):  # ran out of attempts before the model existed
                replayed += admin.replay_dead_letters("forecast-features")
            return _succeeded(settings, "forecast")()

        _wait(forecast_done, stack, timeout_s, "the forecast run")
    finally:
        admin.close()
    mark("settled")
    return ChainResult(sync_id=result.sync_id, sync_rows=result.rows, replayed_dead_letters=replayed)


def emulated_dead_letters(settings: Settings) -> list[DeadLetter]:
    admin = PubsubAdmin(settings)
    try:
        suffix = admin.topology.dead_letter.topic_suffix
        return [as_dead_letter(m, suffix) for m in admin.dead_letters()]
    finally:
        admin.close()


def run_emulated_demo(
    settings: Settings, options: StackOptions, step: Step, timeout_s: float = 900.0
) -> EmulatedDemoReport:
    """`gridsight demo --emulated-cloud`: the demo's chain and report on the emulators.
    `settings` are `emulated_settings(...)`."""
    from services.forecast.artefact import latest_version

    durations: dict[str, float] = {}
    started = time.monotonic()

    def mark(name: str) -> None:
        durations[name] = round(time.monotonic() - started, 1)

    step(f"starting the emulators and the stack ({options.devices} devices × {options.days} days)")
    with emulated_stack(settings, options) as stack:
        mark("stack_up")
        chain = run_chain(settings, stack, step, mark, timeout_s)
        status = collect_status(settings, runs=30, tables=True)
        status.dead_letters = emulated_dead_letters(settings)
        status.processes = {}
        with open_warehouse(settings) as wh:
            explained = explain_counts(wh, status.table_rows)
        newest = latest_version(model_root(settings))
    return EmulatedDemoReport(
        source=f"replay of {options.replay}" if options.replay else f"simulated fleet (seed {options.seed})",
        counts_explained=explained,
        sync_id=chain.sync_id,
        sync_rows=chain.sync_rows,
        durations_s=durations,
        replayed_dead_letters=chain.replayed_dead_letters,
        status=status,
        backends=backends(settings),
        model_versions=[newest] if newest else [],
    )


# --- the CLI verbs (infra/local/commands/runtime.py calls these for --emulated-cloud) ---------------
def demo(console: Console, settings: Settings, options: StackOptions, timeout_s: float) -> EmulatedDemoReport:
    """`gridsight demo --emulated-cloud`: run, then the same report as `gridsight demo`, plus backends."""
    from infra.local.commands.runtime import print_demo_report

    started = time.monotonic()
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("demo", total=None)
            report = run_emulated_demo(
                settings, options, lambda text: bar.update(task, description=text), timeout_s=timeout_s
            )
    except DemoError as exc:
        console.print(f"[red]emulated demo failed:[/] {exc}")
        raise typer.Exit(1) from exc
    print_demo_report(console, report, settings)
    console.print(backends_table(report.backends))
    console.print(f"model versions in {model_root(settings)}: {report.model_versions}")
    console.print(f"wall time: {time.monotonic() - started:.0f} s")
    return report


def backends_table(parts: list[Backend]) -> Table:
    table = Table(title="backend per part (emulated cloud)")
    for column in ("part", "backend", "where"):
        table.add_column(column)
    for part in parts:
        table.add_row(part.part, part.backend, part.where)
    return table


def up(console: Console, settings: Settings, options: StackOptions) -> None:
    """`gridsight up --emulated-cloud`: the emulators and services in the foreground; Ctrl-C stops."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print("starting the emulators and the stack (the Pub/Sub emulator takes about 10 s)")
    missing = missing_emulators()
    if missing:
        console.print("[red]cannot run the emulated cloud:[/] " + "; ".join(missing))
        raise typer.Exit(1)
    with emulated_stack(settings, options) as stack:
        table = Table(title=f"gridsight stack up on the emulators (state in {settings.home})")
        for column in ("process", "pid", "address", "log"):
            table.add_column(column)
        for name, child in stack.children.items():
            address = f"http://127.0.0.1:{child.spec.port}" if child.spec.port else "-"
            pid = str(child.proc.pid if child.proc else "-")
            table.add_row(name, pid, address, str(stack.log_dir / f"{name}.log"))
        console.print(table)
        console.print(backends_table(backends(settings)))
        console.print(
            "the connector lands raw tables in DuckDB; [bold]gridsight demo --emulated-cloud[/] runs a sync, "
            "lands them in the BigQuery emulator and sends the webhook. Ctrl-C here stops everything"
        )
        while not stop.wait(1.0):
            for name in stack.check():
                console.print(f"[yellow]{name} exited and was restarted[/]")
        console.print("stopping")
    console.print("stopped")
