"""The connector on the fleet-wide change feed (#15), in-process: the real `update` and client over
HTTP against the simulator on loopback, with a stand-in destination that commits rows at each
checkpoint as the runner does (so a crash loses exactly the rows after the last checkpoint).

Expected rows, cursors and request counts come from the simulator's own records (`day_records`),
filtered here by hand, never from the connector or the feed under test.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from types import ModuleType

import pytest
from connector_harness import START_DATE, Landed, Vendor, config_for, expected

from infra.local.sync import CONNECTOR_SOURCE
from simulator.faults import FaultPolicy
from simulator.fleet import DAY_S, Fleet, FleetSpec, RawRecord, iso, parse_iso

_KEYS = {
    "site": ("site_id",),
    "device": ("device_id",),
    "reading": ("device_id", "timestamp"),
    "invalid_reading": ("record_id",),
    "reading_conflict": ("conflict_id",),
}
START = parse_iso(START_DATE + "T00:00:00Z")


class Crash(RuntimeError):
    """The runner dying mid-sync."""


class Destination:
    """Stands in for the SDK's Operations and the warehouse: rows are pending until a checkpoint
    commits them with the state (as `fivetran debug` writes them); `crash_at` dies at that upsert."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.tables: dict[str, dict[tuple, dict]] = {t: {} for t in _KEYS}
        self.deleted: set[str] = set()
        self.pending: list[tuple[str, dict]] = []
        self.state: dict = {}
        self.upserts = 0
        self.emitted: list[tuple[str, dict]] = []  # every upsert of the current sync, committed or not
        self.checkpoints = 0
        self.crash_at = crash_at

    def upsert(self, table: str, data: dict) -> None:
        self.upserts += 1
        if self.crash_at is not None and self.upserts >= self.crash_at:
            raise Crash(f"killed at upsert {self.upserts}")
        self.pending.append((table, dict(data)))
        self.emitted.append((table, dict(data)))

    def delete(self, table: str, keys: dict) -> None:
        self.pending.append((f"{table}.deleted", dict(keys)))

    def checkpoint(self, state: dict) -> None:
        for table, row in self.pending:
            if table.endswith(".deleted"):
                self.deleted.add(row["device_id"])
            else:
                self.tables[table][tuple(row[k] for k in _KEYS[table])] = row
        self.pending.clear()
        self.state = json.loads(json.dumps(state))  # what state.json holds
        self.checkpoints += 1

    def landed(self) -> Landed:
        out = Landed()
        out.sites = {k[0] for k in self.tables["site"]}
        out.devices = {k[0]: k[0] in self.deleted for k in self.tables["device"]}
        for row in self.tables["reading"].values():
            out.readings[(row["device_id"], int(row["timestamp"].timestamp()))] = (
                row["power_w"],
                row["energy_wh"],
                row["voltage"],
                row["temp_c"],
                row["occupancy"],
                int(row["received_at"].timestamp()),
            )
        out.invalid = {
            (r["device_id"], r["timestamp"]): r["reason"] for r in self.tables["invalid_reading"].values()
        }
        out.reading_rows, out.invalid_rows = len(self.tables["reading"]), len(self.tables["invalid_reading"])
        return out


@pytest.fixture(scope="module")
def connector() -> Iterator[ModuleType]:
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector as module

        module.log.LOG_LEVEL = module.log.Level.SEVERE  # outside the runner it is unset
        yield module
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)


def _sync(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, dest: Destination, v: Vendor, **config: str
):
    """One sync from `dest.state` into `dest`; a crash leaves dest as the runner would (last checkpoint)."""
    monkeypatch.setattr(connector, "op", dest)
    dest.emitted = []
    dest.pending.clear()
    try:
        connector.update(config_for(v, **{"change_feed": "true", **config}), dest.state)
    except Crash:
        dest.pending.clear()
        return False
    return True


