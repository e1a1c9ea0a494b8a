"""`gridsight up` on a home that already runs a stack, or with a port taken: refused before
anything starts, with what is running and what to do; the running stack is left as it was."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.ports import free_port
from infra.local.supervisor import ProcessSpec, Supervisor, stack_state
from shared.settings import Settings

SERVICES = ("SIMULATOR", "INGEST", "FORECAST", "ANOMALY", "CHAT", "MODEL_SERVER")


@pytest.fixture
def ports(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    chosen = {name: free_port() for name in SERVICES}
    for name, port in chosen.items():
        monkeypatch.setenv(f"GRIDSIGHT_{name}_PORT", str(port))
    return chosen


@pytest.fixture
def first_stack(settings: Settings, ports: dict[str, int]) -> Iterator[Supervisor]:
    """A running stack in this home: one small HTTP server on the chat port, under a supervisor."""
    port = ports["CHAT"]
    spec = ProcessSpec(
        name="chat", argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], port=port
    )
    with Supervisor(Settings(), [spec]) as stack:
        yield stack


def test_a_second_up_on_the_same_home_is_refused_with_the_running_stack(
    settings: Settings, ports: dict[str, int], first_stack: Supervisor
) -> None:
    state_file = settings.home / "run" / "stack.json"
    before = state_file.read_text()
    result = CliRunner().invoke(build_app(), ["up", "--devices", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        f"error: a gridsight stack is already running from {settings.home} "
        f"(supervisor pid {os.getpid()}): chat http://127.0.0.1:{ports['CHAT']}"
    )
    assert f"`kill {os.getpid()}`" in lines[1]
    assert "GRIDSIGHT_HOME" in lines[1]
    assert len(lines) == 2
    assert state_file.read_text() == before  # the first stack's record is untouched
    assert stack_state(Settings())["chat"]["alive"] is True
    status = CliRunner().invoke(build_app(), ["status"], env={"COLUMNS": "200"})
    assert "no stack running" not in status.output
    assert str(ports["CHAT"]) in status.output


def test_ports_in_use_are_reported_before_anything_starts(settings: Settings, ports: dict[str, int]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["INGEST"]))
        squatter.listen()
        result = CliRunner().invoke(build_app(), ["up", "--devices", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        f"error: port(s) already in use on 127.0.0.1: {ports['INGEST']} (ingest); nothing was started"
    )
    assert "GRIDSIGHT_INGEST_PORT" in lines[1]
    assert not (settings.home / "run" / "stack.json").exists()
    assert not (settings.home / "logs").exists()  # no process was spawned
    Supervisor(Settings(), []).claim()  # and the home's lock was given back


def test_a_stack_that_died_without_stopping_does_not_block_the_next(settings: Settings) -> None:
    run = settings.home / "run"
    run.mkdir()
    dead = 2**22 + 12345  # above the default pid_max, so no process has it
    (run / "stack.json").write_text(
        json.dumps({"supervisor_pid": dead, "processes": {"chat": {"pid": dead, "port": 1, "log": "x"}}})
    )
    status = CliRunner().invoke(build_app(), ["status"], env={"COLUMNS": "200"})
    assert "no stack running from this home: the one above stopped without cleaning up" in status.output
    stack = Supervisor(Settings(), [])
    stack.claim()  # the OS released the dead supervisor's lock; its stale record does not count
    assert stack_state(Settings())["chat"]["alive"] is False
    stack.stop()
