"""#18: no vendor record can blind, stall or poison the connector. Each finding of the issue as a
test through the connector's real validation and sync functions (in-process vendor feed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest
from fakes import FeedClient, Recorder

from infra.local.sync import CONNECTOR_SOURCE

CLOCK = datetime(2026, 3, 1, 12, tzinfo=UTC)
SINGLE = {"device_id": "dev-1", "meter_type": "single_phase", "nominal_voltage": 230.0,
          "installed_at": "2025-01-01T00:00:00Z"}  # fmt: skip
THREE = {"device_id": "dev-3", "meter_type": "three_phase", "nominal_voltage": 400.0,
         "installed_at": "2025-01-01T00:00:00Z"}  # fmt: skip
CONFIG = {"start_date": datetime(2026, 1, 1, tzinfo=UTC), "lookback": timedelta(hours=3),
          "page_size": 50, "checkpoint_rows": 1000, "clock": CLOCK}  # fmt: skip


@pytest.fixture(scope="module")
def connector() -> Iterator[ModuleType]:
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector as module

        module.log.LOG_LEVEL = module.log.Level.INFO  # outside the runner it is unset
        yield module
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)


@pytest.fixture
def op(connector: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(connector, "op", recorder)
    return recorder


def _at(hours: float) -> str:
    return (CLOCK - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(device: str = "dev-1", hours_ago: float = 5.0, **changes: object) -> dict:
    record = {"device_id": device, "timestamp": _at(hours_ago), "power_w": 800.0, "energy_wh": 12345.0,
              "voltage": 231.0, "temp_c": 7.5, "occupancy": False,
              "received_at": _at(hours_ago - 0.25)}  # fmt: skip
    record.update(changes)
    return record


def _classify(connector: ModuleType, record: dict, device: dict = SINGLE) -> tuple[str, dict]:
    return connector._classify(record, device["device_id"], {device["device_id"]: connector._profile(device)},
                               CLOCK)  # fmt: skip


def _sync(connector: ModuleType, feeds: dict, state: dict, devices: tuple = (SINGLE,)) -> None:
    known = {d["device_id"]: connector._profile(d) for d in devices}
    connector.sync_readings(FeedClient(feeds), dict(CONFIG), state, known)


# --- finding 1: one record blinds a device for good ------------------------------------------------
def test_a_reading_dated_2099_is_quarantined_and_does_not_blind_the_device(
    connector: ModuleType, op: Recorder
) -> None:
    first = reading(hours_ago=6)
    from_2099 = reading(timestamp="2099-01-01T00:00:00Z", received_at="2099-01-01T00:05:00Z")
    feeds = {"dev-1": [first, from_2099]}
    state: dict = {"cursors": {}}
    _sync(connector, feeds, state)
    assert [r["timestamp"] for r in op.table("reading")] == [datetime.fromisoformat(first["timestamp"])]
    [bad] = op.table("invalid_reading")
    assert "in the future" in bad["reason"]
    assert state["cursors"]["dev-1"] <= CLOCK.strftime("%Y-%m-%dT%H:%M:%SZ")  # never past the clock

    # the next sync: the meter's real readings since then must land (before: skipped for good)
    later = reading(hours_ago=1)
    feeds["dev-1"].append(later)
    op.rows.clear()
    _sync(connector, feeds, state)
    assert datetime.fromisoformat(later["timestamp"]) in {r["timestamp"] for r in op.table("reading")}


def test_a_cursor_already_blinded_by_an_older_version_is_forgotten(connector: ModuleType) -> None:
    cursors = {"dev-1": "2099-01-01T00:05:00Z", "dev-2": _at(1), "dev-3": "garbage"}
    assert connector.drop_future_cursors(cursors, CLOCK) == {"dev-2": _at(1)}
    assert connector._since(None, CONFIG) == "2026-01-01T00:00:00Z"  # so dev-1 is read from start_date


# --- finding 2: one record stops every sync ---------------------------------------------------------
@pytest.mark.parametrize("digits", [401, 5000])
def test_a_400_digit_power_quarantines_the_record_and_the_sync_completes(
    connector: ModuleType, op: Recorder, digits: int
) -> None:
    huge = f"HUGE{digits}"  # on the wire: {"power_w": 1000...0}, `digits` digits
    feeds = {"dev-1": [reading(hours_ago=6), reading(hours_ago=5, power_w=huge), reading(hours_ago=4)]}
    # before: OverflowError in math.isfinite (401 digits) or ValueError parsing the page (5,000
    # digits, retried until the sync failed), every sync
    _sync(connector, feeds, {"cursors": {}})
    assert len(op.table("reading")) == 2
    [bad] = op.table("invalid_reading")
    assert "power_w" in bad["reason"]


def test_an_arithmetic_error_inside_validation_quarantines_with_the_error(connector: ModuleType) -> None:
    table, row = _classify(connector, reading(power_w=10**400))  # an int straight in, not via JSON
    assert table == "invalid_reading"
    assert "OverflowError" in row["reason"] or "not a finite number" in row["reason"]


# --- finding 4: physically impossible values are accepted ------------------------------------------
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"voltage": -230.0}, "voltage -230.0 V is outside 0..460 V"),
        ({"voltage": 1e9}, "outside 0..460 V"),
        ({"power_w": 1e300}, "above the meter type's maximum 100000 W"),
        ({"energy_wh": 1e308}, "above the register maximum"),
        ({"timestamp": "0001-01-01T00:00:00Z"}, "before the device could read"),
        ({"timestamp": "2024-12-31T00:00:00Z", "received_at": "2025-01-01T00:00:00Z"},
         "before the device could read (2024-12-31T23:55:00Z)"),  # installed 2025-01-01, 5 min skew
        ({"temp_c": 1000.0}, "temp_c 1000.0 is outside"),
        ({"received_at": "2099-01-01T00:00:00Z"}, "received_at 2099-01-01T00:00:00Z is in the future"),
    ],
)  # fmt: skip
def test_physically_impossible_values_are_quarantined_with_the_reason(
    connector: ModuleType, changes: dict, reason: str
) -> None:
    table, row = _classify(connector, reading(**changes))
    assert table == "invalid_reading"
    assert reason in row["reason"]
    json.loads(row["raw_record"])  # the record is kept whole


def test_bounds_are_per_meter_type(connector: ModuleType) -> None:
    big = reading(device="dev-3", power_w=150_000.0, voltage=410.0)
    assert _classify(connector, big, THREE)[0] == "reading"  # a commercial three-phase service
    small = reading(power_w=150_000.0)
    assert _classify(connector, small, SINGLE)[0] == "invalid_reading"  # 150 kW on one phase: no
    assert _classify(connector, reading(voltage=0.0))[0] == "reading"  # an outage: a real 0 V reading


def test_a_reading_right_at_the_limits_is_valid(connector: ModuleType) -> None:
    edge = reading(power_w=100_000.0, voltage=460.0, energy_wh=1e11, temp_c=-90.0)
    assert _classify(connector, edge)[0] == "reading"


# --- finding 4b: a conflicting duplicate silently replaces the first --------------------------------
def test_conflicting_duplicate_is_kept_with_both_values_and_the_later_one_wins(
    connector: ModuleType, op: Recorder
) -> None:
    original = reading(hours_ago=5, power_w=800.0)
    corrected = reading(hours_ago=5, power_w=950.0, received_at=_at(2))
    same_again = dict(corrected)  # an identical re-send is not a conflict
    _sync(connector, {"dev-1": [original, corrected, same_again]}, {"cursors": {}})
    assert [r["power_w"] for r in op.table("reading")] == [800.0, 950.0, 950.0]  # last write wins
    [conflict] = op.table("reading_conflict")
    assert json.loads(conflict["replaced_values"])["power_w"] == 800.0
    assert json.loads(conflict["kept_values"])["power_w"] == 950.0
    assert conflict["timestamp"] == datetime.fromisoformat(original["timestamp"])
    assert conflict["kept_received_at"] > conflict["replaced_received_at"]
    tables = {t["table"]: t for t in connector.schema({})}
    assert tables["reading_conflict"]["primary_key"] == ["conflict_id"]


def test_a_record_of_wrong_types_everywhere_is_quarantined(connector: ModuleType) -> None:
    weird = {"device_id": ["dev-1"], "timestamp": 12, "power_w": {"a": 1}, "received_at": None, "é": "ü"}
    table, row = _classify(connector, weird)
    assert table == "invalid_reading"
    assert "unknown device_id" in row["reason"]
    assert _classify(connector, [1, 2])[0] == "invalid_reading"  # type: ignore[arg-type]
