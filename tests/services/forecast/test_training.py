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


def test_the_trainer_gives_each_device_its_site_calendar(settings: Settings, fleet: list[str]) -> None:
    from datetime import datetime

    import pandas as pd

    from services.forecast.calendars import PUBLIC_DATA_CALENDAR, calendar_for
    from services.forecast.training import load_warehouse_panel
    from shared.warehouse import open_warehouse

    with open_warehouse(settings) as wh:
        wh.merge(
            "dim_device",
            pd.DataFrame(
                {"device_id": [fleet[1]], "site_id": "s1", "name": fleet[1], "timezone": "America/Chicago"}
            ),
            key=["device_id"],
        )
        panel = load_warehouse_panel(wh, datetime(2019, 11, 1))
    calendars = {d: panel.calendar_of(i) for i, d in enumerate(panel.device_ids)}
    assert calendars[fleet[1]] == calendar_for("America/Chicago")
    assert calendars[fleet[1]].country == "US"
    assert calendars[fleet[0]] == PUBLIC_DATA_CALENDAR  # no zone in dim_device: the public data's calendar
