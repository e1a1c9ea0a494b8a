"""Labelled anomalies injected into the simulated meter data, and their ground truth.

Events are drawn per device and per week from the seed, so any time slice of any device can be
generated on its own (lazily) and still agree with the truth file `gridsight simulator truth`
writes. The public API never says which readings are anomalous: only the truth file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

AnomalyKind = Literal[
    "spike", "stuck", "dropout", "baseload_drift", "voltage_sag", "voltage_swell", "night_unoccupied"
]
KINDS: tuple[AnomalyKind, ...] = (
    "spike",
    "stuck",
    "dropout",
    "baseload_drift",
    "voltage_sag",
    "voltage_swell",
    "night_unoccupied",
)
WEEK_S = 7 * 86400
# The longest event (a drift) spans at most this many weeks back from the day being generated.
MAX_EVENT_WEEKS = 2
_STREAM_ANOMALY = 7  # rng stream tag: keeps anomaly draws independent of the load draws


@dataclass(frozen=True)
class AnomalyEvent:
    device_id: str
    kind: AnomalyKind
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive
    magnitude: float  # factor or added share; meaning depends on kind (see `apply_events`)


def _duration_s(kind: AnomalyKind, rng: np.random.Generator, interval_s: int) -> int:
    hours = {
        "spike": lambda: interval_s / 3600 * int(rng.integers(1, 3)),
        "stuck": lambda: float(rng.uniform(6, 24)),
        "dropout": lambda: float(rng.uniform(2, 12)),
        "baseload_drift": lambda: float(rng.uniform(3, 10)) * 24,
        "voltage_sag": lambda: float(rng.uniform(1, 6)),
        "voltage_swell": lambda: float(rng.uniform(1, 6)),
        "night_unoccupied": lambda: 4.0,
    }[kind]()
    return max(interval_s, round(hours * 3600 / interval_s) * interval_s)


def _magnitude(kind: AnomalyKind, rng: np.random.Generator) -> float:
    return {
        "spike": float(rng.uniform(4, 8)),  # power multiplied
        "stuck": 1.0,
        "dropout": 1.0,
        "baseload_drift": float(rng.uniform(0.4, 1.2)),  # baseload share added by the end
        "voltage_sag": float(rng.uniform(0.82, 0.9)),  # voltage multiplied
        "voltage_swell": float(rng.uniform(1.07, 1.12)),
        "night_unoccupied": float(rng.uniform(3, 6)),  # baseload multiples added
    }[kind]


def events_in_week(
    seed: int, device_index: int, device_id: str, week: int, rate_per_day: float, interval_s: int
) -> list[AnomalyEvent]:
    """Every event that starts in `week` (epoch weeks) for one device, drawn from the seed alone."""
    if rate_per_day <= 0:
        return []
    rng = np.random.default_rng([seed, _STREAM_ANOMALY, device_index, week])
    events = []
    for _ in range(int(rng.poisson(rate_per_day * 7))):
        kind: AnomalyKind = KINDS[int(rng.integers(0, len(KINDS)))]
        if kind == "night_unoccupied":  # 01:00 UTC-ish on one night of the week
            start = week * WEEK_S + int(rng.integers(0, 7)) * 86400 + 3600
        else:
            start = week * WEEK_S + int(rng.integers(0, WEEK_S // interval_s)) * interval_s
        end = start + _duration_s(kind, rng, interval_s)
        events.append(AnomalyEvent(device_id, kind, start, end, _magnitude(kind, rng)))
    return events


def surviving(events: list[AnomalyEvent], ts: np.ndarray) -> np.ndarray:
    """The mask of readings a dropout does not remove (the change feed needs only this)."""
    keep = np.ones(ts.shape, dtype=bool)
    for ev in events:
        if ev.kind == "dropout":
            keep &= ~((ts >= ev.start) & (ts < ev.end))
    return keep


def apply_events(
    events: list[AnomalyEvent],
    ts: np.ndarray,
    power: np.ndarray,
    voltage: np.ndarray,
    occupancy: np.ndarray,
    baseload_w: float,
) -> np.ndarray:
    """Distort one day's series in place; returns the mask of readings that survive (dropouts remove)."""
    keep = surviving(events, ts)
    for ev in events:
        inside = (ts >= ev.start) & (ts < ev.end)
        if not inside.any():
            continue
        if ev.kind == "spike":
            power[inside] *= ev.magnitude
        elif ev.kind == "stuck":
            first = int(np.argmax(inside))
            power[inside] = power[first]
            voltage[inside] = voltage[first]
        elif ev.kind == "baseload_drift":
            progress = (ts[inside] - ev.start) / max(1, ev.end - ev.start)
            power[inside] += baseload_w * ev.magnitude * progress
        elif ev.kind in ("voltage_sag", "voltage_swell"):
            voltage[inside] *= ev.magnitude
        elif ev.kind == "night_unoccupied":
            power[inside] += baseload_w * ev.magnitude
            occupancy[inside] = False
    return keep
