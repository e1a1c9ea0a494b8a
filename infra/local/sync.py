"""One local connector sync: the real `fivetran debug` runner in a subprocess.

The connector project is copied into `settings.connector_dir` (a private folder under the state
home) so the runner's `files/warehouse.db` lands at `settings.raw_duckdb_path` and the repository
folder stays clean. A subprocess rather than an import: the SDK owns its process (signal handlers,
a memory limit, `sys.exit`), and a crash test has to be able to kill exactly it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import requests
from filelock import FileLock
from pydantic import BaseModel

from shared.settings import REPO_ROOT, Settings

__all__ = [
    "CONNECTOR_SOURCE",
    "RAW_TABLES",
    "SyncResult",
    "VendorApiUnavailable",
    "check_vendor_api",
    "debug_command",
    "debug_env",
    "default_configuration",
    "prepare_project",
    "run_sync",
    "start_after_data",
    "start_runner",
]

CONNECTOR_SOURCE = REPO_ROOT / "fivetran_connector"
_PROJECT_FILES = ("connector.py", "client.py", "requirements.txt")
RAW_TABLES = ("site", "device", "reading", "invalid_reading")


class SyncResult(BaseModel):
    sync_id: str
    started_at: datetime
    ended_at: datetime
    ok: bool
    rows: dict[str, int]  # rows written or changed by this sync, per raw table
    raw_path: Path
    error: str | None = None
    log_path: Path


_PROBE_TIMEOUT_S = 3.0
_INTERRUPT_GRACE_S = 10.0


class VendorApiUnavailable(RuntimeError):
    """The vendor API does not answer (or rejects the key); says where it looked and how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def check_vendor_api(configuration: dict[str, str]) -> str | None:
    """One cheap request before the runner starts: the connector's retries (right for a flaky API)
    would otherwise spend a minute on an API that is simply not running. Returns the vendor's
    clock (`as_of`: data exists up to then), when it says."""
    url = configuration["base_url"].rstrip("/")
    try:
        response = requests.get(
            f"{url}/v1/sites",
            params={"page_size": 1},
            headers={"Authorization": f"Bearer {configuration['api_key']}"},
            timeout=_PROBE_TIMEOUT_S,
        )
    except requests.RequestException as exc:
        raise VendorApiUnavailable(
            f"no vendor API answering at {url}",
            "start it with `gridsight simulator serve` or `gridsight up` "
            "(GRIDSIGHT_SIMULATOR_PORT sets the port), then run `gridsight sync` again",
        ) from exc
    if response.status_code in (401, 403):
        raise VendorApiUnavailable(
            f"the vendor API at {url} rejected the API key ({response.status_code})",
            "set GRIDSIGHT_SIMULATOR_API_KEY to the key the simulator was started with",
        )
    try:
        as_of = response.json().get("as_of")
    except ValueError:
        return None
    return str(as_of) if as_of else None


def start_after_data(configuration: dict[str, str], as_of: str | None) -> bool:
    """True when the first sync's start date is after everything the vendor has: it would land
    sites and devices but no reading, with nothing to say why."""
    if not as_of:
        return False
    try:
        start = datetime.fromisoformat(configuration["start_date"]).replace(tzinfo=UTC)
        now = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError:
        return False
    return start > now


def default_configuration(settings: Settings) -> dict[str, str]:
    """Fivetran configurations are strings only."""
    return {
        "base_url": f"http://127.0.0.1:{settings.simulator_port}",
        "api_key": settings.simulator_api_key.get_secret_value(),
        "page_size": str(settings.connector_page_size),
        "start_date": settings.connector_start_date,
        "lookback_hours": str(settings.connector_lookback_hours),
        "change_feed": "true",  # the simulator offers the fleet-wide change feed
    }


