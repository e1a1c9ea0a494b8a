"""The CSV path: score a `meter_id,timestamp_utc,kwh` file (the forecast backtest's format) with
the very detectors the service runs on the warehouse, hour by hour and causally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from services.anomaly.combine import rank_hours
from services.anomaly.detectors import DetectorConfig, panel_from_long, run_detectors

__all__ = [
    "ENERGY_COLUMNS",
    "SCORE_COLUMNS",
    "load_energy_csv",
    "load_weather_csv",
    "rank_energy",
    "score_energy",
]

ENERGY_COLUMNS = ("meter_id", "timestamp_utc", "kwh")
WEATHER_COLUMNS = ("timestamp_utc", "air_temperature_c")
SCORE_COLUMNS = ["meter_id", "timestamp_utc", "score", "is_anomaly", "anomaly_type"]


def _read(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} file {path} lacks column(s) {missing}; has {list(frame.columns)}")
    return frame


def _parse_times(values: pd.Series, path: Path) -> pd.Series:
    times = pd.to_datetime(values, utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        raise ValueError(
            f"{path}: unparseable timestamp_utc in row {int(bad.idxmax()) + 2}: {values[bad].iloc[0]!r}"
        )
    return times


def load_energy_csv(path: Path) -> pd.DataFrame:
    """Rows as `device_id, hour, energy_kwh`; a non-numeric kWh or a duplicate hour is an error
    naming the row, not a silently dropped reading."""
    raw = _read(path, ENERGY_COLUMNS, "energy")
    kwh = pd.to_numeric(raw["kwh"], errors="coerce")
    if kwh.isna().any():
        row = int(kwh.isna().idxmax())
        raise ValueError(f"{path}: kwh is not a number in row {row + 2}: {raw['kwh'].iloc[row]!r}")
    frame = pd.DataFrame(
        {
            "device_id": raw["meter_id"].astype(str),
            "hour": _parse_times(raw["timestamp_utc"], path).dt.floor("h"),
            "energy_kwh": kwh.astype(float),
        }
    )
    dupes = frame.duplicated(["device_id", "hour"])
    if dupes.any():
        row = frame[dupes].iloc[0]
        raise ValueError(f"{path}: meter {row['device_id']} has hour {row['hour']} more than once")
    return frame


def load_weather_csv(path: Path) -> pd.DataFrame:
    raw = _read(path, WEATHER_COLUMNS, "weather")
    return pd.DataFrame(
        {
            "hour": _parse_times(raw["timestamp_utc"], path).dt.floor("h"),
            "air_temperature_c": pd.to_numeric(raw["air_temperature_c"], errors="coerce"),
        }
    )


def _format_hours(hours: pd.Series) -> np.ndarray:
    """strftime on 300,000 timestamps takes seconds; there are only ~9,000 distinct hours."""
    unique, inverse = np.unique(hours.dt.tz_convert(None).to_numpy(), return_inverse=True)
    return pd.DatetimeIndex(unique).strftime("%Y-%m-%d %H:%M:%S").to_numpy()[inverse]


def rank_energy(
    energy: pd.DataFrame, cfg: DetectorConfig | None = None, *, calibrated: bool = True
) -> pd.DataFrame:
    """`combine.rank_hours` for exactly the input hours (what the calibration is fitted on)."""
    panel = panel_from_long(energy)
    _, findings = run_detectors(panel, cfg)
    return rank_hours(panel, findings, calibrated=calibrated)


def score_energy(energy: pd.DataFrame, cfg: DetectorConfig | None = None) -> pd.DataFrame:
    """Scores for exactly the input hours, in `SCORE_COLUMNS` (times as ISO UTC without offset,
    like the input)."""
    ranked = rank_energy(energy, cfg)
    return pd.DataFrame(
        {
            "meter_id": ranked["device_id"],
            "timestamp_utc": _format_hours(ranked["hour"]),
            "score": ranked["score"].round(6),
            "is_anomaly": ranked["is_anomaly"].astype(int),
            "anomaly_type": ranked["anomaly_type"],
        }
    )
