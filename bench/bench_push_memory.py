"""What one anomaly push costs a Cloud Run instance: peak memory and time for N devices x 9 weeks.

Sizes the anomaly service in infra/terraform (locals.tf service_needs; infra/README.md "Sizing").
The 35 real meters (meters_2019_hourly.csv.gz, 1 Sep - 21 Nov 2019) are copied to `--devices`
devices, loaded into a temporary DuckDB warehouse as hourly_consumption, then one FeaturesRefreshed
for 20 Nov is scored and merged (detect_window + write_incidents: the push's work). Peak RSS is the
process's, so it includes the loaded warehouse: an upper bound for the push. Run each size in its own
process (ru_maxrss never goes down):

    .venv/bin/python bench/bench_push_memory.py --devices 1000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from services.anomaly.csvscore import load_energy_csv
from services.anomaly.scoring import detect_window, write_incidents
from shared.events import FeaturesRefreshed
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    frame = load_energy_csv(args.data / "meters_2019_hourly.csv.gz")
    hours = frame["hour"]
    frame = frame[
        (hours >= pd.Timestamp("2019-09-01", tz="UTC")) & (hours < pd.Timestamp("2019-11-21", tz="UTC"))
    ]
    copies = -(-args.devices // frame["device_id"].nunique())
    frame = pd.concat([frame.assign(device_id=frame["device_id"] + f"-{i}") for i in range(copies)])
    devices = sorted(frame["device_id"].unique())[: args.devices]
    frame = frame[frame["device_id"].isin(devices)]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        with open_warehouse(settings) as wh:
            wh.merge(
                "dim_device",
                pd.DataFrame({"device_id": devices, "site_id": "cam", "name": devices}),
                key=["device_id"],
            )
            wh.merge("hourly_consumption", frame.assign(coverage=1.0), key=["device_id", "hour"])
        del frame
        loaded = _peak_mb()
        event = FeaturesRefreshed(
            refresh_id="bench",
            window_start=datetime(2019, 11, 20, tzinfo=UTC),
            window_end=datetime(2019, 11, 21, tzinfo=UTC),
            device_ids=devices,
        )
        started = time.perf_counter()
        with open_warehouse(settings) as wh:
            write_incidents(wh, detect_window(event, wh, now=datetime.now(UTC)))
        elapsed = time.perf_counter() - started
    print(
        f"devices={args.devices} push_s={elapsed:.1f} peak_rss_mb={_peak_mb():.0f} "
        f"peak_rss_before_push_mb={loaded:.0f}"
    )


if __name__ == "__main__":
    main()