def prepare_project(project: Path, configuration: dict[str, str]) -> Path:
    """Copy the connector into `project` (refreshing the code, keeping `files/`); write its config."""
    project.mkdir(parents=True, exist_ok=True)
    for name in _PROJECT_FILES:
        shutil.copy2(CONNECTOR_SOURCE / name, project / name)
    config_path = project / "configuration.json"
    config_path.write_text(json.dumps(configuration, indent=2))
    config_path.chmod(0o600)  # holds the vendor API key
    return config_path


def debug_command(project: Path, config_path: Path) -> list[str]:
    fivetran = Path(sys.executable).parent / "fivetran"
    executable = str(fivetran) if fivetran.exists() else (shutil.which("fivetran") or "fivetran")
    return [executable, "debug", str(project), "--configuration", str(config_path)]


def debug_env() -> dict[str, str]:
    """Telemetry off; the venv's bin first on PATH (the runner shells out to `pipreqs`)."""
    env = dict(os.environ)
    env["DO_NOT_TRACK"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def start_runner(project: Path, config_path: Path, *, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """`fivetran debug` on `project` as a child process, stderr folded into `stdout` (a pipe by default)."""
    return subprocess.Popen(
        debug_command(project, config_path),
        cwd=project,
        env=debug_env(),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def run_sync(
    settings: Settings,
    *,
    configuration: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> SyncResult:
    """Run one sync to completion; never raises for a failed sync (see `ok` and `error`)."""
    project = settings.connector_dir
    project.mkdir(parents=True, exist_ok=True)
    with FileLock(str(project / ".sync.lock")):
        config_path = prepare_project(project, configuration or default_configuration(settings))
        log_path = project / "last_sync.log"
        started = datetime.now(UTC)
        tail: deque[str] = deque(maxlen=400)  # the error line precedes a traceback
        with (
            log_path.open("w") as log_file,
            start_runner(project, config_path) as process,
        ):
            assert process.stdout is not None
            try:
                for line in process.stdout:
                    log_file.write(line)
                    tail.append(line.rstrip())
                    if on_line:
                        on_line(line.rstrip())
                code = process.wait(timeout=settings.sync_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            except KeyboardInterrupt:
                _stop_runner(process)  # its last checkpoint stays in files/state.json
                raise
        ended = datetime.now(UTC)
        ok = code == 0
        rows = (
            count_rows(settings.raw_duckdb_path, since=started) if settings.raw_duckdb_path.exists() else {}
        )
        return SyncResult(
            sync_id=uuid.uuid4().hex,
            started_at=started,
            ended_at=ended,
            ok=ok,
            rows=rows,
            raw_path=settings.raw_duckdb_path,
            error=None if ok else _failure_message(list(tail), code),
            log_path=log_path,
        )


def _stop_runner(process: subprocess.Popen[str]) -> None:
    """Ctrl-C reaches the runner too when typed in a terminal; a signal sent to us alone does not."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=_INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def count_rows(raw_path: Path, *, since: datetime) -> dict[str, int]:
    """Rows each raw table got from this sync (`_fivetran_synced` is stamped per operation)."""
    counts: dict[str, int] = {}
    with duckdb.connect(str(raw_path), read_only=True) as con:
        present = {
            r[0]
            for r in con.sql(
                "select table_name from information_schema.tables where table_schema = 'tester'"
            ).fetchall()
        }
        for table in RAW_TABLES:
            if table in present:
                row = con.execute(
                    f"select count(*) from tester.{table} where _fivetran_synced >= ?", [since]
                ).fetchone()
                counts[table] = int(row[0]) if row else 0
    return counts


def _failure_message(tail: list[str], code: int) -> str:
    """The runner's own error line(s), without the traceback that follows them."""
    for line in tail:
        if "Error: " in line:
            return line[line.index("Error: ") + len("Error: ") :].strip()[:1000]
    for line in tail:
        if "SEVERE" in line and "SYNC FAILED" not in line:
            return line.strip()[:1000]
    return f"fivetran debug exited with code {code}: " + " | ".join(tail[-5:])[:800]
