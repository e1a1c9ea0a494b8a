"""bqemulator as a session-scoped subprocess from its own venv (`make bqemu` builds .venv-bqemu).

Its sqlglot pin clashes with ours, so it never shares our interpreter: the official BigQuery client
in .venv talks to it over HTTP on a loopback port.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local.ports import free_port
from shared.settings import REPO_ROOT, Settings

EMULATOR = REPO_ROOT / ".venv-bqemu" / "bin" / "bqemulator"
PROJECT = "gridsight-test"
START_TIMEOUT_S = 90


def provision_bigquery(settings: Settings) -> Settings:
    """Create the analytics dataset and tables on the emulator, as `terraform apply` does in a project
    (the services never create them: shared/warehouse/bigquery.py). Returns the settings."""
    from shared.warehouse.bigquery import BigQueryWarehouse

    warehouse = BigQueryWarehouse.from_settings(settings)
    try:
        warehouse.create_schema()
    finally:
        warehouse.close()
    return settings


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""


@pytest.fixture(scope="session")
def bqemu_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running emulator (project `gridsight-test`); stopped after the session."""
    if not EMULATOR.exists():
        pytest.skip(
            f"!!! bqemulator venv missing ({EMULATOR}): run `make bqemu`; BigQuery differential tests NOT run"
        )
    rest, grpc = free_port(), free_port()
    log = tmp_path_factory.mktemp("bqemu") / "bqemulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(EMULATOR), "start", "--ephemeral", "--project", PROJECT, "--rest-host", "127.0.0.1",
             "--rest-port", str(rest), "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc),
             "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{rest}"
    try:
        _wait_ready(proc, endpoint, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    """Poll the REST API until it answers (a readiness probe, not a timing assumption)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"bqemulator exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    pytest.fail(f"bqemulator did not answer within {START_TIMEOUT_S} s:\n{_tail(log)}")
