"""The shards of one refresh share the fleet's numbers: the first shard's push sweeps the fleet,
the others (and redeliveries) reuse what it found, in this process, and score exactly what one
unsharded event would. Another refresh, or another warehouse, sweeps again."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from anomaly_fleet import (
    SHIFT_START,
    Ctx,
    FleetFactory,
    fault_hour,
    fleet_with_shift,
    load_hourly,
    read_anomalies,
    refresh_event,
)

import services.anomaly.scoring as scoring
from shared.bus import open_publisher
from shared.events import FeaturesRefreshed
from shared.settings import Settings

WINDOW = (fault_hour(42, 0), fault_hour(47, 0))


def _shards(refresh_id: str) -> list[FeaturesRefreshed]:
    """What ingest publishes for 6 devices at 3 devices a shard (`shard_events`)."""
    whole = refresh_event(refresh_id, *WINDOW)
    return [
        whole.model_copy(update={"refresh_id": f"{refresh_id}-1of2", "device_ids": whole.device_ids[:3]}),
        whole.model_copy(update={"refresh_id": f"{refresh_id}-2of2", "device_ids": whole.device_ids[3:]}),
    ]


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the fleet sweeps (the real `_fleet_context` still runs); starts with no fleet kept."""
    monkeypatch.setattr(scoring, "_fleets", type(scoring._fleets)())
    real = scoring._fleet_context
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_fleet_context", counting)
    return calls


def _home(tmp_path: Path, name: str, fleet: FleetFactory) -> Settings:
    settings = Settings(home=tmp_path / name)
    load_hourly(settings, fleet_with_shift(fleet))
    return settings


def _score(settings: Settings, event: FeaturesRefreshed) -> scoring.ScoreResult:
    return scoring.score_window(event, Ctx(settings, open_publisher(settings)))


def test_the_second_shard_reuses_the_fleet_and_scores_what_one_event_would(
    tmp_path: Path, fleet: FleetFactory, sweeps: list[int]
) -> None:
    sharded = _home(tmp_path, "sharded", fleet)
    first, second = (_score(sharded, e) for e in _shards("r1"))
    assert len(sweeps) == 1
    # dev-2 (first shard) has the one fault, a x1.7 level shift from SHIFT_START; dev-3..5 none
    assert (first.devices_scored, len(first.new_incidents)) == (3, 1)
    assert (second.devices_scored, len(second.new_incidents)) == (3, 0)
    rows = read_anomalies(sharded)
    assert list(rows["device_id"]) == ["dev-2"]
    assert rows["start_hour"].iloc[0] >= SHIFT_START

    whole = _home(tmp_path, "whole", fleet)
    _score(whole, refresh_event("r1", *WINDOW))
    assert len(sweeps) == 2  # another warehouse: its own sweep, though the refresh id is the same
    columns = ["incident_id", "device_id", "start_hour", "end_hour", "anomaly_type", "severity", "score"]
    assert read_anomalies(whole)[columns].equals(rows[columns])


def test_a_redelivered_shard_and_a_new_refresh(
    tmp_path: Path, fleet: FleetFactory, sweeps: list[int]
) -> None:
    settings = _home(tmp_path, "home", fleet)
    shard = _shards("r1")[0]
    _score(settings, shard)
    again = _score(settings, shard)
    assert len(sweeps) == 1  # a redelivery does not sweep again
    assert again.new_incidents == []
    _score(settings, _shards("r2")[0])
    assert len(sweeps) == 2  # a new refresh sees the fleet anew


def test_concurrent_shards_wait_for_one_sweep(
    tmp_path: Path, fleet: FleetFactory, sweeps: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second shard arrives while the first is still sweeping: it waits for that sweep."""
    settings = _home(tmp_path, "home", fleet)
    entered, release = threading.Event(), threading.Event()
    counting = scoring._fleet_context

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(timeout=60)
        return counting(*args, **kwargs)

    monkeypatch.setattr(scoring, "_fleet_context", held)
    results: dict[str, scoring.ScoreResult] = {}
    errors: list[BaseException] = []

    def run(event: FeaturesRefreshed) -> None:
        try:
            results[event.refresh_id] = _score(settings, event)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    first, second = (threading.Thread(target=run, args=(e,)) for e in _shards("r1"))
    first.start()
    assert entered.wait(timeout=60)
    second.start()
    second.join(timeout=0.5)  # still waiting: its fleet is the one being swept
    assert second.is_alive()
    release.set()
    first.join(timeout=120)
    second.join(timeout=120)
    assert errors == []
    assert len(sweeps) == 1
    assert sorted(results) == ["r1-1of2", "r1-2of2"]
    assert list(read_anomalies(settings)["device_id"]) == ["dev-2"]


def test_a_shard_that_reuses_the_sweep_copies_only_its_own_devices(
    tmp_path: Path, fleet: FleetFactory, sweeps: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shard that sweeps stages the whole fleet; a shard that reuses its sweep stages only its
    own devices (at 30,000 meters six whole-fleet copies in one process ran out of memory)."""
    from shared.warehouse.duckdb import DuckDBWarehouse

    real = DuckDBWarehouse.stage_by_device
    staged: list[list[str]] = []

    def recording(self: DuckDBWarehouse, *args: Any, **kwargs: Any) -> str:
        name = real(self, *args, **kwargs)
        ids = self.query(f"SELECT DISTINCT device_id FROM {name} ORDER BY device_id").to_pydict()
        staged.append(ids["device_id"])
        return name

    monkeypatch.setattr(DuckDBWarehouse, "stage_by_device", recording)
    settings = _home(tmp_path, "home", fleet)
    first, second = _shards("r1")
    _score(settings, first)
    sweep_copies = staged[:]
    staged.clear()
    _score(settings, second)
    assert len(sweeps) == 1
    # hourly rows, readings and forecasts: three copies each time (readings and forecasts have no
    # rows in this fleet, so only the hourly copy names devices)
    assert len(sweep_copies) == len(staged) == 3
    assert sweep_copies[0] == [f"dev-{n}" for n in range(6)]
    assert staged[0] == sorted(second.device_ids) == ["dev-3", "dev-4", "dev-5"]
    assert all(ids == [] for ids in sweep_copies[1:] + staged[1:])
