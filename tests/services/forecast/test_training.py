"""`gridsight train` from the warehouse: a versioned artefact with its model card, served next."""

from __future__ import annotations

from typer.testing import CliRunner

from services.forecast.artefact import ModelCard, latest_version
from services.forecast.model_server import ModelStore, ServerConfig, create_app
from shared.settings import Settings


def test_train_from_warehouse_writes_a_version_with_its_card(settings: Settings, fleet: list[str]) -> None:
    from infra.local.cli import build_app

    result = CliRunner().invoke(build_app(), ["train"])
    assert result.exit_code == 0, result.output
    version = latest_version(settings.model_dir)
    assert version is not None
    assert version in result.output
    card = ModelCard.model_validate_json((settings.model_dir / version / "model_card.json").read_text())
    assert card.devices == len(fleet) - 1  # the decommissioned device is not trained on
    assert card.data_window_end.isoformat().startswith("2019-11-18T00:00")
    assert {"gridsight", "seasonal_naive_24h", "seasonal_naive_168h"} <= set(card.backtest)
    client = create_app(ModelStore(settings.model_dir), ServerConfig()).test_client()
    assert client.get("/health").get_json()["model_version"] == version


def test_train_with_an_empty_warehouse_says_what_is_missing(settings: Settings) -> None:
    from infra.local.cli import build_app

    result = CliRunner().invoke(build_app(), ["train"])
    assert result.exit_code == 1  # missing data is a failure (exit 1), not a usage error
    assert "hourly_consumption has no rows" in result.output
