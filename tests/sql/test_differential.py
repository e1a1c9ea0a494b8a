"""Differential: every model on DuckDB and on BigQuery (bqemulator, official client) gives the same rows.

The same GoogleSQL files run on both; the raw rows are identical (mirrored from the connector file).
Covered: a first full build, then an incremental refresh after new data, a register reset and a
correction, a decommissioning, a vendor-removed device and a deleted reading.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.refresh import refresh_features
from shared.settings import Settings
from shared.warehouse import load_contracts, open_warehouse
from shared.warehouse.bigquery import BigQueryWarehouse
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings
from tests.emulator import PROJECT
from tests.sql.landing import (
    START,
    SYNC_1,
    assert_same_tables,
    land,
    land_fleet,
    mirror_raw_to_bigquery,
    snapshot,
)

pytestmark = pytest.mark.emulator

N = 3  # devices: the emulator is slow, keep the fixture small


@pytest.fixture
def backends(settings: Settings, tmp_path: Path, bqemu_endpoint: str) -> tuple[Settings, Settings]:
    tag = uuid.uuid4().hex[:8]
    bq = Settings(
        home=tmp_path / "bq-home",
        warehouse_backend="bigquery",
        bigquery_api_endpoint=bqemu_endpoint,
        gcp_project=PROJECT,
        raw_dataset=f"raw_{tag}",
        analytics_dataset=f"energy_analytics_{tag}",
    )
    return settings, bq


def _refresh_both(duck: Settings, bq: Settings) -> None:
    mirror_raw_to_bigquery(duck, bq)
    refresh_features(duck)
    refresh_features(bq)


def test_models_give_identical_rows_on_duckdb_and_bigquery(backends: tuple[Settings, Settings]) -> None:
    duck, bq = backends
    land_fleet(duck, days=2, devices=N)
    _refresh_both(duck, bq)
    first = snapshot(duck)
    assert all(len(frame) for name, frame in first.items() if name != "data_quality")
    assert_same_tables(first, snapshot(bq))

    end = START + timedelta(days=2)

    def more(raw: RawStore) -> None:
        ids = [f"dev-{i:05d}" for i in range(N)]
        registers = raw.last_registers()
        registers["dev-00000"] -= 5000.0  # a correction: the register (~65 kWh) steps back
        registers["dev-00001"] = 10.0  # the meter resets
        rows = make_readings(ids, end, end + timedelta(hours=6), start_registers=registers, seed=3)
        later = SYNC_1 + timedelta(days=1)
        raw.upsert("reading", rows, later)
        _, devices = make_fleet(N)
        gone = devices.filter(pc.equal(devices["device_id"], "dev-00001")).to_pylist()[0]
        gone.update(status="decommissioned", decommissioned_at=end + timedelta(hours=6))
        raw.upsert("device", pa.Table.from_pylist([gone], schema=devices.schema), later)
        raw.delete("device", [{"device_id": "dev-00001"}], later)  # decommissioned: history stays
        raw.delete("device", [{"device_id": "dev-00002"}], later)  # removed by the vendor
        raw.delete(
            "reading",
            [{"device_id": "dev-00001", "timestamp": START + timedelta(hours=7)}],
            SYNC_1 + timedelta(days=1),
        )

    land(duck, more)
    _refresh_both(duck, bq)
    second = snapshot(duck)
    assert set(second["data_quality"]["check_name"]) == {"register_reset", "register_correction"}
    assert set(second["dim_device"]["device_id"]) == {"dev-00000", "dev-00001"}
    assert_same_tables(second, snapshot(bq))


def test_bigquery_tables_are_day_partitioned_and_clustered_per_contract(
    backends: tuple[Settings, Settings],
) -> None:
    _, bq = backends
    with open_warehouse(bq) as wh:
        assert isinstance(wh, BigQueryWarehouse)
        for name, contract in load_contracts().items():
            table = wh.table(name)
            assert [f.name for f in table.schema] == list(contract.columns), name
            if contract.partition_by:
                assert table.time_partitioning.field == contract.partition_by, name
                assert table.time_partitioning.type_ == "DAY", name
            assert (table.clustering_fields or []) == list(contract.cluster_by), name
