"""The model server does not list its bucket on every health check and prediction (#20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.forecast import model_server
from services.forecast.model_server import GCS_REFRESH_SECONDS, ModelStore, ServerConfig, create_app


def test_a_bucket_root_is_listed_once_however_many_health_checks_and_predictions_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cloud Storage is the boundary here: only the listing function is replaced, and counted."""
    listed: list[str] = []

    def latest(root: str) -> None:
        listed.append(root)  # no version yet: health 503, predict 503

    monkeypatch.setattr(model_server, "latest_version", latest)
    store = ModelStore("gs://bucket/models")  # no AIP_REFRESH_SECONDS, as on Vertex
    assert store.refresh_seconds == GCS_REFRESH_SECONDS == 60.0
    client = create_app(store, ServerConfig()).test_client()
    for _ in range(10):
        assert client.get("/health").status_code == 503
        assert client.post("/predict", json={"instances": []}).status_code in (400, 503)
    assert listed == ["gs://bucket/models"]


def test_a_local_folder_is_rechecked_on_every_request_so_a_new_training_needs_no_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    monkeypatch.setattr(model_server, "latest_version", lambda root: listed.append(root))
    client = create_app(ModelStore(tmp_path), ServerConfig()).test_client()
    for _ in range(3):
        client.get("/health")
    assert len(listed) == 3


def test_an_explicit_refresh_interval_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIP_REFRESH_SECONDS", "0")
    assert ModelStore("gs://b/m", ServerConfig().refresh_seconds).refresh_seconds == 0.0
