"""Memory ceiling per event: the anomaly service's push handler on the events of #18.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_event_memory.py [--devices 3 50] [--days 160] [--chunk 100]

For each fleet size: land `days` of hourly readings, refresh, then deliver through the real
`handle_push` (push token, `check_event`, `score_window`), each event in a fresh process:
- the issue's forged window 1970-01-01 -> 2099-01-01 (before: 3.2 GB and 40 s for 3 devices);
- 1970-01-01 -> the data's end, which `check_event` clamps to GRIDSIGHT_EVENT_MAX_WINDOW_HOURS
  (93 days): the largest window a service can be made to score, so the ceiling;
- the last 24 h, what an incremental refresh announces.
`--chunk` sets GRIDSIGHT_ANOMALY_DEVICE_CHUNK (devices scored at once) in the child; `--cases`
picks which of the three events to send. Prints status, milliseconds, the peak of
Python/numpy/pandas allocations during the push (tracemalloc; DuckDB's own buffers are not
traced) and the peak RSS above the process's RSS just before the push (ru_maxrss high-water
mark, after imports and one warehouse open).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from shared.refresh import refresh_features  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.warehouse.rawfixture import RawStore, make_fleet, make_readings  # noqa: E402

END = datetime(2026, 11, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CHILD = r"""
import json, resource, sys, time, tracemalloc
from datetime import datetime
import flask
from services.anomaly.scoring import score_window
from shared.events import FeaturesRefreshed
from shared.push import handle_push
from shared.settings import Settings
from shared.warehouse import open_warehouse
from tests.pushing import push_envelope, push_headers

home, start, end, devices = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
settings = Settings(home=home)
with open_warehouse(settings) as wh:  # warm: the connection path is not what is measured
    wh.query("SELECT 1 AS one")
event = FeaturesRefreshed(refresh_id=f"mem-{start}-{end}", window_start=datetime.fromisoformat(start),
                          window_end=datetime.fromisoformat(end), device_ids=devices)
app = flask.Flask("mem")
body = push_envelope(event, subscription="anomaly-features")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t0 = time.perf_counter()
with app.test_request_context("/pubsub/features-refreshed", method="POST", json=body,
                              headers=push_headers(settings)):
    response = handle_push(flask.request, expected=FeaturesRefreshed, handler="anomaly",
                           work=score_window, settings=settings)
ms = (time.perf_counter() - t0) * 1000
traced = tracemalloc.get_traced_memory()[1]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": response.status_code, "ms": ms, "before_mb": before / 1024,
                  "peak_mb": peak / 1024, "traced_mb": traced / 2**20}))
"""


def _land(settings: Settings, n: int, days: int) -> list[str]:
    sites, fleet = make_fleet(n, interval_minutes=60)
    ids = fleet["device_id"].to_pylist()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.raw_duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with RawStore(settings.raw_duckdb_path, primary_keys=False) as raw:
        raw.upsert("site", sites, END)
        raw.upsert("device", fleet, END)
        raw.upsert("reading", make_readings(ids, END - timedelta(days=days), END, interval_minutes=60), END)
    refresh_features(settings, full=True)
    return ids


def _push(home: Path, start: datetime, end: datetime, devices: list[str], chunk: int | None) -> dict:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "GRIDSIGHT_LOG_LEVEL": "ERROR"}
    if chunk is not None:
        env["GRIDSIGHT_ANOMALY_DEVICE_CHUNK"] = str(chunk)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(home), start.isoformat(), end.isoformat(), json.dumps(devices)],
        capture_output=True, text=True, cwd=REPO, env=env, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, nargs="+", default=[3, 50])
    parser.add_argument(
        "--days", type=int, default=160, help="history landed (>= 93 + 63 days fills the clamp)"
    )
    parser.add_argument("--chunk", type=int, help="anomaly_device_chunk (default: the setting's)")
    parser.add_argument(
        "--cases", nargs="+", choices=("forged", "clamped", "day"), default=["forged", "clamped", "day"]
    )
    args = parser.parse_args()
    console = Console()
    table = Table(title="anomaly push handler, one event per fresh process")
    columns = ("devices", "event window", "status", "ms (traced)", "peak Python+numpy allocations MB",
               "peak RSS above start MB", "peak RSS MB")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for n in args.devices:
        home = Path(tempfile.mkdtemp(prefix="bench-mem-"))
        settings = Settings(home=home)
        with console.status(f"landing and refreshing {n} devices x {args.days} days"):
            ids = _land(settings, n, args.days)
        cases = {
            "forged": ("1970 -> 2099 (forged)", EPOCH, datetime(2099, 1, 1, tzinfo=UTC)),
            "clamped": ("1970 -> data end (clamped to 93 d)", EPOCH, END),
            "day": ("last 24 h", END - timedelta(hours=24), END),
        }
        for case in args.cases:
            name, start, end = cases[case]
            result = _push(home, start, end, ids, args.chunk)
            above = result["peak_mb"] - result["before_mb"]
            traced = f"{result['traced_mb']:.1f}"
            cells = [
                str(result["status"]),
                f"{result['ms']:.0f}",
                traced,
                f"{above:.0f}",
                f"{result['peak_mb']:.0f}",
            ]
            table.add_row(str(n), name, *cells)
    console.print(table)


if __name__ == "__main__":
    main()
