"""Scoring a chunk of devices at a time (`Settings.anomaly_device_chunk`) changes nothing: the
same incidents and rows, field for field, as one panel of the whole fleet.

The reference is the one-panel pipeline (every active device's rows in one hours x devices grid,
as the service scored before chunking): an equivalence check only. What the detectors find is
proved by hand-computed cases in test_anomaly_detectors.py and test_anomaly_scoring.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from anomaly_fleet import NOW, FleetFactory, fault_hour, load_hourly, refresh_event

from services.anomaly import scoring
from services.anomaly.combine import group_incidents, rank_hours
from services.anomaly.detectors import panel_from_long, run_detectors
from services.anomaly.scoring import GAP_H, INCIDENT_LOOKBACK, _load_frame, detect_window, write_incidents
from shared.events import FeaturesRefreshed
from shared.settings import Settings
from shared.warehouse import open_warehouse

WINDOW = (fault_hour(42, 0), fault_hour(47, 0))
GONE = (fault_hour(45, 10), fault_hour(45, 15))  # dev-5's hours that arrive late
CHUNKS = (1, 7, 1000)  # one device, a chunk that splits the 8-device fleet 7 + 1, all at once


def _faulty_fleet(fleet: FleetFactory) -> pd.DataFrame:
    """8 devices: a level shift, a closure of the whole fleet (no fault: the fleet shift takes it
    out), a spike, a stuck meter and a dropout, and a device outside the event (dev-7)."""
    base = fleet()
    extra = fleet(seed=11)
    extra = extra[extra["device_id"].isin(["dev-0", "dev-1"])].assign(
        device_id=lambda f: f["device_id"].map({"dev-0": "dev-6", "dev-1": "dev-7"})
    )
    frame = pd.concat([base, extra], ignore_index=True)
    dev, hour = frame["device_id"], frame["hour"]
    frame.loc[(dev == "dev-2") & (hour >= fault_hour(43, 9)) & (hour < fault_hour(45, 9)), "energy_kwh"] *= (
        1.7
    )
    frame.loc[(hour >= fault_hour(44, 8)) & (hour < fault_hour(44, 18)), "energy_kwh"] *= 0.5
    frame.loc[(dev == "dev-6") & (hour == fault_hour(46, 3)), "energy_kwh"] *= 6
    frame.loc[(dev == "dev-0") & (hour >= fault_hour(46, 0)) & (hour < fault_hour(46, 10)), "energy_kwh"] = (
        7.25
    )
    return frame


def _event(refresh_id: str) -> FeaturesRefreshed:
    event = refresh_event(refresh_id, *WINDOW)
    return event.model_copy(update={"device_ids": [*event.device_ids, "dev-6", "unknown-device"]})


def _one_panel(settings: Settings, event: FeaturesRefreshed) -> pd.DataFrame:
    """Incidents of the event's devices from one whole-fleet panel (no stored incidents yet)."""
    start, end = pd.Timestamp(event.window_start), pd.Timestamp(event.window_end)
    with open_warehouse(settings) as wh:
        frame, volts = _load_frame(wh, event)
    panel = panel_from_long(frame, nominal_voltage=volts, end=end)
    _, findings = run_detectors(panel)
    ranked = rank_hours(panel, findings, include_missing=True)
    scope = (
        ranked["device_id"].isin(event.device_ids)
        & (ranked["hour"] >= start - INCIDENT_LOOKBACK)
        & (ranked["hour"] < end)
    )
    found = group_incidents(ranked[scope].reset_index(drop=True), findings, gap_h=GAP_H)
    return found[found["end_hour"] > start].drop(columns=["hours_flagged"]).reset_index(drop=True)


