"""The fleet-wide change feed (#15) over real HTTP: order, pages, late data, published_since, faults.

The expected feed is built here from `day_records` (every record of every device-day, sorted by
hand); the feed under test is built from the receipts index, a different code path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests
from conftest import KEY

from simulator.faults import FaultPolicy
from simulator.fleet import DAY_S, Fleet, FleetSpec, iso, parse_iso
from simulator.replay import Replay
from simulator.server import SimulatorServer, VendorApi

AUTH = {"Authorization": f"Bearer {KEY}"}
CHANGES = "/v1/readings/changes"


def _changes(url: str, page_size: int, **params: str) -> tuple[list[dict], int]:
    rows, token, pages = [], None, 0
    while True:
        query: dict = {"page_size": page_size, **params}
        if token:
            query["page_token"] = token
        response = requests.get(f"{url}{CHANGES}", params=query, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["data"]
        pages += 1
        token = body["next_page_token"]
        if not token:
            return rows, pages


def _by_hand(fleet: Fleet, now: int, since: int, published: int | None = None) -> list[dict]:
    """Every device's records visible by `now`, received since `since` or published after
    `published` (and received within the publication lag of it), sorted by the feed's key."""
    out = []
    for dev in fleet.devices():
        for day in range(fleet.first_reading(dev) // DAY_S, now // DAY_S + 1):
            for rec in fleet.day_records(dev, day):
                late = published is not None and rec.visible > published >= rec.received - 90 * 60
                if rec.visible <= now and (rec.received >= since or late):
                    out.append(((rec.received, dev.device_id, rec.ts), rec.body))
    out.sort(key=lambda item: item[0])
    return [body for _, body in out]


def test_receipts_are_the_records_times_without_building_the_records() -> None:
    fleet = Fleet(FleetSpec(devices=25, days=4, seed=6, late_share=0.4, decommission_share=0.4,
                            feed_lag_share=0.3, anomaly_rate_per_day=0.5))  # fmt: skip
    for dev in fleet.devices():
        for day in range(fleet.start // DAY_S - 1, fleet.initial_now // DAY_S + 2):
            ts, received, visible = fleet.receipts(dev.device_id, day)
            records = fleet.day_records(dev, day)
            assert ts.tolist() == [r.ts for r in records]
            assert received.tolist() == [r.received for r in records]
            assert visible.tolist() == [r.visible for r in records]
            some = set(ts[::5].tolist())
            assert [r.body for r in fleet.records_at(dev.device_id, day, some)] == [
                r.body for r in records if r.ts in some
            ]


def test_the_fleet_feed_serves_every_device_in_receipt_order_once_across_pages() -> None:
    fleet = Fleet(FleetSpec(devices=15, days=2, seed=9, late_share=0.4, decommission_share=0.3,
                            malformed_rate=0.01, feed_lag_share=0.1))  # fmt: skip
    with SimulatorServer(VendorApi(fleet, KEY)) as server:
        rows, pages = _changes(server.url, 97, received_since="2026-01-01T00:00:00Z")
        whole, one = _changes(server.url, 5000, received_since="2026-01-01T00:00:00Z")
        since = fleet.initial_now - 9 * 3600
        recent, _ = _changes(server.url, 64, received_since=iso(since))

    want = _by_hand(fleet, fleet.initial_now, parse_iso("2026-01-01T00:00:00Z"))
    assert rows == want
    assert whole == want
    assert (pages, one) == (-(-len(want) // 97), 1)
    assert len({r["device_id"] for r in rows} & {d.device_id for d in fleet.devices()}) == 15
    assert recent == _by_hand(fleet, fleet.initial_now, since)
    # Late data: backlog devices' readings arrive hours after their timestamp, so the feed (on
    # received_at) serves them after readings timed later.
    delays = [
        parse_iso(r["received_at"]) - parse_iso(r["timestamp"])
        for r in rows
        if r["device_id"].startswith("dev")
    ]
    assert max(delays) > 4 * 3600
    stamps = [r["timestamp"] for r in rows]
    assert stamps != sorted(stamps)


def test_published_since_adds_records_received_before_the_cursor_but_published_after() -> None:
    fleet = Fleet(FleetSpec(devices=12, days=1, seed=2, late_share=0.0, feed_lag_share=0.4))
    api = VendorApi(fleet, KEY)
    with SimulatorServer(api) as server:
        first = api.now
        api.advance(0.5)
        cursor = first - 120  # as if the previous sync's newest record was received 2 minutes before it
        plain, _ = _changes(server.url, 50, received_since=iso(cursor))
        with_published, _ = _changes(server.url, 50, received_since=iso(cursor), published_since=iso(first))

    want = _by_hand(fleet, api.now, cursor, published=first)
    assert with_published == want
    assert plain == _by_hand(fleet, api.now, cursor)
    extra = [r for r in with_published if r not in plain]
    assert extra, "the spec must publish some records late for this test to mean anything"
    assert all(parse_iso(r["received_at"]) < cursor for r in extra)


def test_the_fleet_feed_refuses_bad_queries_with_a_400_naming_the_problem(server: SimulatorServer) -> None:
    def get(**params: str) -> requests.Response:
        return requests.get(f"{server.url}{CHANGES}", params=params, headers=AUTH, timeout=10)

    assert "received_since" in get().json()["error"]
    assert get().status_code == 400
    bad_time = get(received_since="2026-01-01T00:00:00Z", published_since="noon")
    assert bad_time.status_code == 400
    assert "published_since is not an ISO 8601 time" in bad_time.json()["error"]
    assert get(received_since="2026-01-01T00:00:00Z", page_size="0").status_code == 400
    first = get(received_since="2026-01-01T00:00:00Z", page_size="5").json()
    other_query = get(received_since="2026-01-02T00:00:00Z", page_token=first["next_page_token"])
    assert other_query.status_code == 400
    assert "different query" in other_query.json()["error"]


def test_the_fleet_feed_answers_429_with_retry_after_like_every_route() -> None:
    fleet = Fleet(FleetSpec(devices=3, days=1))
    api = VendorApi(
        fleet, KEY, FaultPolicy(rate=0.5, retry_after_s=4, kinds=("rate_limited", "server_error"), seed=2)
    )
    with SimulatorServer(api) as server:
        responses = [
            requests.get(
                f"{server.url}{CHANGES}",
                params={"received_since": "2026-01-01T00:00:00Z"},
                headers=AUTH,
                timeout=10,
            )
            for _ in range(30)
        ]
    codes = [r.status_code for r in responses]
    assert {200, 429, 503} <= set(codes)
    assert all(r.headers["Retry-After"] == "4" for r in responses if r.status_code == 429)


def test_the_index_is_built_once_per_block_not_per_page() -> None:
    fleet = Fleet(FleetSpec(devices=20, days=1.1, seed=3))  # now is 02:24 UTC
    api = VendorApi(fleet, KEY)
    with SimulatorServer(api) as server:
        since = iso(fleet.initial_now - 2 * 3600)  # 00:24: the same 3-hour block as now
        _, pages = _changes(server.url, 10, received_since=since)
        stats = requests.get(f"{server.url}/_admin/stats", headers=AUTH, timeout=5).json()
    assert pages > 5
    assert stats["fleet_blocks_built"] == 1


def test_replay_serves_the_real_meters_on_the_fleet_feed(shared_data: Path) -> None:
    replay = Replay(
        shared_data / "meters_2019_hourly.csv.gz", shared_data / "weather_2019_hourly.csv.gz", days=2
    )
    with SimulatorServer(VendorApi(replay, KEY)) as server:
        rows, _ = _changes(server.url, 500, received_since="2019-01-01T00:00:00Z")
    keys = [(r["received_at"], r["device_id"], r["timestamp"]) for r in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert len({r["device_id"] for r in rows}) == 35
    per_meter = np.bincount(np.unique([r["device_id"] for r in rows], return_inverse=True)[1])
    assert per_meter.max() <= 2 * 24
