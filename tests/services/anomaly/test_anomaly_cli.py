"""`gridsight anomaly score|evaluate|plot` end to end on small files, and clear errors on bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from anomaly_fleet import FleetFactory, fault_hour
from typer.testing import CliRunner

from infra.local.cli import build_app

runner = CliRunner()


@pytest.fixture
def labelled_csv(tmp_path: Path, fleet: FleetFactory) -> Path:
    frame = fleet(weeks=6)
    frame["label"] = 0
    frame["anomaly_kind"] = ""
    hit = (frame["device_id"] == "dev-3") & frame["hour"].between(fault_hour(30, 8), fault_hour(32, 8))
    frame.loc[hit, "energy_kwh"] *= 1.8
    frame.loc[hit, ["label", "anomaly_kind"]] = [1, "level_shift"]
    out = pd.DataFrame(
        {
            "meter_id": frame["device_id"],
            "timestamp_utc": frame["hour"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "kwh": frame["energy_kwh"].round(3),
            "label": frame["label"],
            "anomaly_kind": frame["anomaly_kind"],
        }
    )
    path = tmp_path / "labelled.csv"
    out.to_csv(path, index=False)
    return path


def test_score_writes_one_row_per_input_hour(labelled_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        build_app(), ["anomaly", "score", "--energy", str(labelled_csv), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["meter_id", "timestamp_utc", "score", "is_anomaly", "anomaly_type"]
    assert len(scores) == len(pd.read_csv(labelled_csv))
    flagged = scores[scores["is_anomaly"] == 1]
    assert set(flagged["meter_id"]) == {"dev-3"}
    # Causal: the first hours of a shift can only be called spikes; once it lasts it is a shift.
    assert set(flagged["anomaly_type"]) <= {"spike", "level_shift"}
    assert flagged["anomaly_type"].value_counts().idxmax() == "level_shift"


def test_evaluate_prints_metrics_beside_both_baselines(labelled_csv: Path, tmp_path: Path) -> None:
    scores = tmp_path / "scores.csv"
    app = build_app()
    assert (
        runner.invoke(
            app, ["anomaly", "score", "--energy", str(labelled_csv), "--out", str(scores)]
        ).exit_code
        == 0
    )
    metrics = tmp_path / "metrics.json"
    args = [
        "anomaly",
        "evaluate",
        "--scores",
        str(scores),
        "--labels",
        str(labelled_csv),
        "--json",
        str(metrics),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("gridsight", "same-hour-last-week z", "rolling z", "iso forest", "AUC", "false/m-yr"):
        assert name in result.output
    report = json.loads(metrics.read_text())
    rows = {m["method"]: m for m in report["rows"]}
    methods = ("gridsight", "same-hour-last-week z", "rolling z", "iso forest (not causal)")
    assert set(rows) == {f"{m} ({split})" for m in methods for split in ("dev", "test")}
    # The one fault (dev-3, 49 h) is in the test half (dev-1, dev-3, dev-5): it was found, and the
    # test half covers 3 meters x 6 weeks.
    test = rows["gridsight (test)"]
    assert test["event_recall"] == 1.0
    assert test["meter_years"] == pytest.approx(3 * 6 * 168 / 8760)
    assert test["false_incidents_per_meter_year"] == pytest.approx(
        test["false_incidents"] / test["meter_years"]
    )
    assert test["point_precision"] == 1.0
    assert test["roc_auc"] > 0.95
    assert test["false_incidents"] == 0


def test_plot_writes_a_png(labelled_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev3.png"
    args = ["anomaly", "plot", "--energy", str(labelled_csv), "--device", "dev-3", "--out", str(out)]
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "1 incidents" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("meter,timestamp_utc,kwh\na,2024-01-01 00:00:00,1\n", "lacks column(s) ['meter_id']"),
        ("meter_id,timestamp_utc,kwh\na,2024-01-01 00:00:00,lots\n", "kwh is not a number in row 2"),
        ("meter_id,timestamp_utc,kwh\na,yesterday,1\n", "unparseable timestamp_utc in row 2"),
        ("meter_id,timestamp_utc,kwh\na,2024-01-01 00:00:00,1\na,2024-01-01 00:00:00,2\n", "more than once"),
    ],
)
def test_bad_energy_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = runner.invoke(
        build_app(), ["anomaly", "score", "--energy", str(path), "--out", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output
