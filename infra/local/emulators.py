"""Google's emulators as supervised processes: Pub/Sub (gcloud), BigQuery (bqemulator), Cloud Storage.

Each is a `ProcessSpec`, so the supervisor that runs the local stack starts, health-checks (any
HTTP answer on the port), restarts and stops them like any service, and the tests start the same
processes the emulated-cloud stack runs. `emulator_env` is what points the Google client libraries
at them (PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST; BigQuery takes `bigquery_api_endpoint`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local.supervisor import ProcessSpec
from shared.settings import REPO_ROOT, Settings

__all__ = [
    "BQEMU",
    "bigquery_emulator_spec",
    "emulator_env",
    "missing_emulators",
    "pointed_at_emulators",
    "pubsub_emulator_spec",
    "storage_emulator_spec",
]

BQEMU = REPO_ROOT / ".venv-bqemu" / "bin" / "bqemulator"
_STORAGE = Path(sys.executable).with_name("gcp-storage-emulator")


def missing_emulators() -> list[str]:
    """One line per emulator that is not installed, with what to run (empty when all are there)."""
    missing = []
    if shutil.which("gcloud") is None:
        missing.append("gcloud (Google Cloud CLI with the Pub/Sub emulator) is not on PATH")
    if not BQEMU.exists():
        missing.append(f"bqemulator missing ({BQEMU}): run `make bqemu`")
    if not _STORAGE.exists():
        missing.append("gcp-storage-emulator missing: run `make venv` (it is a dev dependency)")
    return missing


def emulator_dir(settings: Settings, name: str) -> Path:
    path = settings.home / "emulators" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def pubsub_emulator_spec(settings: Settings) -> ProcessSpec:
    port = settings.pubsub_emulator_port
    return ProcessSpec(
        name="pubsub-emulator",
        argv=[
            "gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
            f"--project={settings.gcp_project}", f"--data-dir={emulator_dir(settings, 'pubsub')}",
        ],
        port=port,
    )  # fmt: skip


def bigquery_emulator_spec(settings: Settings, *, persistent: bool = True) -> ProcessSpec:
    """File-backed under the home by default, so `gridsight up --emulated-cloud` after a demo still
    has the demo's tables; tests run it in memory."""
    storage = (
        ["--persistent", "--data-dir", str(emulator_dir(settings, "bigquery"))]
        if persistent
        else ["--ephemeral"]
    )
    return ProcessSpec(
        name="bigquery-emulator",
        argv=[
            str(BQEMU), "start", *storage, "--project", settings.gcp_project,
            "--rest-host", "127.0.0.1", "--rest-port", str(settings.bigquery_emulator_port),
            "--grpc-host", "127.0.0.1", "--grpc-port", str(settings.bigquery_emulator_grpc_port),
            "--log-level", "warning",
        ],
        port=settings.bigquery_emulator_port,
    )  # fmt: skip


def storage_emulator_spec(settings: Settings, bucket: str) -> ProcessSpec:
    return ProcessSpec(
        name="storage-emulator",
        argv=[
            str(_STORAGE), "start", "--host", "127.0.0.1", "--port", str(settings.storage_emulator_port),
            "--default-bucket", bucket, "--quiet",
        ],
        port=settings.storage_emulator_port,
        extra_env={"STORAGE_BASE": str(emulator_dir(settings, "storage")), "STORAGE_DIR": "data"},
    )  # fmt: skip


def emulator_env(settings: Settings) -> dict[str, str]:
    """What the Google client libraries read to talk to the emulators instead of Google Cloud."""
    return {
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{settings.pubsub_emulator_port}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{settings.storage_emulator_port}",
        "GOOGLE_CLOUD_PROJECT": settings.gcp_project,
    }


@contextmanager
def pointed_at_emulators(settings: Settings) -> Iterator[None]:
    """This process's Google clients talk to the emulators for the duration (the demo trains and
    lands raw tables in-process); the previous environment comes back afterwards."""
    wanted = emulator_env(settings)
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
