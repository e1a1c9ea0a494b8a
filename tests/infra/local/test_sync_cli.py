"""`gridsight sync` as a user meets it: no vendor API running, and Ctrl-C in the middle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import duckdb
import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.ports import free_port
from shared.settings import REPO_ROOT, Settings
from simulator.fleet import Fleet, FleetSpec
from simulator.server import SimulatorServer, VendorApi
from tests.infra.local.test_cli_errors import RanAnyway

DEVICES, DAYS = 8, 20  # 8 × 20 × 96 = 15,360 readings: a few checkpoints (every 5,000 rows)


def test_sync_without_a_vendor_api_fails_at_once_with_the_url_and_the_fix(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("GRIDSIGHT_SIMULATOR_PORT", str(port))

    def ran_anyway(*_a: object, **_k: object) -> None:
        raise RanAnyway  # the runner and its minute of retries must not start

    monkeypatch.setattr("infra.local.commands.sync.run_sync", ran_anyway)
    result = CliRunner().invoke(build_app(), ["sync"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"error: no vendor API answering at http://127.0.0.1:{port}"
    assert "start it with `gridsight simulator serve` or `gridsight up`" in lines[1]
    assert len(lines) == 2


@pytest.fixture
def vendor(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Fleet]]:
    spec = FleetSpec(
        devices=DEVICES,
        days=DAYS,
        seed=3,
        malformed_rate=0,
        late_share=0,
        decommission_share=0,
        feed_lag_share=0,
    )
    fleet = Fleet(spec)
    server = SimulatorServer(VendorApi(fleet, settings.simulator_api_key.get_secret_value()), port=0).start()
    monkeypatch.setenv("GRIDSIGHT_SIMULATOR_PORT", server.url.rsplit(":", 1)[1])
    monkeypatch.setenv("GRIDSIGHT_CONNECTOR_START_DATE", "2026-01-05")
    try:
        yield Settings(), fleet
    finally:
        server.stop()


def _landed(settings: Settings) -> tuple[int, int]:
    """(rows, distinct (device, timestamp)) in the raw reading table."""
    with duckdb.connect(str(settings.raw_duckdb_path), read_only=True) as con:
        row = con.sql(
            "select count(*), count(distinct (device_id, timestamp)) from tester.reading"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _visible(fleet: Fleet) -> int:
    """What the vendor has released by its "now", counted from the simulator, not the connector."""
    now = fleet.initial_now
    first = fleet.initial_now // 86_400 - DAYS - 1
    return sum(
        1
        for device in fleet.devices()
        for day in range(first, now // 86_400 + 1)
        for record in fleet.records(device.device_id, day)
        if record.visible <= now
    )


def _as_in_a_terminal() -> None:
    """Ctrl-C at its default, as for a command typed in a terminal: a test run started in the
    background of a script (`make test &`) inherits SIGINT ignored, and so would the CLI."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_a_sync_says_so_and_the_next_sync_resumes(vendor: tuple[Settings, Fleet]) -> None:
    settings, fleet = vendor
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "infra.local.cli", "sync", "--no-webhook"]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )
    state = settings.connector_dir / "files" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the first checkpoint, with a deadline
    assert proc.poll() is None, "the sync ended before it could be interrupted; make the fleet bigger"
    proc.send_signal(signal.SIGINT)  # to us only: the CLI must pass it on to the runner itself
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "sync interrupted" in err
    assert "run `gridsight sync` again: it resumes from that checkpoint" in err

    again = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rows, distinct = _landed(settings)
    assert rows == distinct == _visible(fleet)  # every released reading, once
    assert DEVICES * (DAYS * 96 - 1) <= rows <= DEVICES * DAYS * 96  # 15-minute readings, 20 days
