"""Each model's sibling .yml holds on real output: its columns, a unique non-null key, sane features."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.duckdb import DuckDBWarehouse
from shared.warehouse.models import ordered_models
from tests.sql.landing import START

MODELS = [c.table for c in load_contracts().values() if c.is_model]
MAY_BE_EMPTY = {"data_quality"}  # the fixture fleet's registers never go backwards


def test_models_run_after_the_models_they_read() -> None:
    order = [c.table for c in ordered_models()]
    assert order.index("fct_reading") < order.index("hourly_consumption") < order.index("ml_features")
    assert (
        order.index("dim_device") < order.index("hourly_consumption") < order.index("daily_site_consumption")
    )


def test_model_output_matches_its_contract(landed: Settings) -> None:
    refresh_features(landed)
    with open_warehouse(landed) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        for table in MODELS:
            contract = load_contracts()[table]
            key = ", ".join(contract.unique_key)
            assert wh.columns(table) == list(contract.columns), table
            total = wh.query(f"SELECT COUNT(*) AS n FROM energy_analytics.{table}").to_pylist()[0]["n"]
            keys = wh.query(
                f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT {key} FROM energy_analytics.{table})"
            )
            nulls = " OR ".join(f"{k} IS NULL" for k in contract.unique_key)
            null_keys = wh.query(f"SELECT COUNT(*) AS n FROM energy_analytics.{table} WHERE {nulls}")
            assert total > 0 or table in MAY_BE_EMPTY, table
            assert keys.to_pylist()[0]["n"] == total, f"{table}: duplicate keys"
            assert null_keys.to_pylist()[0]["n"] == 0, f"{table}: NULL keys"


def test_ml_features_lags_are_the_hours_before(landed: Settings) -> None:
    refresh_features(landed)
    hour = START + timedelta(hours=30)
    with open_warehouse(landed) as wh:
        feats = wh.query_df(
            "SELECT * FROM energy_analytics.ml_features WHERE device_id = 'dev-00000' AND hour = @h",
            {"h": hour},
        ).iloc[0]
        hourly = wh.query_df(
            "SELECT hour, energy_kwh FROM energy_analytics.hourly_consumption WHERE device_id = 'dev-00000'"
        ).set_index("hour")["energy_kwh"]
    assert feats["lag_1h_kwh"] == pytest.approx(hourly[hour - timedelta(hours=1)])
    assert feats["lag_24h_kwh"] == pytest.approx(hourly[hour - timedelta(hours=24)])
    assert feats["lag_168h_kwh"] is None or feats["lag_168h_kwh"] != feats["lag_168h_kwh"]  # before the data
    window = hourly[(hourly.index >= hour - timedelta(hours=24)) & (hourly.index < hour)]
    assert feats["rolling_24h_mean_kwh"] == pytest.approx(window.mean())
    assert feats["day_of_week"] == 2  # 2026-03-02 is a Monday; Sunday = 1
    assert feats["hour_of_day"] == 6
