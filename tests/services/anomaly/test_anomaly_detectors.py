"""Each detector on a crafted fleet with one known fault at a known hour, and silence on a clean one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anomaly_fleet import FleetFactory, fault_hour

from services.anomaly.combine import group_incidents, rank_hours
from services.anomaly.detectors import panel_from_long, run_detectors

DEVICE = "dev-2"


def _score(frame: pd.DataFrame, *, include_missing: bool = False, **panel_kw: object) -> pd.DataFrame:
    panel = panel_from_long(frame, **panel_kw)  # type: ignore[arg-type]
    _, findings = run_detectors(panel)
    ranked = rank_hours(panel, findings, include_missing=include_missing)
    return ranked


def _incidents(frame: pd.DataFrame, **kw: object) -> pd.DataFrame:
    panel = panel_from_long(frame, **kw)  # type: ignore[arg-type]
    _, findings = run_detectors(panel)
    return group_incidents(rank_hours(panel, findings, include_missing=True), findings)


def _mask(frame: pd.DataFrame, start: pd.Timestamp, hours: int) -> pd.Series:
    return (
        (frame["device_id"] == DEVICE)
        & (frame["hour"] >= start)
        & (frame["hour"] < start + pd.Timedelta(hours=hours))
    )


def test_clean_fleet_has_no_anomalies(fleet: FleetFactory) -> None:
    ranked = _score(fleet())
    assert not ranked["is_anomaly"].any(), ranked[ranked["is_anomaly"]].head()


@pytest.mark.parametrize(("factor", "kind"), [(6.0, "spike"), (0.1, "dip")])
def test_one_hour_spike_or_dip_is_found_at_its_hour(fleet: FleetFactory, factor: float, kind: str) -> None:
    frame = fleet()
    at = fault_hour(43, 13)
    frame.loc[_mask(frame, at, 1), "energy_kwh"] *= factor
    flagged = _score(frame).query("is_anomaly")
    assert list(zip(flagged["device_id"], flagged["hour"], flagged["anomaly_type"], strict=True)) == [
        (DEVICE, at, kind)
    ]


def test_level_shift_is_one_incident_starting_near_the_shift(fleet: FleetFactory) -> None:
    frame = fleet()
    at = fault_hour(43, 9)
    frame.loc[_mask(frame, at, 96), "energy_kwh"] *= 1.6
    incidents = _incidents(frame)
    assert len(incidents) == 1
    inc = incidents.iloc[0]
    assert (inc["device_id"], inc["anomaly_type"]) == (DEVICE, "level_shift")
    assert at <= inc["start_hour"] <= at + pd.Timedelta(hours=6)
    assert inc["end_hour"] >= at + pd.Timedelta(hours=90)
    assert inc["actual"] > inc["expected"]
    assert "different level" in inc["explanation"]


def test_stuck_meter_is_a_flatline(fleet: FleetFactory) -> None:
    frame = fleet()
    at = fault_hour(43, 2)
    mask = _mask(frame, at, 30)
    frame.loc[mask, "energy_kwh"] = float(frame.loc[mask, "energy_kwh"].iloc[0])
    incidents = _incidents(frame)
    assert list(incidents["anomaly_type"]) == ["flatline"]
    inc = incidents.iloc[0]
    assert inc["device_id"] == DEVICE
    assert at < inc["start_hour"] <= at + pd.Timedelta(hours=8)
    assert inc["end_hour"] == at + pd.Timedelta(hours=30)
    assert "for 30 h in a row" in inc["explanation"]  # the whole run, not only its flagged part


def test_fault_before_any_history_is_explained_without_an_expectation(fleet: FleetFactory) -> None:
    frame = fleet()
    at = fault_hour(2, 2)  # day 3: no same hour of an earlier week to expect anything from
    mask = _mask(frame, at, 20)
    frame.loc[mask, "energy_kwh"] = float(frame.loc[mask, "energy_kwh"].iloc[0])
    (inc,) = _incidents(frame).itertuples()
    assert inc.anomaly_type == "flatline"
    assert inc.explanation.endswith("for 20 h in a row; it looks stuck.")
    assert "nan" not in inc.explanation


def test_zero_readings_and_missing_hours_are_dropouts(fleet: FleetFactory) -> None:
    frame = fleet()
    zeros = fault_hour(43, 11)
    frame.loc[_mask(frame, zeros, 2), "energy_kwh"] = 0.0
    gone = fault_hour(47, 15)
    frame = frame[~_mask(frame, gone, 3)]
    incidents = _incidents(frame)
    assert list(incidents["anomaly_type"]) == ["dropout", "dropout"]
    assert list(incidents["start_hour"]) == [zeros, gone]
    assert list(incidents["end_hour"]) == [zeros + pd.Timedelta(hours=2), gone + pd.Timedelta(hours=3)]


def test_a_partly_covered_hour_is_a_dropout_only_once_the_fleet_has_moved_past_it(
    fleet: FleetFactory,
) -> None:
    """The newest hour of a sync is partly covered for most meters (its last readings are still on
    their way; its kWh, from the register, is about right): no dropout until the fleet has data
    `dropout_grace_h` (3) hours later. Half covered is ratio (1 - 0.5) x 2 = 1: at threshold."""
    frame = fleet().assign(coverage=1.0)
    newest = frame["hour"].max()
    half = (frame["device_id"] == DEVICE) & (frame["hour"] == newest)
    frame.loc[half, "coverage"] = 0.5
    assert not _score(frame, include_missing=True)["is_anomaly"].any()

    later = frame[frame["hour"] > newest - pd.Timedelta(hours=3)].copy()  # three more hours of fleet
    later["hour"] += pd.Timedelta(hours=3)
    later["coverage"] = 1.0
    flagged = _score(pd.concat([frame, later]), include_missing=True).query("is_anomaly")
    assert list(zip(flagged["device_id"], flagged["hour"], flagged["anomaly_type"], strict=True)) == [
        (DEVICE, newest, "dropout")
    ]


def test_an_hour_still_arriving_is_no_dip_and_once_settled_short_is_a_dropout(fleet: FleetFactory) -> None:
    """At hh:15 the newest hour holds one reading of four for most meters: a quarter of its
    coverage and of its kWh. That is no dip (618 of 1,000 meters were raised as one at each hour's
    first sync, bench_scale). If the hour is still that short once the fleet is 3 hours past it,
    its readings are missing: a dropout, ratio (1 - 0.25) x 2 = 1.5 plus its dip's, which it
    outranks, not a dip."""
    whole = fleet().assign(coverage=1.0)
    newest = whole["hour"].max()

    def short(devices: set[str]) -> pd.DataFrame:
        frame = whole.copy()
        cells = frame["device_id"].isin(devices) & (frame["hour"] == newest)
        frame.loc[cells, ["coverage", "energy_kwh"]] *= 0.25
        return frame

    arriving = {"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}  # 5 of 6 meters at hh:15
    assert not _score(short(arriving), include_missing=True)["is_anomaly"].any()

    later = whole[whole["hour"] > newest - pd.Timedelta(hours=3)].copy()  # three more hours of fleet
    later["hour"] += pd.Timedelta(hours=3)
    stayed = {"dev-1", "dev-3"}  # the others' last readings came in
    flagged = _score(pd.concat([short(stayed), later]), include_missing=True).query("is_anomaly")
    kinds = set(zip(flagged["device_id"], flagged["hour"], flagged["anomaly_type"], strict=True))
    assert kinds == {(d, newest, "dropout") for d in stayed}


def test_night_time_rise_is_a_baseload_rise(fleet: FleetFactory) -> None:
    frame = fleet()
    nights = [fault_hour(night, 0) for night in range(43, 47)]
    for night in nights:
        frame.loc[_mask(frame, night, 5), "energy_kwh"] *= 2.5
    incidents = _incidents(frame)
    assert set(incidents["device_id"]) == {DEVICE}
    assert list(incidents["anomaly_type"]) == ["baseload_rise"] * 4
    # The first hour of a night is a jump from the evening, scored as a spike; x2.5 of a small
    # night load may be too little energy to raise as one, and the baseload rise starts an hour on.
    late = [start - night for start, night in zip(incidents["start_hour"], nights, strict=True)]
    assert set(late) <= {pd.Timedelta(0), pd.Timedelta(hours=1)}
    assert "baseload" in incidents.iloc[0]["explanation"]


def test_voltage_outside_tolerance_is_reported_with_nominal_as_expected(fleet: FleetFactory) -> None:
    frame = fleet().assign(voltage_min=228.0, voltage_max=232.0)
    at = fault_hour(50, 18)
    frame.loc[_mask(frame, at, 1), "voltage_max"] = 262.0
    volts = {d: 230.0 for d in frame["device_id"].unique()}
    incidents = _incidents(frame, nominal_voltage=volts)
    assert list(incidents[["anomaly_type", "start_hour"]].itertuples(index=False, name=None)) == [
        ("voltage", at)
    ]
    assert incidents.iloc[0]["expected"] == 230.0
    assert incidents.iloc[0]["actual"] == 262.0


def test_negative_energy_is_an_impossible_value(fleet: FleetFactory) -> None:
    frame = fleet()
    at = fault_hour(50, 3)
    frame.loc[_mask(frame, at, 1), "energy_kwh"] = -4.0
    flagged = _score(frame).query("is_anomaly")
    assert list(flagged[["hour", "anomaly_type"]].itertuples(index=False, name=None)) == [
        (at, "impossible_value")
    ]


def test_fleet_wide_closure_is_not_an_anomaly(fleet: FleetFactory) -> None:
    """Every building drops together over a holiday: a calendar effect, not five faults."""
    frame = fleet()
    closed = (frame["hour"] >= fault_hour(43, 0)) & (frame["hour"] < fault_hour(46, 0))
    frame.loc[closed, "energy_kwh"] *= 0.4
    assert not _score(frame)["is_anomaly"].any()


def test_scores_are_in_unit_interval_and_half_at_threshold(fleet: FleetFactory) -> None:
    frame = fleet()
    frame.loc[_mask(frame, fault_hour(43, 13), 1), "energy_kwh"] *= 6
    ranked = _score(frame)
    assert ranked["score"].between(0, 1, inclusive="left").all()
    assert ((ranked["score"] >= 0.5) == ranked["is_anomaly"]).all()
    assert np.isfinite(ranked["score"]).all()


def test_forecast_interval_is_the_expectation_where_one_exists(fleet: FleetFactory) -> None:
    """The forecast (say, for a holiday) said a fifth of this hour with a tight interval: judged
    against the forecast, the hour is a spike, and `expected` is its p50, not the seasonal value.
    (The hour is also made 4x its usual: a spike must add several typical hours to be raised, and
    a one-hour doubling is no fault on real buildings.)"""
    frame = fleet()
    at = fault_hour(50, 13)
    hit = _mask(frame, at, 1)
    frame.loc[hit, "energy_kwh"] *= 4
    actual = float(frame.loc[hit, "energy_kwh"].iloc[0])
    frame = frame.assign(forecast_p10=float("nan"), forecast_p50=float("nan"), forecast_p90=float("nan"))
    frame.loc[hit, ["forecast_p10", "forecast_p50", "forecast_p90"]] = [
        0.18 * actual,
        0.2 * actual,
        0.22 * actual,
    ]
    flagged = _score(frame).query("is_anomaly")
    assert list(flagged[["device_id", "hour", "anomaly_type"]].itertuples(index=False, name=None)) == [
        (DEVICE, at, "spike")
    ]
    assert flagged.iloc[0]["expected"] == 0.2 * actual


def test_short_burst_shows_in_peak_power_not_energy(fleet: FleetFactory) -> None:
    frame = fleet()
    frame["max_power_w"] = frame["energy_kwh"] * 1000 * 1.2
    at = fault_hour(50, 2)
    frame.loc[_mask(frame, at, 1), "max_power_w"] *= 8  # 10 minutes at 8x barely moves the hour's kWh
    flagged = _score(frame).query("is_anomaly")
    assert list(flagged[["device_id", "hour", "anomaly_type"]].itertuples(index=False, name=None)) == [
        (DEVICE, at, "spike")
    ]
    incident = _incidents(frame).iloc[0]
    assert incident["explanation"].startswith("Peak power reached")


def test_device_installed_later_has_no_dropouts_before_its_first_hour(fleet: FleetFactory) -> None:
    frame = fleet()
    frame = frame[~((frame["device_id"] == DEVICE) & (frame["hour"] < fault_hour(20, 0)))]
    assert _incidents(frame).empty
