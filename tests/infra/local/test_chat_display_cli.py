"""`gridsight chat` as a person reads it: the answer and one line of sources by default; the SQL and
rows with --show-sql, or on demand with /sql at the interactive prompt."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.ports import free_port
from shared.settings import Settings
from tests.services.chat.fleet import build_fleet

QUESTION = "Which meter used the most last week?"


@pytest.fixture
def fleet_home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GRIDSIGHT_CHAT_PORT", str(free_port()))  # never another stack's chat service
    build_fleet(settings)
    return settings


def test_an_answer_is_compact_by_default(fleet_home: Settings) -> None:
    result = CliRunner().invoke(build_app(), ["chat", "--local", QUESTION], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "SELECT" not in result.output.upper()
    assert lines[-1].startswith("sources: [1] query, ")
    assert lines[-1].endswith("(--show-sql or /sql shows the SQL and rows)")
    assert len(lines) <= 4


def test_show_sql_prints_the_query_and_its_rows(fleet_home: Settings) -> None:
    result = CliRunner().invoke(
        build_app(), ["chat", "--local", "--show-sql", QUESTION], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    assert "[1] SQL (" in result.output
    assert "SELECT" in result.output.upper()
    assert "sources:" not in result.output


def test_slash_sql_shows_the_last_answers_sql_at_the_prompt(fleet_home: Settings) -> None:
    result = CliRunner().invoke(
        build_app(), ["chat", "--local"], input=f"{QUESTION}\n/sql\n/nope\n\n", env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    compact, _, after = result.output.partition("sources: [1] query")
    assert "SELECT" not in compact.upper()  # the answer itself stays short
    assert "[1] SQL (" in after  # /sql printed the citation in full
    assert "commands: /sql" in after  # an unknown command says what there is


def test_the_cited_rows_show_the_figures_the_answer_uses(fleet_home: Settings) -> None:
    result = CliRunner().invoke(
        build_app(), ["chat", "--local", "--show-sql", QUESTION], env={"COLUMNS": "200"}
    )
    answer, _, cited = result.output.partition("[1] SQL")
    figures = re.findall(r"\d[\d,]*\.\d+", answer)  # e.g. "... HVAC plant (dev-002): 3,732.157 kWh."
    assert figures
    for figure in figures:
        assert f" {figure.replace(',', '')} " in cited  # the same digits in the cited rows, not re-rounded
