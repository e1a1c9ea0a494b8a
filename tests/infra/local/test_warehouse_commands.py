"""`gridsight refresh` and `gridsight query` through the CLI, on a landed raw fixture."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from infra.local.commands import warehouse
from shared.settings import Settings
from tests.sql.landing import N_DEVICES, land_fleet


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    warehouse.register(app)
    return app


def test_refresh_prints_what_changed_then_nothing(cli: typer.Typer, settings: Settings) -> None:
    land_fleet(settings, days=1)
    first = CliRunner().invoke(cli, ["refresh"])
    assert first.exit_code == 0, first.output
    assert "full rebuild" in first.output
    assert "hourly_consumption" in first.output
    assert f"{N_DEVICES} devices" in first.output
    second = CliRunner().invoke(cli, ["refresh"])
    assert second.exit_code == 0, second.output
    assert "no changes since the last refresh" in second.output


def test_refresh_without_a_sync_says_nothing_to_do(cli: typer.Typer, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["refresh", "--full"])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output


def test_query_prints_json_rows(cli: typer.Typer, settings: Settings) -> None:
    land_fleet(settings, days=1)
    assert CliRunner().invoke(cli, ["refresh"]).exit_code == 0
    result = CliRunner().invoke(
        cli,
        [
            "query",
            "SELECT device_id, COUNT(*) AS hours FROM energy_analytics.hourly_consumption"
            " GROUP BY device_id ORDER BY device_id",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0] == {"device_id": "dev-00000", "hours": 24}
    assert len(rows) == N_DEVICES


def test_query_refuses_anything_but_one_select(cli: typer.Typer, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["query", "DELETE FROM energy_analytics.forecasts WHERE TRUE"])
    assert result.exit_code == 2
    assert "only a single SELECT is allowed" in result.output


def test_query_reports_engine_errors_without_a_traceback(cli: typer.Typer, settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["query", "SELECT no_such_column FROM energy_analytics.forecasts"])
    assert result.exit_code == 1
    assert "query failed" in result.output
    assert "Traceback" not in result.output
