"""Replay of real meters as a user runs it: `simulator serve --replay` + `sync`, `up --replay` +
`sync`, and `demo --replay`, on a slice of the Cambridge data in ../shared/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.ports import free_port
from infra.local.supervisor import StackOptions, Supervisor, stack_settings, stack_specs
from shared.settings import REPO_ROOT, Settings
from simulator.replay import Replay
from simulator.server import SimulatorServer, VendorApi

pytestmark = pytest.mark.slow
METERS = ["UCam_Building_b1", "UCam_Building_b2", "UCam_Building_b100"]
RECEIVE_DELAY = timedelta(hours=1, seconds=30)  # simulator/replay.py: received 1 h 30 s after the hour


@pytest.fixture(scope="module")
def cambridge_slice(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real buildings, January 2019 (the file is read by pandas, not by the code under test)."""
    frame = pd.read_csv(shared_data / "meters_2019_hourly.csv.gz")
    frame = frame[frame["meter_id"].isin(METERS) & (frame["timestamp_utc"] < "2019-02-01")]
    path = tmp_path_factory.mktemp("replay") / "meters_jan.csv"
    frame.to_csv(path, index=False)
    return path


def _released(meters_csv: Path, days: int) -> int:
    """Readings the vendor has received by its clock (first day 00:00 + `days`)."""
    frame = pd.read_csv(meters_csv, parse_dates=["timestamp_utc"])
    now = datetime(2019, 1, 1) + timedelta(days=days)
    return int((frame["timestamp_utc"] + RECEIVE_DELAY <= now).sum())


@pytest.fixture
def ports(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("SIMULATOR", "INGEST", "FORECAST", "ANOMALY", "CHAT", "MODEL_SERVER"):
        monkeypatch.setenv(f"GRIDSIGHT_{name}_PORT", str(free_port()))
    return Settings()


def _raw_readings(cli_env: dict[str, str]) -> int:
    result = CliRunner().invoke(
        build_app(), ["query", "SELECT COUNT(*) AS n FROM raw.reading", "--json"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)[0]["n"])


@pytest.fixture
def replay_server(ports: Settings, cambridge_slice: Path) -> Iterator[SimulatorServer]:
    api = VendorApi(Replay(cambridge_slice, None, 3), ports.simulator_api_key.get_secret_value())
    server = SimulatorServer(api, port=ports.simulator_port).start()
    yield server
    server.stop()


def test_sync_after_the_replayed_data_warns_instead_of_landing_nothing_silently(
    ports: Settings, replay_server: SimulatorServer
) -> None:
    result = CliRunner().invoke(build_app(), ["sync", "--no-webhook"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (
        "warning: the connector starts at 2026-01-01, after everything the vendor API has "
        "(its clock is 2019-01-04T00:00:00Z), so no readings will land." in result.output
    )
    assert "GRIDSIGHT_CONNECTOR_START_DATE" in result.output
    assert _raw_readings({"COLUMNS": "200"}) == 0


def test_sync_with_the_start_date_set_lands_the_replayed_readings(
    ports: Settings, replay_server: SimulatorServer, cambridge_slice: Path
) -> None:
    env = {"COLUMNS": "200", "GRIDSIGHT_CONNECTOR_START_DATE": "2019-01-01"}
    result = CliRunner().invoke(build_app(), ["sync", "--no-webhook"], env=env)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert _raw_readings(env) == _released(cambridge_slice, 3)


def test_sync_beside_up_replay_starts_where_the_data_starts(ports: Settings, cambridge_slice: Path) -> None:
    """`up --replay` records the data's first day; a plain `gridsight sync` (no variable set) uses it."""
    options = StackOptions(days=3, replay=cambridge_slice)
    settings = stack_settings(Settings(), options)
    assert settings.connector_start_date == "2019-01-01"
    simulator = [s for s in stack_specs(settings, options) if s.name == "simulator"]
    with Supervisor(settings, simulator):  # the real `simulator serve --replay` process
        result = CliRunner().invoke(build_app(), ["sync", "--no-webhook"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert _raw_readings({"COLUMNS": "200"}) == _released(cambridge_slice, 3)


def test_demo_replays_real_meters_through_the_whole_pipeline(ports: Settings, cambridge_slice: Path) -> None:
    days = 28
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "infra.local.cli", "demo", "--replay", str(cambridge_slice)]
    cmd += ["--days", str(days)]
    demo = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out
    assert f"vendor data: replay of {cambridge_slice}; the connector started at 2019-01-01" in out
    assert f"reading         │ {_released(cambridge_slice, days):,} │" in out  # landed by the sync
    assert "failed" not in out  # the model exists before the forecast service takes its first event
    assert "forecast       │ succeeded │    1 │" in out
    assert f"{len(METERS)} devices × 1 forecast run(s) × 24 target hours each" in out
    assert "{'" not in out  # tables, not Python dicts
    # not on this test's PATH, so named by its path: relative to the demo's working directory (the
    # repo) when the environment lives inside it, as `make demo` makes it, else in full
    cli: Path | str = Path(sys.executable).with_name("gridsight")
    if Path(cli).is_relative_to(REPO_ROOT):
        cli = Path(cli).relative_to(REPO_ROOT)
    last = out.strip().splitlines()[-5:]
    assert last[0] == f"state kept in {ports.home} (keep GRIDSIGHT_HOME={ports.home} set). Next:"
    assert last[1].startswith(f"  (gridsight is not on your PATH: type {cli}, or first source ")
    assert last[2].startswith(f'  {cli} query "SELECT')
    assert last[3].startswith(f"  {cli} chat ")
    assert _raw_readings({"COLUMNS": "200"}) == _released(cambridge_slice, days)
    first = CliRunner().invoke(
        build_app(),
        ["query", "SELECT MIN(hour) AS first FROM energy_analytics.hourly_consumption", "--json"],
        env={"COLUMNS": "200"},
    )
    assert json.loads(first.stdout)[0]["first"].startswith("2019-01-01")
