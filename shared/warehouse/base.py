"""The warehouse interface every service codes against; DuckDB and BigQuery implement it.

SQL passed in is GoogleSQL (BigQuery's dialect) with named `@parameters`. Tables are named
dataset-qualified: `raw.<table>` for what Fivetran lands and `energy_analytics.<table>` for what we
model. Each adapter maps those two dataset names to its own (settings.raw_dataset /
settings.analytics_dataset on BigQuery; the attached connector file and a schema on DuckDB), so the
same text runs on both.

A Warehouse is opened per unit of work and closed after it (DuckDB allows one writer per file
across processes): use `with open_warehouse(settings) as wh: ...`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import pyarrow as pa

__all__ = ["Params", "Warehouse"]

Params = Mapping[str, Any]


@runtime_checkable
class Warehouse(Protocol):
    backend: str

    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run one GoogleSQL SELECT with named parameters; results as Arrow."""
        ...

    def query_df(self, sql: str, params: Params | None = None) -> pd.DataFrame:
        """Same as `query`, as a pandas DataFrame."""
        ...

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a GoogleSQL statement (DDL/DML); returns affected rows where known."""
        ...

    def merge(self, table: str, rows: pa.Table | pd.DataFrame, key: Sequence[str]) -> int:
        """Upsert `rows` into `energy_analytics.<table>` on `key`; re-running with the same rows is a
        no-op. Returns the number of rows inserted or changed."""
        ...

    def table_exists(self, table: str) -> bool:
        """`table` is dataset-qualified, e.g. `energy_analytics.forecasts`."""
        ...

    def close(self) -> None: ...
