"""The connector through the real `fivetran debug` runner against the simulator on loopback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from connector_harness import Vendor, assert_same, at, expected, read_landed, state_of, sync

from simulator.fleet import DAY_S, FleetSpec

pytestmark = pytest.mark.slow


def test_full_sync_lands_exactly_the_vendor_data_with_malformed_records_quarantined(
    tmp_path: Path, vendor
) -> None:
    v: Vendor = vendor(FleetSpec(devices=8, days=2, seed=7, malformed_rate=0.01, decommission_share=0.3))

    result = sync(tmp_path / "home", v)

    assert result.ok, result.error
    landed = read_landed(result.raw_path)
    want = expected(v.fleet, v.api.now)
    assert_same(landed, want)
    assert want.invalid, "the spec must produce malformed records for this test to mean anything"
    kinds = set(want.invalid.values())
    reasons = " | ".join(landed.invalid.values())
    if "nan_power" in kinds:
        assert "not a finite number" in reasons
    if "negative_energy" in kinds:
        assert "negative" in reasons
    if "unknown_device" in kinds:
        assert "unknown device_id" in reasons
    if "future_timestamp" in kinds:
        assert "in the future" in reasons
    assert result.rows["reading"] == len(want.readings)


def test_incremental_sync_fetches_only_new_pages_and_equals_one_sync_over_everything(
    tmp_path: Path, vendor
) -> None:
    """Also test 5: late backlog uploads and decommissionings arrive on the next sync."""
    spec = FleetSpec(devices=8, days=2, seed=11, late_share=0.5, decommission_share=0.5, malformed_rate=0.005)
    v: Vendor = vendor(spec)
    now1 = v.api.now
    later = [
        d.decommissioned_at for d in v.fleet.devices() if d.decommissioned_at and d.decommissioned_at > now1
    ]
    assert later, "the spec must decommission a device after the first sync"
    first = sync(tmp_path / "inc", v, page_size="100")
    assert first.ok, first.error
    after_first = read_landed(first.raw_path)
    cursors = state_of(tmp_path / "inc")["cursors"]
    requests_first = v.readings_requests()
    assert requests_first > 0

    v.api.advance((min(later) - now1) / 3600 + 6)
    second = sync(tmp_path / "inc", v, page_size="100")
    assert second.ok, second.error
    requests_second = v.readings_requests() - requests_first

    # Only the new pages: per device, the records received since its cursor minus the look-back.
    now2 = v.api.now
    pages = 0
    for dev in v.fleet.devices():
        since = (
            at(cursors[dev.device_id]) - 3 * 3600 if dev.device_id in cursors else at("2026-01-01T00:00:00Z")
        )
        count = sum(
            1
            for day in range(v.fleet.first_reading(dev) // DAY_S, now2 // DAY_S + 1)
            for rec in v.fleet.day_records(dev, day)
            if rec.received >= since and rec.visible <= now2
        )
        pages += max(1, math.ceil(count / 100))
    assert requests_second == pages

    incremental = read_landed(second.raw_path)
    before_once = v.readings_requests()
    once = sync(tmp_path / "once", v, page_size="100")
    assert once.ok, once.error
    assert requests_second < v.readings_requests() - before_once, "an incremental sync re-read everything"
    assert_same(incremental, read_landed(once.raw_path))
    assert_same(incremental, expected(v.fleet, now2))

    # Late backlog uploads: readings timed before the first sync that only the second one brought.
    late_ids = {d.device_id for d in v.fleet.devices() if d.late}
    backlog = [k for k in incremental.readings.keys() - after_first.readings.keys() if k[1] < now1]
    assert any(device in late_ids for device, _ in backlog)
    # Decommissioned between the syncs: live after the first, deleted (soft) after the second.
    gone = [
        d.device_id for d in v.fleet.devices() if d.decommissioned_at and now1 < d.decommissioned_at <= now2
    ]
    assert gone
    for device_id in gone:
        assert after_first.devices[device_id] is False
        assert incremental.devices[device_id] is True
        assert any(k[0] == device_id for k in incremental.readings), "a deleted device keeps its readings"


def test_the_fleet_feed_through_the_runner_lands_the_vendor_data_in_a_few_requests(
    tmp_path: Path, vendor
) -> None:
    v: Vendor = vendor(FleetSpec(devices=12, days=2, seed=17, malformed_rate=0.01, decommission_share=0.3))
    first = sync(tmp_path / "home", v, change_feed="true", page_size="500")
    assert first.ok, first.error
    assert_same(read_landed(first.raw_path), expected(v.fleet, v.api.now))
    after_first = v.api.stats["changes"]
    v.api.advance(0.25)
    second = sync(tmp_path / "home", v, change_feed="true", page_size="500")

    assert second.ok, second.error
    assert_same(read_landed(second.raw_path), expected(v.fleet, v.api.now))
    assert v.api.stats["readings"] == 0
    # The 15-minute cycle: 12 meters publish about 12 records, one page, not a request per device.
    assert v.api.stats["changes"] - after_first == 1
    assert second.rows["reading"] < 12 * 3


def test_twenty_percent_faults_land_the_same_rows_as_a_clean_sync(tmp_path: Path, vendor) -> None:
    spec = FleetSpec(devices=5, days=2, seed=5, malformed_rate=0.005)
    clean: Vendor = vendor(spec)
    faulty: Vendor = vendor(spec, fault_rate=0.2)

    clean_result = sync(tmp_path / "clean", clean, page_size="50")
    faulty_result = sync(tmp_path / "faulty", faulty, page_size="50")

    assert clean_result.ok, clean_result.error
    assert faulty_result.ok, faulty_result.error
    stats = faulty.api.stats
    assert stats["fault_429"] + stats["fault_5xx"] + stats["fault_slow"] >= 3, stats
    assert_same(read_landed(faulty_result.raw_path), read_landed(clean_result.raw_path))
    assert_same(read_landed(faulty_result.raw_path), expected(faulty.fleet, faulty.api.now))
