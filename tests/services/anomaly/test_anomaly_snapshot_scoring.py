"""score_window detects on the published snapshot, without the DuckDB writer lock, and scores again
under the lock when another writer changed the incidents it reconciled against meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from anomaly_fleet import (
    Ctx,
    FleetFactory,
    fault_hour,
    fleet_with_shift,
    load_hourly,
    published,
    read_anomalies,
    refresh_event,
)
from filelock import FileLock, Timeout

import services.anomaly.scoring as scoring
from shared.bus import open_publisher
from shared.settings import Settings
from shared.warehouse import open_warehouse


def _spy(monkeypatch: pytest.MonkeyPatch, settings: Settings, on_first: Any = None) -> list[bool]:
    """Wraps detect_window; records, per call, whether the writer lock was free during it."""
    real = scoring.detect_window
    lock_free: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            with FileLock(str(settings.lock_path), timeout=0):
                lock_free.append(True)
        except Timeout:
            lock_free.append(False)
        result = real(*args, **kwargs)
        if on_first is not None and len(lock_free) == 1:
            on_first(result)
        return result

    monkeypatch.setattr(scoring, "detect_window", spy)
    return lock_free


def test_detection_runs_without_the_writer_lock(
    settings: Settings, fleet: FleetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_hourly(settings, fleet_with_shift(fleet))
    calls = _spy(monkeypatch, settings)
    result = scoring.score_window(refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0)), Ctx(
        settings, open_publisher(settings)))  # fmt: skip
    assert calls == [True]  # scored once, on the snapshot, while nobody held the lock
    assert result.published == 1
    assert len(read_anomalies(settings)) == 1


def test_incidents_written_meanwhile_make_it_score_again_under_the_lock(
    settings: Settings, fleet: FleetFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent delivery of the same window writes the incident first: scoring again under the
    lock sees it, continues that row and publishes nothing (no second alert)."""
    load_hourly(settings, fleet_with_shift(fleet))

    def concurrent_writer(found: scoring.WindowIncidents) -> None:
        assert len(found.new_ids) == 1  # on the snapshot the incident is still new
        with open_warehouse(settings) as wh:
            scoring.write_incidents(wh, found)

    calls = _spy(monkeypatch, settings, on_first=concurrent_writer)
    result = scoring.score_window(refresh_event("r1", fault_hour(42, 0), fault_hour(47, 0)), Ctx(
        settings, open_publisher(settings)))  # fmt: skip
    assert calls == [True, False]  # again, this time holding the lock
    assert result.published == 0
    assert result.new_incidents == []
    assert published(settings) == []
    assert len(read_anomalies(settings)) == 1
