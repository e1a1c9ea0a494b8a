"""One fuzz case: a hostile vendor feed through the connector's real sync_readings, and the #18
invariants checked on what it emitted. Shared by the property test and bench/bench_fuzz.py."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from fakes import FeedClient, Recorder
from vendor_strategies import CLOCK, DEVICES

DEVICE_BODIES = {
    "dev-1": {"meter_type": "single_phase", "nominal_voltage": 230.0, "installed_at": "2026-01-01T00:00:00Z"},
    "dev-3": {"meter_type": "three_phase", "nominal_voltage": 400.0, "installed_at": "2025-06-01T00:00:00Z"},
}
SKEW = timedelta(minutes=5)


def run_case(connector: ModuleType, recorder: Recorder, feeds: dict[str, list[Any]]) -> dict[str, int]:
    """Sync `feeds` twice (the second as the next sync, from the first's cursors) and check:
    the sync completes; every served record becomes exactly one reading or invalid_reading row,
    in order; every reading is inside its device's physical bounds and before the clock; no cursor
    passes the clock; a conflict row pairs two different value sets of one (device, timestamp)."""
    known = {d: connector._profile(DEVICE_BODIES[d]) for d in DEVICES}
    config = {"start_date": datetime(2026, 1, 1, tzinfo=CLOCK.tzinfo), "lookback": timedelta(hours=3),
              "page_size": 25, "checkpoint_rows": 40, "clock": CLOCK}  # fmt: skip
    state: dict = {"cursors": {}}
    counts = {"served": 0, "reading": 0, "invalid_reading": 0, "reading_conflict": 0}
    for _ in range(2):
        recorder.rows.clear()
        client = FeedClient(feeds, page_size=25)
        served = _served(client, feeds, state, config, connector)
        connector.sync_readings(client, dict(config), state, known)  # must not raise
        emitted = [(t, r) for t, rows in recorder.rows.items() for r in rows]
        _check_one_row_per_record(recorder, served)
        for table in counts.keys() - {"served"}:
            counts[table] += len(recorder.table(table))
        counts["served"] += len(served)
        assert len(emitted) >= len(served)
        for row in recorder.table("reading"):
            _check_reading(row, known)
        for row in recorder.table("reading_conflict"):
            assert row["replaced_values"] != row["kept_values"]
        for cursor in state["cursors"].values():
            assert datetime.fromisoformat(cursor.replace("Z", "+00:00")) <= CLOCK, cursor
    return counts


def _served(client: FeedClient, feeds: dict, state: dict, config: dict, connector: ModuleType) -> list:
    """What the feed will serve this sync, in order (computed the way the vendor does)."""
    out = []
    probe = FeedClient(feeds, page_size=client.page_size)
    for device in DEVICES:
        since = connector._since(state["cursors"].get(device), config)
        for page in probe.pages(device, {"received_since": since}):
            out += [(device, r) for r in page]
    return out


def _check_one_row_per_record(recorder: Recorder, served: list) -> None:
    readings = recorder.table("reading")
    invalid = recorder.table("invalid_reading")
    assert len(readings) + len(invalid) == len(served), "a record was dropped or doubled"


def _check_reading(row: dict, known: dict) -> None:
    power_max, voltage_max, register_max, earliest = known[row["device_id"]]
    for column in ("power_w", "energy_wh"):
        assert isinstance(row[column], float)
        assert math.isfinite(row[column])
    assert 0 <= row["power_w"] <= power_max
    assert 0 <= row["energy_wh"] <= register_max
    assert row["voltage"] is None or 0 <= row["voltage"] <= voltage_max
    assert row["temp_c"] is None or -90 <= row["temp_c"] <= 100
    assert row["occupancy"] is None or isinstance(row["occupancy"], bool)
    assert earliest <= row["timestamp"] <= row["received_at"] + SKEW
    assert row["received_at"] <= CLOCK + SKEW
