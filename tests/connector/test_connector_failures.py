"""Crashes, bad configuration and a wrong key, through the real runner."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
from connector_harness import Vendor, assert_same, config_for, expected, read_landed, state_of, sync

from infra.local.sync import prepare_project, start_runner
from simulator.faults import FaultPolicy
from simulator.fleet import FleetSpec, iso

pytestmark = pytest.mark.slow


def _run_until_line(project: Path, config: dict[str, str], kill_at_line: int) -> int:
    """Run the runner and SIGKILL it when it prints line number `kill_at_line` (or let it finish)."""
    config_path = prepare_project(project, config)
    with start_runner(project, config_path) as process:
        assert process.stdout is not None
        for n, _line in enumerate(process.stdout, start=1):
            if n == kill_at_line:
                process.send_signal(signal.SIGKILL)
                break
        process.stdout.read()
        return process.wait()


@pytest.mark.parametrize("change_feed", ["false", "true"])
def test_killing_the_sync_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, vendor, change_feed: str
) -> None:
    v: Vendor = vendor(FleetSpec(devices=10, days=3, seed=3, malformed_rate=0.005))
    home = tmp_path / "home"
    project = home / "connector"
    config = config_for(v, page_size="100", checkpoint_rows="400", change_feed=change_feed)
    rng = random.Random(20261123)  # seeded: the same "random" points every run, so failures reproduce

    kills = 0
    for _ in range(3):
        code = _run_until_line(project, config, kill_at_line=rng.randint(8, 30))
        kills += code == -signal.SIGKILL
    assert kills >= 2, "the kill points must fall inside the sync"
    assert (project / "files" / "state.json").exists(), "some checkpoint must have happened before a kill"

    result = sync(home, v, page_size="100", checkpoint_rows="400", change_feed=change_feed)

    assert result.ok, result.error
    assert_same(read_landed(result.raw_path), expected(v.fleet, v.api.now))
    if change_feed == "true":
        assert v.api.stats["readings"] == 0
        assert state_of(home)["feed"]["published_since"] == iso(v.api.now)


def test_bad_configuration_fails_fast_naming_every_bad_field(tmp_path: Path, vendor) -> None:
    v: Vendor = vendor(FleetSpec(devices=2, days=1))
    bad = {
        "base_url": "ftp://meters.example",
        "page_size": "0",
        "start_date": "yesterday",
        "lookback_hours": "-2",
        "api_key": "",
    }

    result = sync(tmp_path / "home", v, **bad)

    assert not result.ok
    assert result.error is not None
    for message in (
        "base_url must start with http:// or https://",
        "page_size must be an integer from 1 to 5000",
        "start_date must be an ISO date",
        "lookback_hours must be a number from 0 to 336",
        "api_key is required",
    ):
        assert message in result.error
    assert "Traceback" not in result.error
    assert v.api.stats["sites"] == 0, "nothing may be fetched with a bad configuration"


def test_wrong_api_key_fails_fast_with_a_readable_message(tmp_path: Path, vendor) -> None:
    v: Vendor = vendor(FleetSpec(devices=2, days=1))

    result = sync(tmp_path / "home", v, api_key="not-the-key")

    assert not result.ok
    assert result.error is not None
    assert "rejected the api_key" in result.error
    assert not (tmp_path / "home" / "connector" / "files" / "state.json").exists() or (
        "cursors" not in (tmp_path / "home" / "connector" / "files" / "state.json").read_text()
    )


def test_a_sync_that_cannot_continue_fails_explicitly_without_advancing_past_its_rows(
    tmp_path: Path, vendor
) -> None:
    v: Vendor = vendor(FleetSpec(devices=6, days=2, seed=12, decommission_share=0.0))
    home = tmp_path / "home"
    stuck = "dev-00004"
    v.api.faults = FaultPolicy(rate=1.0, retry_after_s=0, kinds=("rate_limited",), path_contains=stuck)

    failed = sync(home, v, page_size="100", checkpoint_rows="100")

    assert not failed.ok
    assert failed.error is not None
    assert "still failing after 8 attempts" in failed.error
    cursors = state_of(home)["cursors"]
    assert stuck not in cursors
    assert {"dev-00000", "dev-00001", "dev-00002"} <= cursors.keys()

    v.api.faults = FaultPolicy()
    recovered = sync(home, v, page_size="100", checkpoint_rows="100")

    assert recovered.ok, recovered.error
    assert_same(read_landed(recovered.raw_path), expected(v.fleet, v.api.now))
