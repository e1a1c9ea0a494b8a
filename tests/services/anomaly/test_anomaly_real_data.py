"""The detectors on a slice of the real labelled meters (../shared/data): the full-year figures are
in bench/bench_anomaly.py; this keeps a regression on real data inside the test suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from services.anomaly.csvscore import load_energy_csv, score_energy
from services.anomaly.evaluate import evaluate_scores, join_scores, label_events, load_labels

METERS = ["UCam_Building_b1", "UCam_Building_b105", "UCam_Building_b109", "UCam_Building_b111",
          "UCam_Building_b112", "UCam_Building_b12"]  # fmt: skip


def test_real_meters_flatlines_and_level_shifts_are_found(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "anomalies_2019_labelled.csv.gz"
    raw = pd.read_csv(source)
    path = tmp_path / "slice.csv"
    raw[raw["meter_id"].isin(METERS)].to_csv(path, index=False)
    scores = score_energy(load_energy_csv(path))
    labels = load_labels(path)
    joined = join_scores(scores, labels)
    events = label_events(labels)
    m = evaluate_scores(
        "gridsight", joined, joined["score"].to_numpy(), joined["is_anomaly"].to_numpy(bool), events
    )
    assert m.roc_auc > 0.9
    assert m.event_recall > 0.85
    assert m.point_precision > 0.4
    assert m.recall_by_kind["flatline"] > 0.8
    assert m.recall_by_kind["level_shift"] > 0.7
    assert np.isfinite(joined["score"]).all()
