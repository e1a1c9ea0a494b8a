"""The backtest on a slice of the real meters: causality, output contract, clear input errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from services.forecast.backtest import build_panel, load_energy_csv, load_weather_csv, run_backtest
from tests.services.forecast.conftest import FAST, METERS


def _forecasts_for(energy: pd.DataFrame, weather: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    result = run_backtest(build_panel(energy, weather), start, end, mstl=False, params=FAST)
    return result.forecasts.sort_values(["meter_id", "timestamp_utc"]).reset_index(drop=True)


def test_corrupting_every_hour_from_the_origin_on_leaves_that_origins_forecasts_bit_identical(
    energy_slice: Path, weather_slice: Path
) -> None:
    """Leakage test: from the origin itself on (not origin + 24 h) energy and weather are replaced by
    garbage and holes; the forecasts made at that origin and before must not change by a bit."""
    energy, weather = load_energy_csv(energy_slice), load_weather_csv(weather_slice)
    origin = pd.Timestamp("2019-11-12")
    full = _forecasts_for(energy, weather, date(2019, 11, 11), date(2019, 11, 14))
    bad_e, bad_w = energy.copy(), weather.copy()
    later = bad_e["timestamp_utc"] >= origin
    bad_e.loc[later, "kwh"] = bad_e.loc[later, "kwh"] * 9 + 100
    bad_e = bad_e[~(later & (bad_e["timestamp_utc"].dt.hour % 5 == 0))]  # and missing hours
    bad_w.loc[bad_w["timestamp_utc"] >= origin, "air_temperature_c"] = 45.0
    corrupted = _forecasts_for(bad_e, bad_w, date(2019, 11, 11), date(2019, 11, 14))
    mine = full[full["origin_utc"] <= origin].reset_index(drop=True)
    theirs = corrupted[corrupted["origin_utc"] <= origin].reset_index(drop=True)
    assert len(mine) == len(METERS) * 2 * 24
    pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    # ...while a later origin, which may see the corrupted hours, does change
    assert not np.allclose(
        full[full["origin_utc"] == origin + pd.Timedelta(days=1)]["p50"],
        corrupted[corrupted["origin_utc"] == origin + pd.Timedelta(days=1)]["p50"],
    )


def test_changing_the_data_before_an_origin_changes_its_forecasts(
    energy_slice: Path, weather_slice: Path
) -> None:
    """The causality test above could pass with a model that ignores its input; this one cannot."""
    energy, weather = load_energy_csv(energy_slice), load_weather_csv(weather_slice)
    base = _forecasts_for(energy, weather, date(2019, 11, 12), date(2019, 11, 12))
    bumped = energy.copy()
    recent = bumped["timestamp_utc"].between(pd.Timestamp("2019-11-11"), pd.Timestamp("2019-11-11 23:00"))
    bumped.loc[recent, "kwh"] *= 3
    changed = _forecasts_for(bumped, weather, date(2019, 11, 12), date(2019, 11, 12))
    assert not np.allclose(base["p50"], changed["p50"])


def test_backtest_command_writes_the_contract_csv_and_scores_baselines(
    energy_slice: Path, weather_slice: Path, tmp_path: Path, settings
) -> None:
    from infra.local.cli import build_app

    out = tmp_path / "fc.csv"
    result = CliRunner().invoke(
        build_app(),
        [
            "forecast",
            "backtest",
            "--energy",
            str(energy_slice),
            "--weather",
            str(weather_slice),
            "--start",
            "2019-11-15",
            "--end",
            "2019-11-16",
            "--out",
            str(out),
            "--no-mstl",
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["meter_id", "origin_utc", "timestamp_utc", "p10", "p50", "p90"]
    assert len(frame) == len(METERS) * 2 * 24
    assert (frame["p10"] <= frame["p50"]).all()
    assert (frame["p50"] <= frame["p90"]).all()
    for name in ("gridsight", "seasonal_naive_24h", "seasonal_naive_168h"):
        assert name in result.output


def test_backtest_command_names_a_missing_column(tmp_path: Path, settings) -> None:
    from infra.local.cli import build_app

    bad = tmp_path / "bad.csv"
    bad.write_text("meter,timestamp_utc,kwh\nm1,2019-01-01 00:00:00,1.0\n")
    result = CliRunner().invoke(
        build_app(),
        [
            "forecast",
            "backtest",
            "--energy",
            str(bad),
            "--start",
            "2019-01-02",
            "--end",
            "2019-01-03",
            "--out",
            str(tmp_path / "o.csv"),
            "--no-mstl",
        ],
    )
    assert result.exit_code == 2
    assert "missing column(s) ['meter_id']" in result.output


def test_plot_writes_a_png_and_names_an_unknown_meter(
    panel_slice, energy_slice: Path, tmp_path: Path
) -> None:
    import pytest

    from services.forecast.plot import plot_forecasts

    forecasts = run_backtest(
        panel_slice, date(2019, 11, 15), date(2019, 11, 16), mstl=False, params=FAST
    ).forecasts
    actuals = load_energy_csv(energy_slice)
    out = plot_forecasts(forecasts, actuals, tmp_path / "fc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no forecasts for meter"):
        plot_forecasts(forecasts, actuals, tmp_path / "x.png", meters=["nope"])


def test_mstl_baseline_forecasts_every_meter_and_caches_each_series(panel_slice, tmp_path: Path) -> None:
    from services.forecast.backtest import mstl_forecasts
    from services.forecast.dataset import origin_positions

    day = origin_positions(panel_slice, pd.Timestamp("2019-11-15"), pd.Timestamp("2019-11-15"), 24)
    first = mstl_forecasts(panel_slice, day, tmp_path)
    assert first.shape == (len(METERS), 1, 24)
    assert np.isfinite(first).all()
    assert len(list(tmp_path.glob("*/*.npy"))) == len(METERS)  # one file per (meter, origin) series
    np.testing.assert_array_equal(first, mstl_forecasts(panel_slice, day, tmp_path))
    # a second origin next to the cached one fits only the new series; one meter alone reuses its own
    two = origin_positions(panel_slice, pd.Timestamp("2019-11-15"), pd.Timestamp("2019-11-16"), 24)
    both = mstl_forecasts(panel_slice, two, tmp_path)
    assert len(list(tmp_path.glob("*/*.npy"))) == 2 * len(METERS)
    np.testing.assert_array_equal(both[:, :1], first)
    np.testing.assert_array_equal(
        mstl_forecasts(panel_slice, day, tmp_path, devices=np.array([2])), first[2:]
    )
