"""A crash at every step boundary of the ingest refresh is repaired by redelivery.

The unit of work is: each model's MERGE, the run record (which carries the window and the
watermarks), the watermark advance, the commit, the publish, and the push handler's own run record.
For each boundary the second sync's delivery is made to fail right there (in-process, and with a
real SIGKILL of a child process), the message is redelivered, and the warehouse must equal one
clean run of the same two syncs in another home, with the second sync's window published (the same
refresh_id and window as the clean run; subscribers dedupe on refresh_id).

Two orderings are exercised: DuckDB's (everything up to the commit in one transaction) and the one
BigQuery gets (every statement commits on its own), by running the same steps without the
transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from raw_landing import START, land

import shared.refresh
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed, SyncCompleted
from shared.refresh import RefreshResult, finish_recorded
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import contract_for, open_warehouse
from shared.warehouse.models import ordered_models
from tests.pushing import authorized, push_envelope

MODEL_STEPS = [f"model:{c.table}" for c in ordered_models()]
STEPS = [*MODEL_STEPS, "recorded", "watermarks", "committed", "published"]
TABLES = [c.table for c in ordered_models()]
DAY_2 = START + dt.timedelta(hours=24)


class Crash(BaseException):
    """Not an Exception: nothing in the handler catches it, like a process that simply stops."""


def _client() -> FlaskClient:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    return authorized(app.test_client())


def _envelope(sync_id: str, attempt: int = 1) -> dict[str, Any]:
    event = SyncCompleted(connection_id="gridsight_local", sync_id=sync_id, sync_ended_at=START)
    return push_envelope(
        event,
        message_id=f"m-{sync_id}",
        subscription="ingest-refresh",
        attempt=attempt,
        correlation_id=sync_id,
    )


def _land_day(settings: Settings, day: int) -> None:
    start = START + dt.timedelta(hours=24 * day)
    land(
        settings,
        devices=2,
        start=start,
        hours=24,
        synced_at=start + dt.timedelta(hours=25),
        dimensions=day == 0,
    )


def _published(settings: Settings) -> list[FeaturesRefreshed]:
    store = QueueStore.open(settings)
    try:
        rows = store._conn.execute(
            "SELECT data FROM messages WHERE topic = 'features-refreshed' ORDER BY rowid"
        ).fetchall()
        return [FeaturesRefreshed.model_validate_json(data) for (data,) in rows]
    finally:
        store.close()


def _digits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Floats to 12 significant digits: a model recomputed in another scan order (a redelivery
    without DuckDB's transaction reads committed rows where the clean run read its own uncommitted
    ones) can move the last bits of an average; the MERGE counts such rows as unchanged too
    (statements.FLOAT_TOLERANCE, 1e-9 relative)."""
    return [{k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _state(settings: Settings) -> dict[str, Any]:
    """Every model table, the watermarks, and the succeeded ingest runs per sync."""
    with open_warehouse(settings) as wh:
        state: dict[str, Any] = {
            t: _digits(
                wh.query(
                    f"SELECT * EXCLUDE (synced_at) FROM energy_analytics.{t}"
                    f" ORDER BY {', '.join(contract_for(t).unique_key)}"
                ).to_pylist()
                if "synced_at" in contract_for(t).columns
                else wh.query(
                    f"SELECT * FROM energy_analytics.{t} ORDER BY {', '.join(contract_for(t).unique_key)}"
                ).to_pylist()
            )
            for t in TABLES
        }
        state["watermarks"] = wh.query(
            "SELECT source_table, watermark FROM energy_analytics.refresh_watermarks ORDER BY 1"
        ).to_pylist()
        state["runs"] = wh.query(
            "SELECT handler, dedupe_key, COUNT(*) AS n FROM energy_analytics.pipeline_runs"
            " WHERE status = 'succeeded' GROUP BY 1, 2 ORDER BY 1, 2"
        ).to_pylist()
    return state


@pytest.fixture(scope="module")
def first_synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where sync-0 was refreshed and announced and day 1 has landed (copied per test)."""
    home = tmp_path_factory.mktemp("first-synced")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDSIGHT_HOME", str(home))
        settings = Settings()
        _land_day(settings, 0)
        assert _client().post("/pubsub/sync-completed", json=_envelope("sync-0")).status_code == 204
        _land_day(settings, 1)
    return home


def _from(template: Path, settings: Settings) -> None:
    shutil.copytree(template, settings.home, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory, first_synced: Path
) -> tuple[dict[str, Any], dict[str, FeaturesRefreshed]]:
    """sync-1 delivered once, nothing crashing: what every crashed run must end up as."""
    home = tmp_path_factory.mktemp("clean-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDSIGHT_HOME", str(home))
        settings = Settings()
        _from(first_synced, settings)
        assert _client().post("/pubsub/sync-completed", json=_envelope("sync-1")).status_code == 204
        published = {e.refresh_id: e for e in _published(settings)}
        assert len(published) == 2
        return _state(settings), published


@pytest.fixture(params=["duckdb-transaction", "statement-by-statement"])
def ordering(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "statement-by-statement":  # what BigQuery does: no transaction around it
        monkeypatch.setattr(shared.refresh, "atomic", lambda wh: nullcontext())
    return request.param


def _assert_repaired(settings: Settings, clean: tuple[dict[str, Any], dict[str, FeaturesRefreshed]]) -> None:
    want_state, want_published = clean
    assert _state(settings) == want_state
    got: dict[str, FeaturesRefreshed] = {}
    for event in _published(settings):
        got.setdefault(event.refresh_id, event)
        assert event == got[event.refresh_id], "a republished window must be the recorded one"
    # rows_changed is left out: statement by statement, a re-run after a crash mid-models counts
    # only what it changed itself
    assert {k: _announced(e) for k, e in got.items()} == {k: _announced(e) for k, e in want_published.items()}


def _announced(event: FeaturesRefreshed) -> tuple[object, ...]:
    return event.refresh_id, event.window_start, event.window_end, event.device_ids


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_step_is_repaired_by_redelivery(
    step: str,
    ordering: str,
    settings: Settings,
    first_synced: Path,
    clean: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _from(first_synced, settings)  # the home's push token comes with it
    client = _client()

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with monkeypatch.context() as crashing:
        crashing.setattr(shared.refresh, "step_done", crash)
        with pytest.raises(Crash):
            client.post("/pubsub/sync-completed", json=_envelope("sync-1"))
    # Pub/Sub redelivers (twice here: the second must be a no-op)
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1", attempt=2)).status_code == 204
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1", attempt=3)).status_code == 204
    _assert_repaired(settings, clean)


_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from contextlib import nullcontext
    import functions_framework
    import shared.refresh
    from shared.settings import REPO_ROOT
    sys.path.insert(0, sys.argv[3])
    from test_refresh_crash import _envelope

    step, ordering = sys.argv[1], sys.argv[2]
    if ordering == "statement-by-statement":
        shared.refresh.atomic = lambda wh: nullcontext()

    def die(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    shared.refresh.step_done = die
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/ingest/main.py"))
    from tests.pushing import authorized
    authorized(app.test_client()).post("/pubsub/sync-completed", json=_envelope("sync-1"))
    print("not killed")
    """
)


@pytest.mark.slow  # starts a Python process per case (about 5 s each on a loaded machine)
@pytest.mark.parametrize(
    ("step", "ordering_name"),
    [
        ("model:hourly_consumption", "duckdb-transaction"),
        ("recorded", "duckdb-transaction"),
        ("recorded", "statement-by-statement"),
        ("committed", "duckdb-transaction"),
    ],
)
def test_sigkill_of_the_ingest_process_is_repaired_by_redelivery(
    step: str, ordering_name: str, settings: Settings, first_synced: Path, clean: Any
) -> None:
    _from(first_synced, settings)  # the home's push token comes with it
    client = _client()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    here = str(Path(__file__).parent)
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, step, ordering_name, here],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert client.post("/pubsub/sync-completed", json=_envelope("sync-1", attempt=2)).status_code == 204
    _assert_repaired(settings, clean)


