"""One device's simulated week as a picture: the quickest way to judge whether the data looks real."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from simulator.fleet import DAY_S, Device, Fleet

_COLOURS = {
    "spike": "tab:red",
    "stuck": "tab:purple",
    "dropout": "tab:gray",
    "baseload_drift": "tab:orange",
    "voltage_sag": "tab:blue",
    "voltage_swell": "tab:cyan",
    "night_unoccupied": "tab:brown",
}


def plot_device(fleet: Fleet, dev: Device, out: Path) -> None:
    records = [
        r
        for day in range(fleet.first_reading(dev) // DAY_S, fleet.initial_now // DAY_S)
        for r in fleet.day_records(dev, day)
        if r.malformed is None and r.ts < fleet.initial_now
    ]
    when = [datetime.fromtimestamp(r.ts, UTC) for r in records]
    fig = Figure(figsize=(12, 7))
    ax_p, ax_t, ax_v = fig.subplots(3, 1, sharex=True, height_ratios=(3, 1, 1))
    ax_p.plot(when, [r.body["power_w"] / 1000 for r in records], lw=0.8, color="black")
    ax_p.set_ylabel("power kW")
    occupied = [r.body["occupancy"] for r in records]
    ax_p.fill_between(
        when, 0, 1, where=occupied, transform=ax_p.get_xaxis_transform(), color="green", alpha=0.06
    )
    ax_t.plot(when, [r.body["temp_c"] for r in records], lw=0.8, color="tab:green")
    ax_t.set_ylabel("outside °C")
    ax_v.plot(when, [r.body["voltage"] for r in records], lw=0.6, color="tab:blue")
    ax_v.set_ylabel("voltage V")
    for ev in fleet.events(dev, fleet.first_reading(dev), fleet.initial_now):
        start, end = datetime.fromtimestamp(ev.start, UTC), datetime.fromtimestamp(ev.end, UTC)
        ax_p.axvspan(start, end, color=_COLOURS[ev.kind], alpha=0.25, label=ev.kind)
    handles, labels = ax_p.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=True))
        ax_p.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    uploads = "late uploads" if dev.late else "on time"
    ax_p.set_title(
        f"{dev.device_id} ({dev.site.site_type}, {dev.meter_type}, {uploads})"
        " — shaded: injected anomalies; green: occupied"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
