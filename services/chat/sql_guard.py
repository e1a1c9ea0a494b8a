"""Proof that model-written SQL only reads: one SELECT over allow-listed tables, with a LIMIT.

Only the Gemini path writes SQL; the templates never pass through here. sqlglot parses the text as
GoogleSQL and the statement is walked node by node: anything that is not a query (DML, DDL, COMMAND,
INTO), any table outside the allow list, any function sqlglot does not know (which is how DuckDB's
`read_csv`, `glob` or `getenv` would appear) or any table-valued function is refused. A missing
LIMIT is added and a larger one clamped. In the cloud the statement is then dry-run on BigQuery
with `maximum_bytes_billed`, under the chat service's read-only identity.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from shared.errors import GridsightError
from shared.warehouse.dialect import parse_one_statement, referenced_tables

__all__ = ["ALLOWED_TABLES", "UnsafeSQL", "bigquery_dry_run", "guard_sql"]

ALLOWED_TABLES = frozenset(
    f"energy_analytics.{t}"
    for t in (
        "dim_site",
        "dim_device",
        "hourly_consumption",
        "daily_site_consumption",
        "forecasts",
        "anomalies",
    )
)
MAX_LIMIT = 200
_FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Into,
    exp.Copy,
    exp.Set,
    exp.Pragma,
    exp.Use,
    exp.Grant,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.LoadData,
    exp.TruncateTable,
    exp.Anonymous,
    exp.AnonymousAggFunc,
)


class UnsafeSQL(GridsightError):
    status = 400


def guard_sql(sql: str, *, allowed: frozenset[str] = ALLOWED_TABLES, max_limit: int = MAX_LIMIT) -> str:
    """The statement, re-rendered as GoogleSQL with a LIMIT, or UnsafeSQL saying why not."""
    try:
        statement = parse_one_statement(sql)
    except ValueError as exc:
        raise UnsafeSQL(str(exc)) from exc
    if not isinstance(statement, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        raise UnsafeSQL(f"only a SELECT may run, got {statement.key.upper()}")
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            what = node.name if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)) else node.key.upper()
            raise UnsafeSQL(f"{what} is not allowed in a read-only query")
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            raise UnsafeSQL("table functions are not allowed")
        if isinstance(node, exp.Table) and node.catalog:
            raise UnsafeSQL(f"project-qualified table {node.sql('bigquery')} is not allowed")
    tables = referenced_tables(statement)
    outside = sorted(t for t in tables if t not in allowed)
    if outside:
        raise UnsafeSQL(f"tables outside the allow list: {outside}")
    if not tables:
        raise UnsafeSQL("the query reads no warehouse table")
    limit = statement.args.get("limit")
    value = _limit_value(limit)
    if value is None or value > max_limit:
        statement = (
            statement.limit(max_limit, copy=True)
            if isinstance(statement, exp.Select)
            else (exp.select("*").from_(statement.subquery("q")).limit(max_limit))
        )
    return statement.sql(dialect="bigquery")


def _limit_value(limit: Any) -> int | None:
    if not isinstance(limit, exp.Limit):
        return None
    expression = limit.expression
    if isinstance(expression, exp.Literal) and expression.is_int:
        return int(expression.this)
    return None


def bigquery_dry_run(client: Any, sql: str, params: list[Any], *, maximum_bytes_billed: int) -> int:
    """Dry-run on BigQuery; UnsafeSQL if it would scan more than the cap. Returns bytes processed."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(
        dry_run=True,
        use_query_cache=False,
        maximum_bytes_billed=maximum_bytes_billed,
        query_parameters=params,
    )
    job = client.query(sql, job_config=config)
    scanned = int(job.total_bytes_processed or 0)
    if scanned > maximum_bytes_billed:
        raise UnsafeSQL(f"query would scan {scanned} bytes, above the cap of {maximum_bytes_billed}")
    return scanned