def _run(tmp_path: Path, fleet: FleetFactory, chunk: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """First event with dev-5's hours missing (a dropout), then the late hours and the event again."""
    settings = Settings(home=tmp_path / f"chunk-{chunk}")
    frame = _faulty_fleet(fleet)
    late = (frame["device_id"] == "dev-5") & (frame["hour"] >= GONE[0]) & (frame["hour"] < GONE[1])
    load_hourly(settings, frame[~late])
    with open_warehouse(settings) as wh:
        first = detect_window(_event("r1"), wh, now=NOW, chunk=chunk)
        write_incidents(wh, first)
    if chunk == CHUNKS[0]:
        pd.testing.assert_frame_equal(
            first.rows[_one_panel(settings, _event("r1")).columns].reset_index(drop=True),
            _one_panel(settings, _event("r1")),
        )
    load_hourly(settings, frame[late])
    with open_warehouse(settings) as wh:
        second = detect_window(_event("r2"), wh, now=NOW, chunk=chunk)
    return first.rows, second.rows, second.withdrawn_ids


def test_chunk_size_changes_no_incident(tmp_path: Path, fleet: FleetFactory) -> None:
    runs = {chunk: _run(tmp_path, fleet, chunk) for chunk in CHUNKS}
    first, second, withdrawn = runs[CHUNKS[0]]
    kinds = set(zip(first["device_id"], first["anomaly_type"], strict=True))
    # Not a vacuous equivalence: the faults planted in the event's devices are all there ...
    assert {
        ("dev-2", "level_shift"),
        ("dev-5", "dropout"),
        ("dev-6", "spike"),
        ("dev-0", "flatline"),
    } <= kinds
    # ... the closure is the fleet's, so it is no incident of the devices it did not shift ...
    assert not (first["device_id"].isin(["dev-1", "dev-3"])).any()
    # ... and dev-7, outside the event, is never scored, though it counts in the fleet.
    assert "dev-7" not in set(first["device_id"]) | set(second["device_id"])
    assert len(withdrawn) == 1
    for chunk in CHUNKS[1:]:
        other_first, other_second, other_withdrawn = runs[chunk]
        pd.testing.assert_frame_equal(other_first, first)
        pd.testing.assert_frame_equal(other_second, second)
        assert other_withdrawn == withdrawn


@pytest.mark.parametrize("chunk", [1, 3])
def test_keeping_chunks_between_sweeps_changes_no_incident_and_skips_the_second_scoring(
    tmp_path: Path, fleet: FleetFactory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Reuse off, a budget that keeps some of the fleet's chunks, and one that keeps them all give
    the same rows; the detectors run once a chunk when all are kept, twice when none are."""
    settings = Settings(home=tmp_path)
    frame = _faulty_fleet(fleet)
    late = (frame["device_id"] == "dev-5") & (frame["hour"] >= GONE[0]) & (frame["hour"] < GONE[1])
    load_hourly(settings, frame[~late])
    calls = []
    real = scoring.run_detectors
    monkeypatch.setattr(scoring, "run_detectors", lambda *a, **k: calls.append(1) or real(*a, **k))
    hours = (WINDOW[1] - pd.Timestamp(frame["hour"].min())) / pd.Timedelta(hours=1)
    some = 1.5 * hours * chunk * scoring.PANEL_BYTES_PER_CELL / 2**20  # one chunk's panel, not two
    runs = {}
    with open_warehouse(settings) as wh:
        for mb in (0.0, some, 64.0):  # none, the first chunk, all
            calls.clear()
            runs[mb] = (detect_window(_event("r1"), wh, now=NOW, chunk=chunk, reuse_mb=mb), len(calls))
    fleet_chunks = -(-8 // chunk)  # dev-0 .. dev-7; the event scores all but dev-7
    scored_chunks = -(-7 // chunk)
    assert runs[0.0][1] == fleet_chunks + scored_chunks
    assert fleet_chunks < runs[some][1] < fleet_chunks + scored_chunks
    assert runs[64.0][1] == fleet_chunks
    assert len(runs[0.0][0].rows) >= 4  # the planted faults: not an equivalence of nothing
    for mb in (some, 64.0):
        pd.testing.assert_frame_equal(runs[mb][0].rows, runs[0.0][0].rows)
        assert runs[mb][0].hours_scored == runs[0.0][0].hours_scored


@pytest.mark.parametrize("chunk", [0, -1])
def test_chunk_setting_must_be_positive(chunk: int, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="anomaly_device_chunk"):
        Settings(home=tmp_path, anomaly_device_chunk=chunk)
