"""#18 finding 1 through the real `fivetran debug` runner: a vendor record dated 2099 (timestamp and
received_at both) in one device's feed is quarantined, and that device's later readings still land
on the next sync (before, the 2099 received_at became its cursor and hid everything after it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from connector_harness import API_KEY, Vendor, expected, read_landed, state_of, sync

from simulator.faults import FaultPolicy
from simulator.fleet import DAY_S, Fleet, FleetSpec, RawRecord, iso, parse_iso
from simulator.server import SimulatorServer, VendorApi

pytestmark = pytest.mark.slow
Y2099 = parse_iso("2099-01-01T00:00:00Z")


class FleetWith2099(Fleet):
    """The simulator's fleet plus one record from 2099 on `victim`'s first served day, visible at once."""

    victim = "dev-00001"

    def records(self, device_id: str, day: int) -> list[RawRecord]:
        out = super().records(device_id, day)
        if device_id == self.victim and day == self.first_day(device_id):
            body = dict(out[0].body, timestamp=iso(Y2099), received_at=iso(Y2099 + 300))
            out = [
                *out,
                RawRecord(received=Y2099 + 300, ts=Y2099, visible=day * DAY_S, body=body, malformed="2099"),
            ]
        return out


def test_a_record_from_2099_does_not_blind_its_device(tmp_path: Path) -> None:
    fleet = FleetWith2099(FleetSpec(devices=3, days=1, seed=5, malformed_rate=0.0, decommission_share=0.0,
                                    late_share=0.0, feed_lag_share=0.0))  # fmt: skip
    api = VendorApi(fleet, API_KEY, FaultPolicy(rate=0.0))
    server = SimulatorServer(api).start()
    try:
        vendor = Vendor(fleet, api, server.url)
        first = sync(tmp_path / "home", vendor)
        assert first.ok, first.error
        cursor = state_of(tmp_path / "home")["cursors"][FleetWith2099.victim]
        assert not cursor.startswith("2099")
        api.advance(12)
        second = sync(tmp_path / "home", vendor)
        assert second.ok, second.error
    finally:
        server.stop()
    landed = read_landed(second.raw_path)
    want = expected(fleet, api.now)  # the simulator's own records, without the injected one
    victim = {k: v for k, v in want.readings.items() if k[0] == FleetWith2099.victim}
    assert victim, "the victim must have readings in the second sync for this test to mean anything"
    assert {k: landed.readings.get(k) for k in victim} == victim  # every real reading landed
    assert any(reason.startswith("received_at 2099") for reason in landed.invalid.values())
