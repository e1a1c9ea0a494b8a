"""The evaluation protocol both labelled sets go through, for `gridsight anomaly evaluate` and
bench/bench_anomaly.py alike: injected faults only (natural zeros apart), every method on the
development and the test split, baseline thresholds frozen on development data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from services.anomaly.evaluate import (
    NATURAL_ZERO,
    Metrics,
    evaluate_scores,
    freeze_threshold,
    label_events,
    rolling_z_scores,
    same_week_z_scores,
    without_natural_zeros,
)

__all__ = ["NaturalZeros", "QualityReport", "quality_report"]


class NaturalZeros(BaseModel):
    """How the detector does on the archive's own zero readings (not injected, not in the metrics)."""

    events: int
    events_found: int
    hours: int
    hours_flagged: int


class QualityReport(BaseModel):
    rows: list[Metrics]  # method names end in "(dev)" or "(test)"
    natural_zeros: NaturalZeros | None
    same_week_threshold: float


def _natural(joined: pd.DataFrame) -> NaturalZeros | None:
    zeros = joined[joined["kind"] == NATURAL_ZERO]
    if zeros.empty:
        return None
    events = label_events(joined[joined["kind"] == NATURAL_ZERO])
    flagged = zeros[zeros["is_anomaly"].astype(bool)]
    found = 0
    for ev in events.itertuples():
        hit = flagged[
            (flagged["meter_id"] == ev.meter_id) & flagged["timestamp_utc"].between(ev.start, ev.end)
        ]
        found += int(not hit.empty)
    return NaturalZeros(events=len(events), events_found=found, hours=len(zeros), hours_flagged=len(flagged))


def quality_report(joined: pd.DataFrame, dev: np.ndarray, *, isolation: bool = False) -> QualityReport:
    """`joined` = labels with the detector's `score`, `is_anomaly`, `anomaly_type` beside them
    (`evaluate.join_scores`); `dev` marks its development rows (the rest is the test split)."""
    natural = _natural(joined)
    keep = (joined["kind"] != NATURAL_ZERO).to_numpy()
    injected = without_natural_zeros(joined)
    dev = np.asarray(dev, dtype=bool)[keep]
    week, _ = same_week_z_scores(injected)
    week_cut = freeze_threshold(week[dev], injected["label"].to_numpy()[dev])
    roll, roll_flag = rolling_z_scores(injected)
    methods: list[tuple[str, np.ndarray, np.ndarray]] = [
        ("gridsight", injected["score"].to_numpy(), injected["is_anomaly"].to_numpy(bool)),
        ("same-hour-last-week z", week, week >= week_cut),
        ("rolling z", roll, roll_flag),
    ]
    if isolation:
        from services.anomaly.evaluate import isolation_forest_scores

        iso, iso_flag = isolation_forest_scores(injected)
        methods.append(("iso forest (not causal)", iso, iso_flag))
    rows = []
    for split, mask in (("dev", dev), ("test", ~dev)):
        if not mask.any():
            continue
        part = injected[mask].reset_index(drop=True)
        events = label_events(part)
        for name, score, flag in methods:
            sub = part if name == "gridsight" else part.drop(columns=["anomaly_type"], errors="ignore")
            rows.append(evaluate_scores(f"{name} ({split})", sub, score[mask], flag[mask], events))
    return QualityReport(rows=rows, natural_zeros=natural, same_week_threshold=week_cut)
