"""What `status` and `query` print when a person reads them: tables not folded at 80 columns when
the output is piped, floats rounded in tables and exact in --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from shared.runs import PipelineRun, record_run
from shared.settings import Settings
from shared.warehouse import open_warehouse

KEY = "gridsight_local/5f0c2a9e4b7d4e1f8a3c6b2d9e0f1a2b"  # 49 characters; status shows 40
DETAIL = "model server answered 503: no model version under the model dir yet"


def test_status_piped_is_not_folded_at_80_columns(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # CliRunner's output is not a terminal
    with open_warehouse(settings) as wh:
        record_run(wh, PipelineRun(handler="forecast", dedupe_key=KEY, status="failed", detail=DETAIL))
    result = CliRunner().invoke(build_app(), ["status"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "forecast" in line and "failed" in line)
    assert KEY[:40] in row  # the key column as status cuts it, on one line
    assert DETAIL[:60] in row  # and the detail, unfolded
    assert len(row) > 80


def test_query_rounds_floats_in_the_table_and_json_keeps_them(settings: Settings) -> None:
    sql = (
        "SELECT CAST(13151.669359999994 AS FLOAT64) AS kwh, CAST(0.000123456 AS FLOAT64) AS small,"
        " CAST(2 AS FLOAT64) AS two, CAST(1.005 AS NUMERIC) AS price, 7 AS n"
    )
    table = CliRunner().invoke(build_app(), ["query", sql], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if "13151" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["13151.67", "0.0001235", "2.00", "1.01", "7"]
    exact = CliRunner().invoke(build_app(), ["query", sql, "--json"])
    rows = json.loads(exact.stdout)
    assert rows[0]["kwh"] == 13151.669359999994
    assert rows[0]["small"] == 0.000123456
    assert rows[0]["price"] == "1.005"
