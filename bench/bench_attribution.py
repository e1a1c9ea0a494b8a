"""What the attribution SQL costs: one model's SELECT, now vs another version of its file, timed on
the same refreshed DuckDB warehouse, interleaved (the machine is shared, so medians of alternating
runs), each materialised into a temp table so no column can be pruned away.

    git show 5c25840:shared/sql/marts/hourly_consumption.sql > /tmp/hourly_before.sql
    .venv/bin/python bench/bench_refresh.py --phase generate --home /tmp/gs-attr --devices 200 --days 30
    .venv/bin/python bench/bench_refresh.py --phase full --home /tmp/gs-attr
    .venv/bin/python bench/bench_attribution.py --home /tmp/gs-attr --before /tmp/hourly_before.sql
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WINDOWS = {
    "full": (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)),
    "one day": (datetime(2026, 1, 30, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC)),
}


def main() -> None:
    from shared.settings import Settings
    from shared.warehouse import open_warehouse
    from shared.warehouse.duckdb import DuckDBWarehouse
    from shared.warehouse.models import compile_sql

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="GRIDSIGHT_HOME of a refreshed warehouse")
    parser.add_argument("--before", type=Path, required=True, help="the other version of the model file")
    parser.add_argument("--model", default="hourly_consumption")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    versions = {
        "before": args.before.read_text(),
        "now": (REPO / "shared" / "sql" / "marts" / f"{args.model}.sql").read_text(),
    }
    texts = {
        v: "CREATE OR REPLACE TEMP TABLE bench_out AS " + compile_sql(t).sql(dialect="bigquery")
        for v, t in versions.items()
    }
    times: dict[tuple[str, str], list[float]] = {}
    with open_warehouse(Settings(home=args.home)) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        for _ in range(args.repeats):
            for version, sql in texts.items():
                for window, (start, end) in WINDOWS.items():
                    began = time.perf_counter()
                    wh.execute(sql, {"window_start": start, "window_end": end})
                    times.setdefault((window, version), []).append(time.perf_counter() - began)
    for window in WINDOWS:
        before = statistics.median(times[(window, "before")])
        now = statistics.median(times[(window, "now")])
        print(f"{args.model} {window:8} before {before:6.3f} s  now {now:6.3f} s  ratio {now / before:5.2f}")


if __name__ == "__main__":
    main()
