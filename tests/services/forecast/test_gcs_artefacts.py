"""Model versions in Cloud Storage (`gs://`), on the Cloud Storage emulator through google-cloud-storage:
what the trainer writes there the model server finds, loads and swaps in without a restart."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from services.forecast.artefact import CARD_FILE, latest_version, load_version, save_version
from services.forecast.dataset import Panel
from services.forecast.model_server import ModelStore, ServerConfig, create_app
from tests.cloud_emulators import TEST_BUCKET
from tests.services.forecast.conftest import history_of
from tests.services.forecast.test_model_server import ORIGIN


@pytest.fixture
def gcs_root(storage_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix in the emulator's bucket, so tests sharing one emulator never see each other."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator)
    return f"gs://{TEST_BUCKET}/models-{uuid.uuid4().hex[:8]}"


def test_a_saved_version_lands_in_the_bucket_and_loads_back(gcs_root: str, trained, tmp_path: Path) -> None:
    model, card = trained
    where = save_version(model, card, gcs_root)
    assert where == f"{gcs_root}/{card.version}"
    from google.cloud import storage

    bucket, prefix = gcs_root.removeprefix("gs://").split("/", 1)
    names = {b.name.rsplit("/", 1)[1] for b in storage.Client().list_blobs(bucket, prefix=f"{prefix}/")}
    assert {CARD_FILE, "p10.txt", "p50.txt", "p90.txt"} <= names
    assert latest_version(gcs_root) == card.version
    loaded, loaded_card = load_version(gcs_root, card.version, tmp_path / "cache")
    assert loaded_card == card
    x = np.random.default_rng(1).random((4, len(card.feature_names)))
    assert np.array_equal(loaded.boosters["p50"].predict(x), model.boosters["p50"].predict(x))


def test_the_model_server_hot_loads_a_newer_gcs_version(gcs_root: str, trained, panel_slice: Panel) -> None:
    model, card = trained
    # re-check the bucket on every call here; a deployed server lists it at most once a minute
    # (GCS_REFRESH_SECONDS, tested in test_model_store_refresh.py)
    client = create_app(ModelStore(gcs_root, refresh_seconds=0.0), ServerConfig()).test_client()
    assert client.get("/health").status_code == 503  # nothing in the bucket yet
    save_version(model, card, gcs_root)
    assert client.get("/health").get_json()["model_version"] == card.version
    newer = card.model_copy(update={"version": "99990101T000000Z-gcs"})
    save_version(model, newer, gcs_root)
    assert client.get("/health").get_json()["model_version"] == newer.version  # no restart
    meter = panel_slice.device_ids[0]
    body = {"instances": [{"device_id": meter, "origin": "2019-11-18T00:00:00Z",
                           "kwh": history_of(panel_slice, meter, ORIGIN)}]}  # fmt: skip
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    assert response.get_json()["predictions"][0]["model_version"] == newer.version


def test_an_incomplete_gcs_version_without_its_card_is_never_picked(gcs_root: str, trained) -> None:
    """The card is written last: a version caught mid-upload (no card yet) is invisible."""
    model, card = trained
    save_version(model, card, gcs_root)
    from google.cloud import storage

    bucket, prefix = gcs_root.removeprefix("gs://").split("/", 1)
    storage.Client().bucket(bucket).blob(f"{prefix}/99990101T000000Z-partial/p50.txt").upload_from_string("x")
    assert latest_version(gcs_root) == card.version
