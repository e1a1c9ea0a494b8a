"""Model artefacts: one folder per version, locally or under a Cloud Storage prefix.

    <root>/<version>/p10.txt p50.txt p90.txt forecaster.json model_card.json

`model_card.json` is written last, so a version without it is still being written and is never
picked. Versions are UTC timestamps, so the newest is the largest name; the model server re-checks
the root and swaps to a newer version without a restart.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.forecast.model import QuantileForecaster

__all__ = ["CARD_FILE", "ModelCard", "latest_version", "load_version", "save_version"]

CARD_FILE = "model_card.json"


class ModelCard(BaseModel):
    """What a trained model is: its version, the data it saw, how it scored."""

    version: str
    created_at: datetime
    data_window_start: datetime
    data_window_end: datetime
    devices: int
    training_rows: int
    feature_names: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    backtest: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    source: str = "warehouse"


def _is_gcs(root: str) -> bool:
    return root.startswith("gs://")


def _split_gcs(root: str) -> tuple[str, str]:
    bucket, _, prefix = root.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


def save_version(model: QuantileForecaster, card: ModelCard, root: str | Path) -> str:
    """Write the model, then its card; returns where the version lives."""
    root_s = str(root)
    if not _is_gcs(root_s):
        folder = Path(root_s) / card.version
        model.save(folder)
        (folder / CARD_FILE).write_text(card.model_dump_json(indent=2))
        return str(folder)
    from google.cloud import storage  # type: ignore[attr-defined]

    bucket_name, prefix = _split_gcs(root_s)
    bucket = storage.Client().bucket(bucket_name)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder)
        for path in sorted(folder.iterdir()):
            bucket.blob(f"{prefix}/{card.version}/{path.name}".lstrip("/")).upload_from_filename(str(path))
    bucket.blob(f"{prefix}/{card.version}/{CARD_FILE}".lstrip("/")).upload_from_string(
        card.model_dump_json(indent=2), content_type="application/json"
    )
    return f"{root_s.rstrip('/')}/{card.version}"


def latest_version(root: str | Path) -> str | None:
    """The newest complete version under `root`, or None while there is none."""
    root_s = str(root)
    if not _is_gcs(root_s):
        folder = Path(root_s)
        if not folder.is_dir():
            return None
        done = [p.name for p in folder.iterdir() if (p / CARD_FILE).is_file()]
        return max(done) if done else None
    from google.cloud import storage  # type: ignore[attr-defined]

    bucket_name, prefix = _split_gcs(root_s)
    names = [
        blob.name.split("/")[-2]
        for blob in storage.Client().list_blobs(bucket_name, prefix=f"{prefix}/" if prefix else None)
        if blob.name.endswith(f"/{CARD_FILE}")
    ]
    return max(names) if names else None


def load_version(root: str | Path, version: str, cache_dir: Path) -> tuple[QuantileForecaster, ModelCard]:
    """Load one version (downloading it into `cache_dir` first when it lives in Cloud Storage)."""
    root_s = str(root)
    if _is_gcs(root_s):
        from google.cloud import storage  # type: ignore[attr-defined]

        bucket_name, prefix = _split_gcs(root_s)
        folder = cache_dir / version
        folder.mkdir(parents=True, exist_ok=True)
        client = storage.Client()
        for blob in client.list_blobs(bucket_name, prefix=f"{prefix}/{version}/".lstrip("/")):
            blob.download_to_filename(str(folder / blob.name.split("/")[-1]))
    else:
        folder = Path(root_s) / version
    card = ModelCard.model_validate_json((folder / CARD_FILE).read_text())
    return QuantileForecaster.load(folder), card
