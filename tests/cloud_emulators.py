"""The Pub/Sub and Cloud Storage emulators as session fixtures: started once, stopped after the session.

They are the same ProcessSpecs `gridsight up --emulated-cloud` runs (infra/local/emulators.py), under
the same supervisor. Tests isolate themselves by project (Pub/Sub) or object prefix (Cloud Storage)
instead of restarting an emulator, which takes about 10 s.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from infra.local.emulators import pubsub_emulator_spec, storage_emulator_spec
from infra.local.ports import free_port
from infra.local.supervisor import Supervisor
from shared.settings import Settings

TEST_BUCKET = "gridsight-test-models"


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running official Pub/Sub emulator (PUBSUB_EMULATOR_HOST's value)."""
    if shutil.which("gcloud") is None:
        pytest.skip("!!! gcloud (Google Cloud CLI) not on PATH: Pub/Sub emulator tests NOT run")
    settings = Settings(home=tmp_path_factory.mktemp("pubsub-emulator"), pubsub_emulator_port=free_port())
    with Supervisor(settings, [pubsub_emulator_spec(settings)]) as stack:
        stack.wait_healthy(timeout_s=90)
        yield f"127.0.0.1:{settings.pubsub_emulator_port}"


@pytest.fixture(scope="session")
def storage_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running Cloud Storage emulator with bucket `gridsight-test-models`."""
    settings = Settings(home=tmp_path_factory.mktemp("storage-emulator"), storage_emulator_port=free_port())
    spec = storage_emulator_spec(settings, TEST_BUCKET)
    if not shutil.which(spec.argv[0]):
        pytest.skip("!!! gcp-storage-emulator not installed (dev dependency): GCS tests NOT run")
    with Supervisor(settings, [spec]) as stack:
        stack.wait_healthy(timeout_s=60)
        yield f"http://127.0.0.1:{settings.storage_emulator_port}"
