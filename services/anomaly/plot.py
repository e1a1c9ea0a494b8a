"""A picture of one device's load with its incidents shaded: faster to judge than a table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot state, no display

__all__ = ["TYPE_COLOURS", "plot_incidents"]

TYPE_COLOURS = {
    "spike": "tab:red",
    "dip": "tab:purple",
    "level_shift": "tab:orange",
    "flatline": "tab:brown",
    "baseload_rise": "tab:pink",
    "dropout": "tab:gray",
    "voltage": "tab:olive",
    "impossible_value": "black",
}


def plot_incidents(
    load: pd.DataFrame, incidents: pd.DataFrame, out: Path, *, title: str, labels: pd.DataFrame | None = None
) -> Path:
    """`load` has `hour, actual, expected`; `incidents` has `start_hour, end_hour, anomaly_type`;
    optional `labels` (`hour`, `label`) draws the ground truth as a strip under the axis."""
    fig = Figure(figsize=(14, 4.5), dpi=110)
    ax = fig.subplots()
    ax.plot(load["hour"], load["actual"], lw=0.7, color="tab:blue", label="actual kWh")
    ax.plot(load["hour"], load["expected"], lw=0.7, color="tab:green", alpha=0.7, label="expected kWh")
    seen: set[str] = set()
    for inc in incidents.itertuples():
        kind = str(inc.anomaly_type)
        ax.axvspan(
            inc.start_hour,
            inc.end_hour,
            color=TYPE_COLOURS.get(kind, "tab:cyan"),
            alpha=0.3,
            lw=0,
            label=None if kind in seen else kind,
        )
        seen.add(kind)
    if labels is not None and not labels.empty:
        top = float(load["actual"].max()) if len(load) else 1.0
        truth = labels[labels["label"] == 1]
        ax.scatter(
            truth["hour"], [-0.04 * top] * len(truth), s=4, marker="|", color="crimson", label="labelled"
        )
    ax.set_title(title)
    ax.set_ylabel("kWh per hour")
    ax.legend(loc="upper left", ncols=5, fontsize=8)
    ax.margins(x=0.005)
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