def test_the_redelivered_window_is_the_recorded_one(settings: Settings) -> None:
    """The record carries the window and the watermarks, so a redelivery can re-announce it."""
    _land_day(settings, 0)
    assert _client().post("/pubsub/sync-completed", json=_envelope("sync-0")).status_code == 204
    with open_warehouse(settings) as wh:
        [detail] = wh.query(
            "SELECT detail FROM energy_analytics.pipeline_runs WHERE handler = 'ingest.refresh'"
        ).to_pylist()
    recorded = json.loads(detail["detail"])
    assert recorded["window_start"].startswith("2026-03-01T00:00:00")
    # the landing helper syncs a day's readings at start + 25 h
    assert set(recorded["watermarks"]) == {"site", "device", "reading"}
    assert recorded["watermarks"]["reading"].startswith("2026-03-02T01:00:00")


def test_finishing_a_recorded_refresh_never_moves_a_watermark_back(settings: Settings) -> None:
    """A recorded refresh completed after a later one went past it must not undo the later one."""
    _land_day(settings, 0)
    assert _client().post("/pubsub/sync-completed", json=_envelope("sync-0")).status_code == 204
    with open_warehouse(settings) as wh:
        marks = {
            r["source_table"]: r["watermark"]
            for r in wh.query("SELECT * FROM energy_analytics.refresh_watermarks").to_pylist()
        }
        older = {t: m - dt.timedelta(hours=5) for t, m in marks.items()}
        finish_recorded(wh, RefreshResult(refresh_id="old", full=False, watermarks=older))
        kept = {
            r["source_table"]: r["watermark"]
            for r in wh.query("SELECT * FROM energy_analytics.refresh_watermarks").to_pylist()
        }
        newer = {**marks, "reading": marks["reading"] + dt.timedelta(hours=1)}
        finish_recorded(wh, RefreshResult(refresh_id="new", full=False, watermarks=newer))
        advanced = {
            r["source_table"]: r["watermark"]
            for r in wh.query("SELECT * FROM energy_analytics.refresh_watermarks").to_pylist()
        }
    assert kept == marks
    assert advanced == newer
