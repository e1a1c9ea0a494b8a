"""The vendor API over real HTTP: auth, pages, the change feed, the clock, faults, replay."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from conftest import KEY

from simulator.faults import FaultPolicy
from simulator.fleet import Fleet, FleetSpec, parse_iso
from simulator.replay import Replay
from simulator.server import SimulatorServer, VendorApi

AUTH = {"Authorization": f"Bearer {KEY}"}


def _feed(url: str, device_id: str, since: str, page_size: int) -> tuple[list[dict], int]:
    rows, token, pages = [], None, 0
    while True:
        params = {"received_since": since, "page_size": page_size}
        if token:
            params["page_token"] = token
        body = requests.get(
            f"{url}/v1/devices/{device_id}/readings", params=params, headers=AUTH, timeout=10
        ).json()
        rows += body["data"]
        pages += 1
        token = body["next_page_token"]
        if not token:
            return rows, pages


def test_requests_without_the_right_key_get_401(server: SimulatorServer) -> None:
    assert requests.get(f"{server.url}/v1/sites", timeout=5).status_code == 401
    wrong = requests.get(f"{server.url}/v1/sites", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    assert "API key" in wrong.json()["error"]
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_page_size_above_the_documented_maximum_is_a_400(server: SimulatorServer) -> None:
    response = requests.get(f"{server.url}/v1/devices", params={"page_size": 5001}, headers=AUTH, timeout=5)

    assert response.status_code == 400
    assert "1 to 5000" in response.json()["error"]


def test_a_forged_page_token_is_a_400(server: SimulatorServer) -> None:
    response = requests.get(
        f"{server.url}/v1/devices/dev-00001/readings",
        params={"received_since": "2026-01-01T00:00:00Z", "page_token": "bm90LWEtdG9rZW4"},
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 400


def test_the_change_feed_pages_cover_every_record_once_in_receipt_order(
    server: SimulatorServer, fleet: Fleet
) -> None:
    for device in ("dev-00000", "dev-00001"):
        rows, pages = _feed(server.url, device, "2026-01-01T00:00:00Z", page_size=37)
        keys = [(parse_iso(r["received_at"]), r["timestamp"]) for r in rows]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys)
        whole, one_page = _feed(server.url, device, "2026-01-01T00:00:00Z", page_size=5000)
        assert rows == whole
        assert one_page == 1
        assert pages == -(-len(rows) // 37)


def test_advancing_the_clock_releases_only_newer_data(server: SimulatorServer) -> None:
    before, _ = _feed(server.url, "dev-00002", "2026-01-01T00:00:00Z", 1000)
    last = max(r["received_at"] for r in before)

    moved = requests.post(f"{server.url}/_admin/advance", json={"hours": 12}, headers=AUTH, timeout=5)
    after, _ = _feed(server.url, "dev-00002", "2026-01-01T00:00:00Z", 1000)
    newer, _ = _feed(server.url, "dev-00002", last, 1000)

    assert moved.status_code == 200
    assert after[: len(before)] == before
    assert len(after) > len(before)
    assert all(r["received_at"] >= last for r in newer)
    assert len(newer) < len(after)


def test_decommissioned_devices_are_listed_as_such_once_the_clock_passes(
    server: SimulatorServer, fleet: Fleet
) -> None:
    gone = [d for d in fleet.devices() if d.decommissioned_at]
    requests.post(f"{server.url}/_admin/advance", json={"hours": 24 * 10}, headers=AUTH, timeout=5)
    listed = requests.get(f"{server.url}/v1/devices", headers=AUTH, timeout=5).json()["data"]
    status = {d["device_id"]: d["status"] for d in listed}

    assert gone
    assert all(status[d.device_id] == "decommissioned" for d in gone)


def test_concurrent_clients_get_consistent_pages(server: SimulatorServer) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(lambda _: _feed(server.url, "dev-00003", "2026-01-01T00:00:00Z", 50)[0], range(6))
        )
    assert all(r == results[0] for r in results)


def test_faults_answer_429_with_retry_after_and_5xx() -> None:
    fleet = Fleet(FleetSpec(devices=2, days=1))
    api = VendorApi(fleet, KEY, FaultPolicy(rate=0.5, retry_after_s=2, slow_s=0.01, seed=1))
    with SimulatorServer(api) as server:
        responses = [requests.get(f"{server.url}/v1/sites", headers=AUTH, timeout=5) for _ in range(40)]
    codes = {r.status_code for r in responses}

    assert {200, 429, 503} <= codes
    assert all(r.headers["Retry-After"] == "2" for r in responses if r.status_code == 429)
    assert api.stats["fault_slow"] > 0


def test_replay_serves_the_real_building_meters_as_devices(shared_data: Path) -> None:
    replay = Replay(
        shared_data / "meters_2019_hourly.csv.gz", shared_data / "weather_2019_hourly.csv.gz", days=3
    )
    with SimulatorServer(VendorApi(replay, KEY)) as server:
        devices = requests.get(f"{server.url}/v1/devices", headers=AUTH, timeout=5).json()["data"]
        rows, _ = _feed(server.url, devices[0]["device_id"], "2019-01-01T00:00:00Z", 1000)

    assert len(devices) == 35
    assert rows[0]["timestamp"] == "2019-01-01T00:00:00Z"
    assert len(rows) <= 3 * 24
    assert all(r["temp_c"] is not None for r in rows)
    energy = [r["energy_wh"] for r in rows]
    assert energy == sorted(energy)
