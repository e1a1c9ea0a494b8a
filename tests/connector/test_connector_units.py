"""The connector's plain functions, imported as `fivetran debug` imports them (no runner)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from infra.local.sync import CONNECTOR_SOURCE


@pytest.fixture(scope="module")
def connector() -> Iterator[ModuleType]:
    """The project folder on sys.path, as the runner puts it; `client` is its sibling module."""
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector as module

        yield module
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)


GOOD = {
    "base_url": "http://127.0.0.1:8700",
    "api_key": "k",
    "page_size": "1000",
    "start_date": "2026-01-01",
    "lookback_hours": "3",
}


CLOCK = datetime(2026, 1, 6, tzinfo=UTC)  # the sync's clock for these records


def _known(connector: ModuleType, *device_ids: str) -> dict:
    """device_id -> validation profile, as sync_devices builds it from the vendor's device bodies."""
    body = {"meter_type": "single_phase", "nominal_voltage": 230.0, "installed_at": "2025-06-01T00:00:00Z"}
    return {d: connector._profile(body) for d in device_ids}


def _record(**changes: object) -> dict:
    record: dict = {
        "device_id": "dev-00001",
        "timestamp": "2026-01-05T00:00:00Z",
        "power_w": 500.0,
        "energy_wh": 1000.0,
        "voltage": 231.0,
        "temp_c": 4.5,
        "occupancy": True,
        "received_at": "2026-01-05T00:15:30Z",
    }
    record.update(changes)
    return record


def test_valid_configuration_is_parsed_to_types(connector: ModuleType) -> None:
    parsed = connector.validate_configuration(GOOD)

    assert parsed["page_size"] == 1000
    assert parsed["lookback"] == timedelta(hours=3)
    assert parsed["start_date"] == datetime(2026, 1, 1, tzinfo=UTC)


def test_configuration_missing_a_key_names_it(connector: ModuleType) -> None:
    with pytest.raises(ValueError, match="start_date is required"):
        connector.validate_configuration({k: v for k, v in GOOD.items() if k != "start_date"})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"power_w": "NaN"}, "power_w is not a finite number"),
        ({"energy_wh": -5.0}, "energy_wh (cumulative register) is negative"),
        ({"timestamp": "2027-02-09T00:00:00Z"}, "is in the future"),
        ({"device_id": "unknown-1"}, "unknown device_id"),
        ({"device_id": "dev-00002"}, "appeared in the feed of"),
        ({"timestamp": "yesterday"}, "timestamp is not an ISO 8601 UTC time"),
        ({"timestamp": "2026-01-05T00:00:00"}, "timestamp is not an ISO 8601 UTC time"),
        ({"occupancy": "yes"}, "occupancy is not a boolean"),
        ({"voltage": True}, "voltage is not a finite number"),
    ],
)
def test_malformed_records_are_quarantined_with_the_reason(
    connector: ModuleType, changes: dict, reason: str
) -> None:
    known = _known(connector, "dev-00001", "dev-00002")
    table, row = connector._classify(_record(**changes), "dev-00001", known, CLOCK)

    assert table == "invalid_reading"
    assert reason in row["reason"]
    assert len(row["record_id"]) == 32


def test_the_same_bad_record_always_gets_the_same_id(connector: ModuleType) -> None:
    bad = _record(power_w="NaN")
    known = _known(connector, "dev-00001")
    first = connector._classify(bad, "dev-00001", known, CLOCK)[1]["record_id"]
    again = connector._classify(dict(reversed(list(bad.items()))), "dev-00001", known, CLOCK)[1]["record_id"]

    assert first == again


def test_valid_record_becomes_a_reading_with_float_measures(connector: ModuleType) -> None:
    record = _record(power_w=500, temp_c=None)
    table, row = connector._classify(record, "dev-00001", _known(connector, "dev-00001"), CLOCK)

    assert table == "reading"
    assert row["power_w"] == 500.0
    assert isinstance(row["power_w"], float)
    assert row["temp_c"] is None


def test_valid_record_times_are_the_parsed_utc_moments(connector: ModuleType) -> None:
    record = _record(timestamp="2026-01-05T01:15:00+01:00")
    table, row = connector._classify(record, "dev-00001", _known(connector, "dev-00001"), CLOCK)

    assert table == "reading"
    assert row["timestamp"] == datetime(2026, 1, 5, 0, 15, tzinfo=UTC)
    assert row["received_at"].utcoffset() == timedelta(0)
    assert row["received_at"] == datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))


def test_schema_declares_the_raw_table_contract(connector: ModuleType) -> None:
    tables = {t["table"]: t for t in connector.schema({})}

    assert tables["reading"]["primary_key"] == ["device_id", "timestamp"]
    reading = tables["reading"]["columns"]
    assert {reading[c] for c in ("power_w", "energy_wh", "voltage", "temp_c")} == {"DOUBLE"}
    assert reading["timestamp"] == reading["received_at"] == "UTC_DATETIME"
    assert reading["occupancy"] == "BOOLEAN"
    assert set(tables["invalid_reading"]["columns"]) >= {
        "record_id",
        "device_id",
        "timestamp",
        "reason",
        "raw_record",
        "received_at",
    }
    assert tables["device"]["columns"]["installed_at"] == "UTC_DATETIME"


def test_retry_after_accepts_seconds_and_http_dates(connector: ModuleType) -> None:
    client = sys.modules["client"]

    assert client.parse_retry_after("7") == 7.0
    assert client.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert client.parse_retry_after("soon") is None
