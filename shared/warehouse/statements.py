"""GoogleSQL statements derived from table contracts: DDL and the MERGE every write goes through.

Written once in GoogleSQL and rendered per backend by `dialect.render`, like the models.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.warehouse.contracts import TableContract

__all__ = ["changed_condition", "create_table_sql", "merge_sql"]

# Recomputing an aggregate in a different order can move the last bits of a float; such a row is
# not "changed", so a re-run stays a no-op. 1e-9 relative is far below any meter's resolution.
FLOAT_TOLERANCE = 1e-9


def create_table_sql(contract: TableContract, *, layout: bool) -> str:
    """CREATE TABLE IF NOT EXISTS; `layout` adds BigQuery day partitioning and clustering."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in contract.columns.items())
    sql = f"CREATE TABLE IF NOT EXISTS energy_analytics.{contract.table} (\n  {columns}\n)"
    if layout and contract.partition_by:
        column = contract.partition_by
        is_date = contract.columns[column] == "DATE"
        sql += f"\nPARTITION BY {column if is_date else f'DATE({column})'}"
    if layout and contract.cluster_by:
        sql += f"\nCLUSTER BY {', '.join(contract.cluster_by)}"
    return sql


def changed_condition(contract: TableContract, columns: Sequence[str]) -> str:
    """True when a matched target row differs from the source row in any non-key column."""
    parts = []
    for name in columns:
        if name in contract.unique_key:
            continue
        if contract.columns[name] == "FLOAT64":
            parts.append(
                f"((t.{name} IS NULL) <> (s.{name} IS NULL)"
                f" OR ABS(t.{name} - s.{name}) > {FLOAT_TOLERANCE} * (1 + ABS(s.{name})))"
            )
        else:
            parts.append(f"t.{name} IS DISTINCT FROM s.{name}")
    return " OR ".join(parts) if parts else "FALSE"


def merge_sql(
    contract: TableContract,
    source_sql: str,
    *,
    columns: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    delete_scope: str | None = None,
) -> str:
    """MERGE `source_sql` into the contract's table on `key` (default: the contract key).

    Only rows that really differ are updated, so merging the same rows twice changes nothing.
    `delete_scope` is a condition on target rows `t`: rows in scope that the source no longer
    produces are deleted (a model's window, or "TRUE" for a full table); None deletes nothing.
    """
    columns = list(columns or contract.columns)
    key = list(key or contract.unique_key)
    on = " AND ".join(f"t.{k} = s.{k}" for k in key)
    updates = ", ".join(f"{c} = s.{c}" for c in columns if c not in key)
    inserted = ", ".join(columns)
    values = ", ".join(f"s.{c}" for c in columns)
    sql = f"MERGE INTO energy_analytics.{contract.table} AS t\nUSING ({source_sql}) AS s\nON {on}\n"
    if updates:
        sql += f"WHEN MATCHED AND ({changed_condition(contract, columns)}) THEN UPDATE SET {updates}\n"
    sql += f"WHEN NOT MATCHED THEN INSERT ({inserted}) VALUES ({values})"
    if delete_scope is not None:
        sql += f"\nWHEN NOT MATCHED BY SOURCE AND ({delete_scope}) THEN DELETE"
    return sql