def _served(fleet: Fleet, now: int) -> list[RawRecord]:
    """Every record the vendor has published by `now` (received since the start date)."""
    return [
        rec
        for dev in fleet.devices()
        if dev.installed_at <= now
        for day in range(fleet.first_reading(dev) // DAY_S, now // DAY_S + 1)
        for rec in fleet.day_records(dev, day)
        if rec.visible <= now and rec.received >= START
    ]


def _newest_per_device(fleet: Fleet, now: int) -> dict[str, str]:
    newest: dict[str, int] = {}
    listed = {d.device_id for d in fleet.devices() if d.installed_at <= now}
    for rec in _served(fleet, now):
        device = rec.body["device_id"]
        if device in listed:
            newest[device] = max(newest.get(device, 0), rec.received)
    return {d: iso(t) for d, t in newest.items()}


def _assert_landed(dest: Destination, v: Vendor) -> None:
    want = expected(v.fleet, v.api.now)
    got = dest.landed()
    assert got.sites == want.sites
    assert got.devices == want.devices
    missing = want.readings.keys() - got.readings.keys()
    extra = got.readings.keys() - want.readings.keys()
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected readings, e.g. {sorted(extra)[:3]}"
    assert got.readings == want.readings
    assert got.invalid.keys() == want.invalid.keys()


def test_one_fleet_sync_lands_every_record_in_pages_not_per_device_requests(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor
) -> None:
    spec = FleetSpec(devices=12, days=2, seed=21, late_share=0.3, decommission_share=0.3,
                     malformed_rate=0.01, feed_lag_share=0.1)  # fmt: skip
    v: Vendor = vendor(spec)
    dest = Destination()

    assert _sync(connector, monkeypatch, dest, v, page_size="150", checkpoint_rows="300")

    _assert_landed(dest, v)
    served = _served(v.fleet, v.api.now)
    assert v.api.stats["changes"] == math.ceil(len(served) / 150)
    assert v.api.stats["readings"] == 0, "no per-device request in fleet mode"
    assert dest.state["cursors"] == _newest_per_device(v.fleet, v.api.now)
    assert dest.state["feed"] == {
        "received_since": iso(max(r.received for r in served)),
        "published_since": iso(v.api.now),
    }
    assert dest.checkpoints >= len(served) // 300  # every checkpoint_rows rows, and at the end


def test_later_syncs_read_only_what_was_published_since_including_late_and_late_published(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor
) -> None:
    spec = FleetSpec(devices=10, days=1, seed=4, late_share=0.4, decommission_share=0.0,
                     malformed_rate=0.005, feed_lag_share=0.3)  # fmt: skip
    v: Vendor = vendor(spec)
    dest = Destination()
    assert _sync(connector, monkeypatch, dest, v, page_size="100")
    late_published = backlog = 0
    for hours in (0.25, 0.25, 6.5):  # two 15-minute cycles, then past a 6-hourly backlog upload
        before, cursor = v.api.now, parse_iso(dest.state["feed"]["received_since"])
        v.api.advance(hours)
        now = v.api.now
        assert _sync(connector, monkeypatch, dest, v, page_size="100")
        # What the feed must serve: published since the last sync, or received at/after its cursor
        # (ties at the cursor second are re-read, and must be few).
        new = [r for r in _served(v.fleet, now) if r.visible > before]
        ties = [r for r in _served(v.fleet, now) if r.visible <= before and r.received >= cursor]
        emitted = [row for table, row in dest.emitted if table in ("reading", "invalid_reading")]
        assert len(emitted) == len(new) + len(ties)
        assert len(ties) <= spec.devices
        _assert_landed(dest, v)
        late_published += sum(r.received < cursor for r in new)
        backlog += sum(r.received - r.ts > 3 * 3600 for r in new)
    assert late_published, "records published after a later-received one must arrive (published_since)"
    assert backlog, "6-hourly backlog uploads (received hours after their timestamp) must arrive"
    assert dest.state["cursors"] == _newest_per_device(v.fleet, v.api.now)


@pytest.mark.parametrize("crash_at", [7, 180, 333, 505])
def test_a_crash_mid_sync_resumes_from_the_checkpoint_with_nothing_lost_or_redone_twice(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor, crash_at: int
) -> None:
    spec = FleetSpec(devices=8, days=1.5, seed=8, late_share=0.3, malformed_rate=0.01, feed_lag_share=0.1)
    v: Vendor = vendor(spec)
    dest = Destination(crash_at=crash_at)
    config = {"page_size": "50", "checkpoint_rows": "100"}

    assert not _sync(connector, monkeypatch, dest, v, **config), "the crash point must fall inside the sync"
    committed = {k: dict(t) for k, t in dest.tables.items()}
    dest.crash_at = None
    assert _sync(connector, monkeypatch, dest, v, **config)

    _assert_landed(dest, v)
    total = len(_served(v.fleet, v.api.now))
    committed_rows = len(committed["reading"]) + len(committed["invalid_reading"])
    redone = sum(
        tuple(row[k] for k in _KEYS[table]) in committed[table]
        for table, row in dest.emitted
        if table in ("reading", "invalid_reading")
    )
    # The re-run starts at the last checkpoint: it re-emits at most the seconds tied at the cursor.
    assert redone <= spec.devices
    assert (
        sum(t in ("reading", "invalid_reading") for t, _ in dest.emitted) == total - committed_rows + redone
    )


def test_429_on_the_fleet_feed_waits_the_servers_retry_after_and_lands_the_same_rows(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor
) -> None:
    spec = FleetSpec(devices=6, days=1, seed=30, malformed_rate=0.005)
    v: Vendor = vendor(spec)
    v.api.faults = FaultPolicy(rate=0.4, retry_after_s=7, kinds=("rate_limited",), seed=3,
                               path_contains="/v1/readings/changes")  # fmt: skip
    waits: list[float] = []
    client = sys.modules["client"]
    monkeypatch.setattr(client.VendorClient.get.retry, "sleep", waits.append)
    dest = Destination()

    assert _sync(connector, monkeypatch, dest, v, page_size="40")

    _assert_landed(dest, v)
    assert v.api.stats["fault_429"] >= 2
    assert waits == [7.0] * v.api.stats["fault_429"]


def test_device_cursors_stay_right_across_a_switch_to_per_device_mode_and_back(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor
) -> None:
    spec = FleetSpec(devices=8, days=2, seed=13, late_share=0.3, decommission_share=0.2,
                     malformed_rate=0.005, feed_lag_share=0.1)  # fmt: skip
    v: Vendor = vendor(spec)
    dest = Destination()
    assert _sync(connector, monkeypatch, dest, v, page_size="100")
    cursors = dict(dest.state["cursors"])

    v.api.advance(2)
    assert _sync(connector, monkeypatch, dest, v, page_size="100", change_feed="false")
    _assert_landed(dest, v)
    assert "feed" not in dest.state
    # Per device, the pages of its feed from its cursor minus the 3 h look-back: it resumed there.
    pages = 0
    now = v.api.now
    for dev in v.fleet.devices():
        if dev.installed_at > now:
            continue
        since = parse_iso(cursors[dev.device_id]) - 3 * 3600 if dev.device_id in cursors else START
        count = sum(
            1
            for day in range(v.fleet.first_reading(dev) // DAY_S, now // DAY_S + 1)
            for rec in v.fleet.day_records(dev, day)
            if rec.received >= since and rec.visible <= now
        )
        pages += max(1, math.ceil(count / 100))
    assert v.api.stats["readings"] == pages

    v.api.advance(1)
    before = v.api.stats["changes"]
    assert _sync(connector, monkeypatch, dest, v, page_size="100")
    _assert_landed(dest, v)
    assert dest.state["feed"]["published_since"] == iso(v.api.now)
    assert v.api.stats["changes"] - before < 10, "back on the feed it must not re-read from the start"


def test_unchanged_sites_and_devices_are_not_upserted_again_and_a_changed_page_is(
    connector: ModuleType, monkeypatch: pytest.MonkeyPatch, vendor
) -> None:
    v: Vendor = vendor(FleetSpec(devices=12, days=1, seed=31, decommission_share=0.5))
    now = v.api.now
    later = sorted(
        d.decommissioned_at for d in v.fleet.devices() if d.decommissioned_at and d.decommissioned_at > now
    )
    assert later, "the spec must decommission a device after the first sync"
    dest = Destination()
    assert _sync(connector, monkeypatch, dest, v, page_size="4")
    assert len([t for t, _ in dest.emitted if t == "device"]) == 12
    assert len([t for t, _ in dest.emitted if t == "site"]) == len(v.fleet.sites())

    v.api.advance((later[0] - 1 - now) / 3600)  # just before the first decommissioning: nothing changed
    assert _sync(connector, monkeypatch, dest, v, page_size="4")
    assert [t for t, _ in dest.emitted if t in ("site", "device")] == []

    before = v.api.now
    v.api.advance(2 / 3600)
    assert _sync(connector, monkeypatch, dest, v, page_size="4")
    # The device list in pages of 4 (devices installed later are not listed yet): the page holding
    # the newly decommissioned device is upserted again, less devices deleted before (sent once).
    listed = [d for d in v.fleet.devices() if d.installed_at <= v.api.now]
    changed = [
        listed[i : i + 4]
        for i in range(0, len(listed), 4)
        if later[0] in {d.decommissioned_at for d in listed[i : i + 4]}
    ]
    again = [
        d for page in changed for d in page if not (d.decommissioned_at and d.decommissioned_at <= before)
    ]
    assert len([t for t, _ in dest.emitted if t == "device"]) == len(again) >= 1
    assert [t for t, _ in dest.emitted if t == "site"] == []
    _assert_landed(dest, v)


def test_a_bad_change_feed_value_is_named(connector: ModuleType) -> None:
    config = {"base_url": "http://x", "api_key": "k", "page_size": "10", "start_date": "2026-01-01",
              "lookback_hours": "3", "change_feed": "yes"}  # fmt: skip
    with pytest.raises(ValueError, match="change_feed must be true or false"):
        connector.validate_configuration(config)
    assert connector.validate_configuration({**config, "change_feed": "TRUE"})["change_feed"] is True
    assert connector.validate_configuration({**config, "change_feed": ""})["change_feed"] is False


def test_a_fleet_cursor_past_the_clock_or_unreadable_is_dropped(connector: ModuleType) -> None:
    clock = datetime.fromisoformat("2026-03-01T00:00:00+00:00")
    good = {"received_since": "2026-02-28T23:00:00Z", "published_since": "2026-02-28T23:10:00Z"}
    assert connector.drop_future_feed(good, clock) == good
    assert connector.drop_future_feed({**good, "received_since": "2099-01-01T00:00:00Z"}, clock) == {}
    assert connector.drop_future_feed({**good, "published_since": "soon"}, clock) == {}
    assert connector.drop_future_feed("not a dict", clock) == {}
