"""`gridsight demo`: the whole event chain on one machine, from an empty home to forecasts.

up (simulator, services, model server, dispatcher) → sync (history, `fivetran debug`) → the signed
sync_end webhook → refresh → features-refreshed to forecast and anomaly → wait until every
delivery is acked or dead-lettered → report → stop.

No model exists before the first refresh has landed, so the forecast service starts only once the
demo has trained one: its first delivery waits in the queue (redelivered with backoff, as Pub/Sub
does while a push endpoint is down) instead of failing in the service. Retry backoff is shortened
(settings) so this takes seconds, not Pub/Sub's 10 s..600 s; if training outlasts the delivery
budget anyway, the dead-lettered delivery is replayed once the service is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from infra.local.counts import explain_counts
from infra.local.runtime_status import RuntimeStatus, collect_status
from infra.local.supervisor import StackOptions, Supervisor, stack_specs
from infra.local.sync import run_sync
from infra.local.webhook_client import send_sync_end
from shared.bus.local import QueueStore
from shared.errors import GridsightError
from shared.runs import find_run
from shared.settings import Settings
from shared.warehouse import open_warehouse

__all__ = ["DemoError", "DemoReport", "demo_settings", "run_demo", "wait_settled"]

Step = Callable[[str], None]


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its log is."""


class DemoReport(BaseModel):
    source: str = Field(description="what the vendor API served")
    sync_id: str
    sync_rows: dict[str, int]
    durations_s: dict[str, float] = Field(default_factory=dict)
    replayed_dead_letters: int = 0
    started_after_training: list[str] = Field(default_factory=list)
    forecast_attempts: list[int] = Field(
        default_factory=list, description="delivery attempts of each forecast-features message"
    )
    counts_explained: dict[str, str] = Field(default_factory=dict)
    status: RuntimeStatus


def demo_settings(settings: Settings) -> Settings:
    """Short retry backoff unless the user set one: the first forecast delivery waits for a model."""
    update: dict[str, float | int] = {}
    if settings.bus_min_backoff_s is None:
        update["bus_min_backoff_s"] = 0.5
    if settings.bus_max_backoff_s is None:
        update["bus_max_backoff_s"] = 5.0
    if settings.bus_max_delivery_attempts is None:
        update["bus_max_delivery_attempts"] = 30
    return settings.model_copy(update=update)


def _wait(condition: Callable[[], bool], stack: Supervisor | None, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if stack is not None:
            stack.check()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)  # polling queue and warehouse state, with a deadline


def wait_settled(settings: Settings, stack: Supervisor | None = None, timeout_s: float = 600.0) -> None:
    """Until every delivery is acked or dead-lettered (nothing due, in flight or waiting to retry)."""

    def settled() -> bool:
        store = QueueStore.open(settings)
        try:
            return store.unsettled() == 0
        finally:
            store.close()

    _wait(settled, stack, timeout_s, "every delivery to settle")


def _ingest_done(settings: Settings, dedupe_key: str) -> Callable[[], bool]:
    def done() -> bool:
        try:
            with open_warehouse(settings) as wh:
                return find_run(wh, "ingest", dedupe_key) is not None
        except GridsightError:
            return False  # warehouse busy with the refresh itself

    return done


def _train(settings: Settings) -> None:
    try:
        from services.forecast.training import train_from_warehouse
    except ImportError as exc:
        raise DemoError("forecast training (services.forecast.training) is not in this checkout") from exc
    try:
        train_from_warehouse(settings)
    except ValueError as exc:  # e.g. too little history for the first model
        raise DemoError(
            f"training the first forecast model failed: {exc} (the default --days 28 is enough)"
        ) from exc


def run_demo(settings: Settings, options: StackOptions, step: Step, timeout_s: float = 900.0) -> DemoReport:
    durations: dict[str, float] = {}
    started = time.monotonic()

    def mark(name: str) -> None:
        durations[name] = round(time.monotonic() - started, 1)

    what = f"replaying {options.replay.name}" if options.replay else f"{options.devices} devices"
    step(f"starting the stack ({what}, {options.days} days)")
    specs = stack_specs(settings, options)
    deferred = frozenset({"forecast"} & {s.name for s in specs})
    with Supervisor(settings, specs, deferred=deferred) as stack:
        stack.wait_healthy()
        mark("stack_up")
        step("syncing history through fivetran debug")
        result = run_sync(settings)
        if not result.ok:
            raise DemoError(f"sync failed: {result.error} (log: {result.log_path})")
        mark("sync")
        step("sending the signed sync_end webhook")
        answer = send_sync_end(settings, sync_id=result.sync_id)
        if answer.get("status") != "published":
            raise DemoError(f"webhook not published: {answer}")
        step("refreshing the modelled tables (ingest)")
        key = f"{settings.fivetran_connection_id}/{result.sync_id}"
        _wait(_ingest_done(settings, key), stack, timeout_s, "the refresh")
        mark("refresh")
        step("training the first forecast model")
        _train(settings)
        mark("train")
        if deferred:
            step("starting the forecast service now that a model exists")
            started_late = stack.start_deferred()
        else:
            started_late = []
        step("waiting for forecast and anomaly deliveries to settle")
        wait_settled(settings, stack, timeout_s)
        replayed = _replay_forecast_dead_letters(settings)
        if replayed:
            step(f"replaying {replayed} forecast delivery that ran out of attempts before the model existed")
            wait_settled(settings, stack, timeout_s)
        mark("settled")
    status = collect_status(settings, runs=30, tables=True)
    with open_warehouse(settings, read_only=True) as wh:
        explained = explain_counts(wh, status.table_rows)
    return DemoReport(
        source=f"replay of {options.replay}" if options.replay else f"simulated fleet (seed {options.seed})",
        sync_id=result.sync_id,
        sync_rows=result.rows,
        durations_s=durations,
        replayed_dead_letters=replayed,
        started_after_training=started_late,
        forecast_attempts=_attempts(settings, "forecast-features"),
        counts_explained=explained,
        status=status,
    )


def _attempts(settings: Settings, subscription: str) -> list[int]:
    store = QueueStore.open(settings)
    try:
        return [a for sub, _m, _state, a in store.delivery_states() if sub == subscription]
    finally:
        store.close()


def _replay_forecast_dead_letters(settings: Settings) -> int:
    store = QueueStore.open(settings)
    try:
        return store.replay_dead_letters("forecast-features")
    finally:
        store.close()
