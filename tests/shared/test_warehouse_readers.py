"""Readers open the last published snapshot: they never wait for the writer lock, and see exactly the
last committed unit of work, never a refresh half-way (whether it runs as one transaction or not).

No timings here: "never waits" is asserted by giving the readers a lock timeout of zero, so a reader
that tried to take the lock while the writer holds it would fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared.errors import TransientError
from shared.refresh import refresh_features
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import Warehouse, open_warehouse, snapshot_path
from shared.warehouse.rawfixture import RawStore, make_readings
from tests.sql.landing import DAYS, N_DEVICES, START, SYNC_1, land, land_fleet

READINGS_PER_DAY = 96 * N_DEVICES  # 15-minute meters

_PAUSED_WRITER = textwrap.dedent(
    """
    import sys, time
    from contextlib import nullcontext
    from pathlib import Path
    import shared.refresh
    from shared.settings import Settings

    step, ordering, flags = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if ordering == "statement-by-statement":
        shared.refresh.atomic = lambda wh: nullcontext()

    def pause(name):
        if name == step:
            (flags / "paused").touch()
            deadline = time.monotonic() + 120
            while not (flags / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    shared.refresh.step_done = pause
    shared.refresh.refresh_features(Settings())
    """
)


def _counts(settings: Settings) -> dict[str, object]:
    with open_warehouse(settings, read_only=True) as wh:
        out: dict[str, object] = {}
        for table in ("fct_reading", "hourly_consumption", "ml_features"):
            out[table] = wh.query(f"SELECT COUNT(*) AS n FROM energy_analytics.{table}").to_pylist()[0]["n"]
        out["last_reading"] = wh.query(
            "SELECT MAX(reading_at) AS t FROM energy_analytics.fct_reading"
        ).to_pylist()[0]["t"]
        out["watermark"] = wh.query(
            "SELECT watermark FROM energy_analytics.refresh_watermarks WHERE source_table = 'reading'"
        ).to_pylist()[0]["watermark"]
    return out


def _land_next_day(settings: Settings) -> None:
    end = START + timedelta(days=DAYS)

    def next_day(raw: RawStore) -> None:
        ids = [f"dev-{i:05d}" for i in range(N_DEVICES)]
        rows = make_readings(ids, end, end + timedelta(days=1), start_registers=raw.last_registers(), seed=1)
        raw.upsert("reading", rows, SYNC_1 + timedelta(days=1))

    land(settings, next_day)


def _impatient(settings: Settings) -> Settings:
    """The same home, but a reader that tried to take the writer lock would fail at once."""
    return settings.model_copy(update={"warehouse_lock_timeout_s": 0.0})


def _wait_for(path: Path, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(f"writer exited early: {child.communicate()}")
        assert time.monotonic() < deadline, "the writer never reached the pause"
        time.sleep(0.05)


@pytest.mark.parametrize("ordering", ["duckdb-transaction", "statement-by-statement"])
def test_reader_sees_the_last_committed_state_while_a_refresh_is_half_way(
    settings: Settings, tmp_path: Path, ordering: str
) -> None:
    land_fleet(settings)
    refresh_features(settings)
    before = _counts(settings)
    assert before["fct_reading"] == DAYS * READINGS_PER_DAY
    _land_next_day(settings)

    flags = tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_WRITER, "model:hourly_consumption", ordering, str(flags)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(flags / "paused", child)
        # fct_reading has been MERGEd (committed already when statement by statement), the writer
        # holds the lock; the reader gets the whole previous state, without waiting
        assert _counts(_impatient(settings)) == before
        # the lock really is held: a writer would have to wait
        with pytest.raises(TransientError), open_warehouse(_impatient(settings)):
            pass
    finally:
        (flags / "go").touch()
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    after = _counts(_impatient(settings))
    assert after["fct_reading"] == (DAYS + 1) * READINGS_PER_DAY
    assert after["hourly_consumption"] == (DAYS + 1) * 24 * N_DEVICES
    assert after["watermark"] == SYNC_1 + timedelta(days=1)


_KILLED_AFTER_COMMIT = textwrap.dedent(
    """
    import os, signal
    from shared.refresh import run_refresh
    from shared.settings import Settings
    from shared.warehouse import open_warehouse

    with open_warehouse(Settings()) as wh:
        run_refresh(wh)  # committed
        os.kill(os.getpid(), signal.SIGKILL)  # before the unit of work ends and publishes
    """
)


def test_a_writer_killed_before_publishing_is_published_by_the_next_reader(settings: Settings) -> None:
    land_fleet(settings)
    refresh_features(settings)
    _land_next_day(settings)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMMIT], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    after = _counts(settings)
    assert after["fct_reading"] == (DAYS + 1) * READINGS_PER_DAY
    assert after["watermark"] == SYNC_1 + timedelta(days=1)


def test_readers_cannot_write(settings: Settings) -> None:
    land_fleet(settings)
    refresh_features(settings)
    with open_warehouse(settings, read_only=True) as wh, pytest.raises(Exception, match="read-only"):
        wh.execute("DELETE FROM energy_analytics.hourly_consumption WHERE TRUE")
    assert _counts(settings)["hourly_consumption"] == DAYS * 24 * N_DEVICES


def test_a_unit_of_work_that_wrote_nothing_publishes_nothing(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        wh.query("SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs")
    published = snapshot_path(settings).stat()
    with open_warehouse(settings) as wh:
        wh.query("SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs")
    again = snapshot_path(settings).stat()
    assert (again.st_ino, again.st_mtime_ns) == (published.st_ino, published.st_mtime_ns)
    land_fleet(settings)
    refresh_features(settings)
    assert snapshot_path(settings).stat().st_ino != published.st_ino


def test_a_new_home_gets_a_snapshot_on_first_read(settings: Settings) -> None:
    assert not snapshot_path(settings).exists()
    with open_warehouse(settings, read_only=True) as wh:
        assert wh.table_exists("energy_analytics.hourly_consumption")
    assert snapshot_path(settings).exists()


def _runs(settings: Settings) -> int:
    with open_warehouse(_impatient(settings), read_only=True) as wh:
        return wh.query("SELECT COUNT(*) AS n FROM energy_analytics.pipeline_runs").to_pylist()[0]["n"]


def _insert_run(wh: Warehouse, run_id: str) -> None:
    wh.execute(
        "INSERT INTO energy_analytics.pipeline_runs (run_id, handler, dedupe_key, status, started_at) "
        "VALUES (@run_id, 'test', @run_id, 'succeeded', CURRENT_TIMESTAMP)",
        {"run_id": run_id},
    )


def test_an_unpublished_write_reaches_the_next_reader_and_no_reader_while_a_writer_works(
    settings: Settings,
) -> None:
    """publish=False (a run record, an alert stamp) commits without the copy: the snapshot file
    stays as it was, a reader that finds the lock free publishes the write, and a reader that
    comes while another writer holds the lock gets the last published state, without waiting."""
    with open_warehouse(settings) as wh:
        _insert_run(wh, "published")
    published = snapshot_path(settings).stat()
    with open_warehouse(settings, publish=False) as wh:
        _insert_run(wh, "quiet-1")
    assert snapshot_path(settings).stat().st_ino == published.st_ino  # no copy was made
    assert _runs(settings) == 2  # the reader published it
    assert snapshot_path(settings).stat().st_ino != published.st_ino
    with open_warehouse(settings, publish=False) as wh:
        _insert_run(wh, "quiet-2")
    with open_warehouse(settings) as writer:  # another writer holds the lock
        assert _runs(settings) == 2  # the last published state, and no wait (lock timeout 0)
        _insert_run(writer, "published-2")
    assert _runs(settings) == 4  # that writer published both
