"""The DuckDB adapter through open_warehouse: schema, GoogleSQL queries, MERGE, raw attachment."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from shared.errors import NotFound
from shared.settings import Settings
from shared.warehouse import Warehouse, load_contracts, open_warehouse


def _forecasts(p50: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device_id": ["d1", "d2"],
            "target_hour": [datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 11, tzinfo=UTC)],
            "p10": [0.5, 0.6],
            "p50": [p50, 1.0],
            "p90": [2.0, 2.0],
            "model_version": ["v1", "v1"],
            "made_at": [datetime(2026, 1, 1, 9, tzinfo=UTC)] * 2,
        }
    )


def test_open_creates_every_contract_table(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        assert isinstance(wh, Warehouse)
        for table in load_contracts():
            assert wh.table_exists(f"energy_analytics.{table}"), table
    with open_warehouse(settings) as wh:  # idempotent on an existing file
        assert wh.table_exists("energy_analytics.pipeline_runs")


def test_merge_inserts_then_rerun_changes_nothing_then_updates(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        assert wh.merge("forecasts", _forecasts(1.0), key=["device_id", "target_hour"]) == 2
        assert wh.merge("forecasts", _forecasts(1.0), key=["device_id", "target_hour"]) == 0
        assert wh.merge("forecasts", _forecasts(1.5), key=["device_id", "target_hour"]) == 1
        df = wh.query_df(
            "SELECT device_id, p50 FROM energy_analytics.forecasts WHERE target_hour >= @since"
            " ORDER BY device_id",
            {"since": datetime(2026, 1, 1, 10, tzinfo=UTC)},
        )
    assert df.to_dict("records") == [{"device_id": "d1", "p50": 1.5}, {"device_id": "d2", "p50": 1.0}]


def test_merge_refuses_duplicate_keys_and_unknown_columns(settings: Settings) -> None:
    doubled = pd.concat([_forecasts(1.0), _forecasts(1.0)])
    with open_warehouse(settings) as wh:
        with pytest.raises(ValueError, match="duplicate rows"):
            wh.merge("forecasts", doubled, key=["device_id", "target_hour"])
        with pytest.raises(ValueError, match="no columns"):
            wh.merge("forecasts", _forecasts(1.0).assign(bogus=1), key=["device_id", "target_hour"])


def test_timestamps_come_back_as_utc(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        wh.merge("forecasts", _forecasts(1.0), key=["device_id", "target_hour"])
        df = wh.query_df("SELECT TIMESTAMP_TRUNC(made_at, DAY) AS d FROM energy_analytics.forecasts LIMIT 1")
    assert df["d"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")


def test_raw_tables_are_absent_until_the_connector_file_exists(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        assert not wh.table_exists("raw.reading")
        with pytest.raises(NotFound, match="no raw data yet"):
            wh.query("SELECT * FROM raw.reading")
    settings.raw_duckdb_path.parent.mkdir(parents=True)
    con = duckdb.connect(str(settings.raw_duckdb_path))
    con.execute("CREATE SCHEMA tester; CREATE TABLE tester.reading AS SELECT 'd1' AS device_id")
    con.close()
    with open_warehouse(settings) as wh:
        assert wh.table_exists("raw.reading")
        assert wh.query("SELECT device_id FROM raw.reading").to_pylist() == [{"device_id": "d1"}]


def test_more_than_one_statement_is_refused(settings: Settings) -> None:
    with open_warehouse(settings) as wh, pytest.raises(ValueError, match="exactly one"):
        wh.query("SELECT 1; DROP TABLE energy_analytics.forecasts")
