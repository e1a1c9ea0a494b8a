"""Checks on rows handed to `merge`, shared by both adapters so bad input fails the same way."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from shared.warehouse.contracts import TableContract


def to_arrow(rows: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    return pa.Table.from_pandas(rows, preserve_index=False)


def merge_columns(contract: TableContract, rows: pa.Table, key: Sequence[str]) -> list[str]:
    """The contract columns present in `rows`, in contract order; refuses what would corrupt the table."""
    unknown = sorted(set(rows.column_names) - set(contract.columns))
    if unknown:
        raise ValueError(f"energy_analytics.{contract.table} has no columns {unknown}")
    missing_key = [k for k in key if k not in rows.column_names]
    if missing_key:
        raise ValueError(f"merge into {contract.table}: rows lack key columns {missing_key}")
    if rows.num_rows:
        keys = rows.select(list(key))
        if keys.group_by(list(key)).aggregate([]).num_rows != rows.num_rows:
            raise ValueError(f"merge into {contract.table}: duplicate rows for key {list(key)}")
        for k in key:
            if keys.column(k).null_count:
                raise ValueError(f"merge into {contract.table}: NULL in key column {k!r}")
    return [c for c in contract.columns if c in rows.column_names]
