"""A second labelled set, so the detector is judged on faults it was never tuned on.

The public set (`anomalies_2019_labelled.csv.gz`) injects five kinds of fault into the 2019
meters; measured against the clean 2019 file its faults look like this, and `inject_faults`
reproduces them on any `meter_id,timestamp_utc,kwh` frame (here the 2012-2017 history):

| kind        | length (h)        | change to the true load                                      |
|-------------|-------------------|--------------------------------------------------------------|
| spike       | 1                 | + 4..7 x the meter's median hourly kWh                        |
| dip         | 1..3              | x 0..0.2                                                     |
| level_shift | 31..167           | x 0.5..0.75 or x 1.3..1.8 for the whole stretch              |
| flatline    | 14..70            | every hour reads the stretch's first value                   |
| night_surge | 72..168 (3-7 nights) | + 0.8..1.4 x median at 00:00-05:59 UTC; only those hours labelled |

About 5.9 events per meter-year, kinds equally likely, never closer than a week to each other on
one meter (so an event is scored against clean history, as in the public set). The seed is an
argument; the evaluation uses `HISTORY_SEED`, which nothing is ever tuned on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["EVENTS_PER_METER_YEAR", "HISTORY_SEED", "KINDS", "inject_faults"]

KINDS = ("spike", "dip", "level_shift", "flatline", "night_surge")
EVENTS_PER_METER_YEAR = 164 / 28
HISTORY_SEED = 20_170_101
LENGTH_H = {
    "spike": (1, 1),
    "dip": (1, 3),
    "level_shift": (31, 167),
    "flatline": (14, 70),
    "night_surge": (72, 168),
}
MARGIN_H = 168


def _place(rng: np.random.Generator, n_hours: int, wanted: int) -> list[tuple[int, str, int]]:
    """(start row, kind, length) for up to `wanted` events, a week apart, past the first 9 weeks
    (the detector's warm-up, which the public set also leaves alone in practice)."""
    taken: list[tuple[int, int]] = []
    out: list[tuple[int, str, int]] = []
    for _ in range(wanted * 20):
        if len(out) == wanted:
            break
        kind = KINDS[int(rng.integers(len(KINDS)))]
        lo, hi = LENGTH_H[kind]
        length = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(9 * 168, max(9 * 168 + 1, n_hours - length)))
        if any(start < e + MARGIN_H and start + length + MARGIN_H > s for s, e in taken):
            continue
        taken.append((start, start + length))
        out.append((start, kind, length))
    return out


def inject_faults(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled rows `meter_id,timestamp_utc,kwh,label,anomaly_kind`, events `meter_id,kind,start,
    length_h`). Rows keep the input's hours (missing hours stay missing); an event is placed on the
    meter's own row positions, so a gap inside it simply has no label."""
    rng = np.random.default_rng(seed)
    frames, events = [], []
    times = pd.to_datetime(frame["timestamp_utc"], utc=True)
    frame = frame.assign(timestamp_utc=times).sort_values(["meter_id", "timestamp_utc"])
    for meter, g in frame.groupby("meter_id", sort=True):
        kwh = g["kwh"].to_numpy(dtype=float).copy()
        ts = g["timestamp_utc"].reset_index(drop=True)
        label = np.zeros(len(kwh), dtype=int)
        kind_col = np.full(len(kwh), "", dtype=object)
        median = float(np.median(kwh[kwh > 0])) if (kwh > 0).any() else 1.0
        years = len(kwh) / 8760
        wanted = int(rng.poisson(EVENTS_PER_METER_YEAR * years))
        for start, kind, length in _place(rng, len(kwh), wanted):
            idx = np.arange(start, min(start + length, len(kwh)))
            if kind == "spike":
                kwh[idx] += rng.uniform(4, 7) * median
            elif kind == "dip":
                kwh[idx] *= rng.uniform(0, 0.2)
            elif kind == "level_shift":
                factor = rng.uniform(0.5, 0.75) if rng.random() < 0.5 else rng.uniform(1.3, 1.8)
                kwh[idx] *= factor
            elif kind == "flatline":
                kwh[idx] = kwh[idx[0]]
            else:  # night_surge
                idx = idx[ts.iloc[idx].dt.hour.to_numpy() < 6]
                kwh[idx] += rng.uniform(0.8, 1.4) * median
            label[idx] = 1
            kind_col[idx] = kind
            events.append({"meter_id": meter, "kind": kind, "start": ts.iloc[start], "length_h": length})
        frames.append(
            pd.DataFrame(
                {
                    "meter_id": meter,
                    "timestamp_utc": ts,
                    "kwh": kwh.round(3),
                    "label": label,
                    "anomaly_kind": kind_col,
                }
            )
        )
    return pd.concat(frames, ignore_index=True), pd.DataFrame(events)
