"""Actual vs p50 with the p10–p90 band, one panel per meter: the picture that shows whether the
interval is honest and where the model misses (closures, holidays)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["plot_forecasts"]


def plot_forecasts(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    out: Path,
    *,
    meters: list[str] | None = None,
    max_meters: int = 4,
) -> Path:
    """`forecasts` has meter_id,timestamp_utc,p10,p50,p90 (backtest output); `actuals` has
    meter_id,timestamp_utc,kwh. Writes a PNG with one row per meter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    if forecasts.empty:
        raise ValueError("no forecasts to plot")
    fc = forecasts.assign(timestamp_utc=pd.to_datetime(forecasts["timestamp_utc"]).dt.tz_localize(None))
    act = actuals.assign(timestamp_utc=pd.to_datetime(actuals["timestamp_utc"]).dt.tz_localize(None))
    chosen = meters or sorted(fc["meter_id"].astype(str).unique())[:max_meters]
    unknown = set(chosen) - set(fc["meter_id"].astype(str))
    if unknown:
        raise ValueError(f"no forecasts for meter(s) {sorted(unknown)}")
    fig, axes = plt.subplots(len(chosen), 1, figsize=(12, 2.6 * len(chosen)), sharex=True, squeeze=False)
    lo, hi = fc["timestamp_utc"].min(), fc["timestamp_utc"].max()
    for ax, meter in zip(axes[:, 0], chosen, strict=True):
        f = fc[fc["meter_id"].astype(str) == meter].sort_values("timestamp_utc")
        a = act[(act["meter_id"].astype(str) == meter) & act["timestamp_utc"].between(lo, hi)]
        a = a.sort_values("timestamp_utc")
        ax.fill_between(f["timestamp_utc"], f["p10"], f["p90"], color="tab:blue", alpha=0.25, label="p10–p90")
        ax.plot(f["timestamp_utc"], f["p50"], color="tab:blue", lw=1.2, label="p50 forecast")
        ax.plot(a["timestamp_utc"], a["kwh"], color="black", lw=0.9, label="actual")
        inside = a.merge(f, on="timestamp_utc")
        cover = (
            ((inside["kwh"] >= inside["p10"]) & (inside["kwh"] <= inside["p90"])).mean() if len(inside) else 0
        )
        ax.set_title(f"{meter}  (p10–p90 covers {cover:.0%} of actual hours)", fontsize=9, loc="left")
        ax.set_ylabel("kWh / h")
        ax.grid(alpha=0.3)
    locator = mdates.AutoDateLocator(maxticks=12)
    axes[-1, 0].xaxis.set_major_locator(locator)
    axes[-1, 0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    fig.suptitle("24 h-ahead forecasts from 00:00 UTC origins: actual vs p50 with p10–p90 band")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
