"""`gridsight status` and `gridsight dead-letters` on a home with real queue and warehouse state."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import typer
from filelock import FileLock
from typer.testing import CliRunner

from infra.local.cli import build_app
from shared.bus import open_publisher
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed
from shared.runs import PipelineRun, record_run
from shared.settings import Settings
from shared.warehouse import open_warehouse

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    return build_app()


def _dead_letter_one(settings: Settings) -> None:
    """A features-refreshed message whose forecast delivery ran out of attempts."""
    publisher = open_publisher(settings)
    publisher.publish(FeaturesRefreshed(refresh_id="r1", window_start=T0, window_end=T0, device_ids=["d1"]))
    publisher.close()
    store = QueueStore.open(settings)
    for lease in store.lease_due(10, {}):
        if lease.subscription == "forecast-features":
            store.nack(lease, 503, "no model yet", retry_at=None)
        else:
            store.ack(lease, 204)
    store.close()


def test_status_on_a_fresh_home_explains_what_to_do(cli: typer.Typer, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no stack running" in result.output
    for subscription in ("ingest-refresh", "forecast-features", "anomaly-features"):
        assert subscription in result.output
    assert "dead letters: none" in result.output


def test_status_shows_dead_letters_and_pipeline_runs(cli: typer.Typer, settings: Settings) -> None:
    _dead_letter_one(settings)
    with open_warehouse(settings) as wh:
        record_run(wh, PipelineRun(handler="anomaly", dedupe_key="r1", status="succeeded", rows_written=3))
    result = CliRunner().invoke(cli, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "forecast-features-dead-letter" in result.output
    assert "no model yet" in result.output
    assert "anomaly" in result.output
    assert "succeeded" in result.output


def test_dead_letters_replay_queues_them_again(cli: typer.Typer, settings: Settings) -> None:
    _dead_letter_one(settings)
    listed = CliRunner().invoke(cli, ["dead-letters", "list"], env={"COLUMNS": "200"})
    assert "gridsight.features.refreshed.v1" in listed.output
    replayed = CliRunner().invoke(cli, ["dead-letters", "replay", "--subscription", "forecast-features"])
    assert replayed.exit_code == 0, replayed.output
    assert "1 message(s) queued" in replayed.output
    store = QueueStore.open(settings)
    try:
        assert next(s for s in store.stats() if s.subscription == "forecast-features").pending == 1
        assert store.dead_letters() == []
        assert store.next_due_at() is not None
        assert store.next_due_at() <= time.time()  # type: ignore[operator]
    finally:
        store.close()


def test_replay_of_an_unknown_subscription_is_refused(cli: typer.Typer, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["dead-letters", "replay", "--subscription", "nope"])
    assert result.exit_code != 0
    assert "unknown subscription" in result.output


def test_status_answers_while_a_refresh_holds_the_warehouse(
    cli: typer.Typer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("infra.local.runtime_status.STATUS_LOCK_TIMEOUT_S", 0.2)
    _dead_letter_one(settings)
    with FileLock(str(settings.lock_path)):
        result = CliRunner().invoke(cli, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "forecast-features-dead-letter" in result.output  # the queue part still reports
    assert "pipeline runs unavailable" in result.output
