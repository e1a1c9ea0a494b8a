"""The dashboard's SQL on DuckDB and on BigQuery (bqemulator, official client) gives the same answers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.chat.dashboard.data import device_detail, fleet_overview
from shared.errors import NotFound
from shared.settings import Settings
from shared.warehouse import open_warehouse
from tests.emulator import PROJECT, provision_bigquery

pytestmark = pytest.mark.emulator


@pytest.fixture
def bigquery_settings(tmp_path: Path, bqemu_endpoint: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return provision_bigquery(
        Settings(
            home=tmp_path / "bq-home",
            warehouse_backend="bigquery",
            bigquery_api_endpoint=bqemu_endpoint,
            gcp_project=PROJECT,
            raw_dataset=f"raw_{tag}",
            analytics_dataset=f"energy_analytics_{tag}",
        )
    )


def test_fleet_and_device_pages_read_the_same_on_both_backends(
    settings, bigquery_settings, demo_fleet, load_fleet
):
    load_fleet(bigquery_settings, demo_fleet)
    pages = {}
    for name, backend in (("duckdb", settings), ("bigquery", bigquery_settings)):
        with open_warehouse(backend) as wh:
            pages[name] = (
                fleet_overview(wh).model_dump(mode="json"),
                device_detail(wh, "dev-001", hours=7 * 24).model_dump(mode="json"),
            )
            with pytest.raises(NotFound):
                device_detail(wh, "dev-999")
    duck_fleet, duck_device = pages["duckdb"]
    bq_fleet, bq_device = pages["bigquery"]
    assert duck_fleet["devices"]  # not two empty answers
    assert bq_fleet == duck_fleet
    assert bq_device == duck_device
