"""The validation protocol on a small synthetic panel: windows and splits, who counts, and that no
data at or after a window reaches its model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from services.forecast.backtest import fit_forecaster
from services.forecast.dataset import Panel
from services.forecast.protocol import (
    ProtocolResult,
    eligible_meters,
    protocol_windows,
    run_protocol,
    run_window,
)
from tests.services.forecast.conftest import FAST

NOV = pd.Timestamp("2019-11-17")


@pytest.fixture(scope="module")
def synthetic() -> Panel:
    """Three buildings, 1 Aug – 31 Dec 2019: daily and weekly cycles, noise; the third only from
    1 Oct (too little history for the November window)."""
    index = pd.date_range("2019-08-01", "2019-12-31 23:00", freq="h")
    rng = np.random.default_rng(3)
    hour, dow = index.hour.to_numpy(), index.dayofweek.to_numpy()
    shape = 1 + 0.8 * ((hour >= 8) & (hour < 18)) * (dow < 5)
    kwh = np.stack([size * shape * rng.normal(1, 0.05, len(index)) for size in (5.0, 20.0, 50.0)])
    kwh[2, index < pd.Timestamp("2019-10-01")] = np.nan
    temp = 10 + 5 * np.sin(np.arange(len(index)) * 2 * np.pi / 24)
    return Panel(index=index, kwh=kwh, device_ids=["a", "b", "c"], temp_c=temp)


def _fast_fitter(record: list | None = None):
    def fit(train: Panel, first_origin: pd.Timestamp, *, params=None, closure_calendar=True):
        if record is not None:
            record.append(train)
        return fit_forecaster(train, first_origin, params=FAST, closure_calendar=closure_calendar)

    return fit


def test_every_year_has_five_windows_and_each_year_its_split() -> None:
    windows = protocol_windows()
    assert len(windows) == 7 * 5
    by = {(w.year, w.kind): w.split for w in windows}
    assert {
        by[(y, k)] for y in range(2012, 2017) for k in ("lent", "exams", "summer", "michaelmas", "christmas")
    } == {"development"}
    assert {by[(2017, k)] for k in ("lent", "exams", "summer", "michaelmas", "christmas")} == {"held-out"}
    assert [by[(2019, k)] for k in ("lent", "exams", "summer", "michaelmas", "christmas")] == [
        "development",
        "development",
        "development",
        "tuned-before",
        "tuned-before",
    ]
    assert [w.year for w in protocol_windows(split="held-out")] == [2017] * 5


def test_origins_are_the_14_days_or_every_other_one_covering_each_weekday_once() -> None:
    (xmas,) = protocol_windows(years=[2019], kinds=["christmas"])
    assert xmas.origin_days == [date(2019, 12, d) for d in range(18, 32)]
    (seven,) = protocol_windows(years=[2019], kinds=["christmas"], origins=7)
    assert seven.origin_days == [date(2019, 12, d) for d in range(18, 32, 2)]
    assert sorted(d.weekday() for d in seven.origin_days) == list(range(7))
    with pytest.raises(ValueError, match="origins must be 7 or 14"):
        protocol_windows(origins=10)
    with pytest.raises(ValueError, match="unknown window"):
        protocol_windows(kinds=["easter"])


def test_a_meter_counts_only_with_90_percent_of_the_8_weeks_before_the_window(synthetic: Panel) -> None:
    assert list(eligible_meters(synthetic, NOV)) == [0, 1]
    patchy = synthetic.kwh.copy()
    start = synthetic.position(NOV)
    patchy[0, start - 8 * 168 : start - 8 * 168 + 140] = np.nan  # 10.4 % of the 1,344 h missing
    patchy[1, start - 8 * 168 : start - 8 * 168 + 130] = np.nan  # 9.7 %: still counts
    panel = Panel(synthetic.index, patchy, synthetic.device_ids, synthetic.temp_c)
    assert list(eligible_meters(panel, NOV)) == [1]


def test_the_model_never_sees_data_at_or_after_the_window(synthetic: Panel) -> None:
    (window,) = protocol_windows(years=[2019], kinds=["michaelmas"], origins=7)
    seen: list[Panel] = []
    result = run_window(synthetic, window, mstl=False, train_days=60, fitter=_fast_fitter(seen))
    assert result.meters == 2
    assert result.trained_before == NOV
    (train,) = seen
    assert train.index[-1] < NOV
    assert train.index[0] == NOV - pd.Timedelta(days=60)

    # Replace everything from the window's start on: the first origin's forecasts stay bit-identical.
    corrupt = synthetic.kwh.copy()
    corrupt[:, synthetic.position(NOV) :] *= 7.0
    corrupt[:, synthetic.position(NOV) + 5 :: 11] = np.nan
    temp = synthetic.temp_c.copy()
    temp[synthetic.position(NOV) :] = -40.0
    other = run_window(
        Panel(synthetic.index, corrupt, synthetic.device_ids, temp),
        window,
        mstl=False,
        train_days=60,
        fitter=_fast_fitter(),
    )
    first = np.arange(0, 2 * 7, 7)  # units are meter-major: unit 0 and 7 are each meter's first origin
    np.testing.assert_array_equal(result.units["gridsight"][first], other.units["gridsight"][first])
    assert not np.array_equal(result.units["gridsight"], other.units["gridsight"])


def test_christmas_is_also_scored_without_the_closure_calendar_and_pooled_by_split(synthetic: Panel) -> None:
    result = run_protocol(
        synthetic,
        years=[2019],
        kinds=["michaelmas", "christmas"],
        origins=7,
        mstl=False,
        train_days=60,
        fitter=_fast_fitter(),
    )
    assert isinstance(result, ProtocolResult)
    nov, dec = result.windows
    assert nov.score("gridsight_no_closure") is None
    assert dec.score("gridsight_no_closure") is not None
    assert [s.model for s in nov.scores] == ["gridsight", "seasonal_naive_24h", "seasonal_naive_168h"]
    summary = result.summary()
    assert set(summary) == {
        "split tuned-before",
        "2019 all windows",
        "2019 term time",
        "all windows",
        "Christmas windows",
    }
    assert "gridsight_no_closure" not in {s.model for s in summary["all windows"]}
    assert "gridsight_no_closure" in {s.model for s in summary["Christmas windows"]}
    # pooled MASE is the mean over all meter-origin units of both windows
    nov_units = nov.units["actual"].shape[0]
    dec_units = dec.units["actual"].shape[0]
    pooled = next(s for s in summary["all windows"] if s.model == "gridsight").mase
    expected = (nov.score("gridsight").mase * nov_units + dec.score("gridsight").mase * dec_units) / (
        nov_units + dec_units
    )
    assert pooled == pytest.approx(expected)


def test_a_window_without_history_is_reported_as_skipped(synthetic: Panel) -> None:
    result = run_protocol(synthetic, years=[2019], kinds=["summer"], mstl=False, fitter=_fast_fitter())
    (summer,) = result.windows
    assert summer.skipped == "no meter has 90 % of the 8 weeks before it observed"
    assert summer.scores == []


def test_backtest_protocol_command_prints_the_split_and_training_span(
    synthetic: Panel, tmp_path: Path, settings
) -> None:
    from infra.local.cli import build_app

    rows = [
        (m, t, v)
        for d, m in enumerate(synthetic.device_ids)
        for t, v in zip(synthetic.index, synthetic.kwh[d], strict=True)
        if np.isfinite(v)
    ]
    energy = tmp_path / "energy.csv"
    pd.DataFrame(rows, columns=["meter_id", "timestamp_utc", "kwh"]).to_csv(energy, index=False)
    out = tmp_path / "protocol.json"
    result = CliRunner().invoke(
        build_app(),
        [
            "forecast",
            "backtest",
            "--protocol",
            "--energy",
            str(energy),
            "--years",
            "2019",
            "--windows",
            "michaelmas,summer",
            "--origins",
            "7",
            "--train-days",
            "60",
            "--no-mstl",
            "--json",
            str(out),
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "tuned-before" in result.output
    assert "│ 2019 │ michaelmas │ tuned-before │      2 │ 2019-11-17" in result.output
    assert "│ 2019 │ summer     │ development  │      0 │ skipped" in result.output
    import json

    figures = json.loads(out.read_text())
    assert [w["window"] for w in figures["windows"]] == ["summer", "michaelmas"]
    assert figures["windows"][0]["skipped"] == "no meter has 90 % of the 8 weeks before it observed"
    assert figures["windows"][1]["trained_on"] == {
        "from": "2019-09-18 00:00:00",
        "before": "2019-11-17 00:00:00",
    }


def test_the_closure_hook_drops_the_closure_but_keeps_the_bank_holidays() -> None:
    from services.forecast.features import holiday_flags

    days = pd.DatetimeIndex(["2019-12-23", "2019-12-25", "2019-12-27"])
    hol, clo = holiday_flags(days)
    assert list(hol) == [False, True, True]
    assert list(clo) == [False, True, True]
    hol, clo = holiday_flags(days, closure_calendar=False)
    assert list(hol) == [False, True, False]  # Christmas Day stays a bank holiday
    assert list(clo) == [False, False, False]


def test_a_window_past_the_end_of_the_data_is_cut_to_the_origins_it_has(synthetic: Panel) -> None:
    short = Panel(
        synthetic.index[: synthetic.position(pd.Timestamp("2019-11-22"))],
        synthetic.kwh[:, : synthetic.position(pd.Timestamp("2019-11-22"))],
        synthetic.device_ids,
        synthetic.temp_c[: synthetic.position(pd.Timestamp("2019-11-22"))],
    )
    (window,) = protocol_windows(years=[2019], kinds=["michaelmas"])
    result = run_window(short, window, mstl=False, train_days=60, fitter=_fast_fitter())
    assert result.units["actual"].shape == (2 * 5, 24)  # 17..21 Nov: 5 origins for each of 2 meters
    (after,) = protocol_windows(years=[2020], kinds=["lent"])
    assert run_window(short, after, mstl=False).skipped is not None
