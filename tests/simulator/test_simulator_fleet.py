"""The synthetic fleet: deterministic, lazy, physically consistent, with its anomalies labelled."""

from __future__ import annotations

import tracemalloc

import numpy as np

from simulator.fleet import BACKLOG_UPLOAD_S, DAY_S, Fleet, FleetSpec


def _bodies(fleet: Fleet, device: int, day_offset: int) -> list[dict]:
    dev = fleet.device(device)
    return [r.body for r in fleet.day_records(dev, fleet.start // DAY_S + day_offset)]


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    a = Fleet(FleetSpec(devices=5, days=2, seed=1))
    b = Fleet(FleetSpec(devices=5, days=2, seed=1))
    c = Fleet(FleetSpec(devices=5, days=2, seed=2))

    assert _bodies(a, 3, 1) == _bodies(b, 3, 1)
    assert _bodies(a, 3, 1) != _bodies(c, 3, 1)


def test_a_device_day_does_not_depend_on_what_was_generated_before() -> None:
    fresh = Fleet(FleetSpec(devices=5, days=10, seed=4))
    warmed = Fleet(FleetSpec(devices=5, days=10, seed=4))
    for day in range(10):
        _bodies(warmed, 2, day)

    assert _bodies(fresh, 2, 7) == _bodies(warmed, 2, 7)


def test_a_year_of_ten_thousand_devices_is_never_materialised() -> None:
    tracemalloc.start()
    fleet = Fleet(FleetSpec(devices=10_000, days=365, seed=1))
    rows = _bodies(fleet, 9_999, 364)  # the last device's last day: needs its register history only
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(rows) > 0
    assert peak < 50 * 1024**2, f"peak {peak / 1e6:.0f} MB"


def test_the_energy_register_accumulates_power_over_each_interval() -> None:
    fleet = Fleet(FleetSpec(devices=3, days=3, seed=5, malformed_rate=0, anomaly_rate_per_day=0))
    rows = [b for d in range(3) for b in _bodies(fleet, 1, d)]
    energy = np.array([r["energy_wh"] for r in rows])
    power = np.array([r["power_w"] for r in rows])

    assert np.all(np.diff(energy) >= 0)
    np.testing.assert_allclose(np.diff(energy), power[:-1] * 15 / 60, atol=0.01)


def test_load_follows_the_day_and_heating_follows_the_cold() -> None:
    fleet = Fleet(FleetSpec(devices=30, days=14, seed=8, malformed_rate=0, anomaly_rate_per_day=0))
    commercial = next(d for d in fleet.devices() if d.site.site_type == "commercial")
    rows = [b for day in range(14) for b in _bodies(fleet, commercial.index, day)]
    hour = np.array([int(r["timestamp"][11:13]) for r in rows])
    power = np.array([r["power_w"] for r in rows])
    occupied = np.array([r["occupancy"] for r in rows])

    assert power[occupied].mean() > 1.5 * power[~occupied].mean()
    assert power[(hour >= 9) & (hour < 16)].mean() > power[(hour >= 0) & (hour < 5)].mean()


def test_late_devices_upload_six_hourly_backlogs() -> None:
    fleet = Fleet(FleetSpec(devices=20, days=2, seed=2, late_share=0.5))
    late = next(d for d in fleet.devices() if d.late)
    on_time = next(d for d in fleet.devices() if not d.late)
    day = fleet.start // DAY_S + 1

    late_delays = [r.received - r.ts for r in fleet.day_records(late, day)]
    on_time_delays = [r.received - r.ts for r in fleet.day_records(on_time, day)]

    assert max(late_delays) > 3 * 3600
    assert max(late_delays) <= BACKLOG_UPLOAD_S + 15 * 60 + 120
    assert max(on_time_delays) < 15 * 60 + 120
    assert len({r.received // 600 for r in fleet.day_records(late, day)}) <= 5  # a handful of uploads a day


def test_injected_anomalies_show_in_the_data_where_the_truth_says() -> None:
    fleet = Fleet(FleetSpec(devices=10, days=28, seed=6, malformed_rate=0, anomaly_rate_per_day=0.3))
    clean = Fleet(FleetSpec(devices=10, days=28, seed=6, malformed_rate=0, anomaly_rate_per_day=0))
    events = fleet.truth(fleet.initial_now)
    kinds = {e.kind for e in events}
    assert {"spike", "dropout", "stuck", "voltage_sag"} <= kinds

    for event in events[:40]:
        dev = fleet.device(int(event.device_id[4:]))
        day = event.start // DAY_S
        if day < fleet.start // DAY_S or event.start >= min(
            fleet.initial_now, dev.decommissioned_at or 2**62
        ):
            continue
        seen = {r.ts: r.body for r in fleet.day_records(dev, day)}
        base = {r.ts: r.body for r in clean.day_records(dev, day)}
        inside = [t for t in base if event.start <= t < event.end]
        if not inside:
            continue
        if event.kind == "dropout":
            assert all(t not in seen for t in inside)
        elif event.kind == "spike":
            assert any(seen[t]["power_w"] > 3 * base[t]["power_w"] for t in inside if t in seen)
        elif event.kind == "voltage_sag":
            assert all(seen[t]["voltage"] < base[t]["voltage"] for t in inside if t in seen)
        elif event.kind == "stuck":
            assert len({seen[t]["power_w"] for t in inside if t in seen}) == 1
