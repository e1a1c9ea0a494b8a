"""Proof that model-written SQL only reads: one SELECT over allow-listed tables, with a LIMIT.

Only the Gemini path writes SQL; the templates never pass through here. The project's one guard,
`shared.readonly_sql.ensure_read_only`, proves it is a single SELECT over the allow-listed tables that
calls no function sqlglot does not know (which is how DuckDB's `read_csv`, `glob` or `getenv` would
appear); this module adds the chat-only rules: it must read a table, and it gets a bounded LIMIT. A missing
LIMIT is added and a larger one clamped. In the cloud the statement is then dry-run on BigQuery
with `maximum_bytes_billed`, under the chat service's read-only identity.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from shared.errors import GridsightError
from shared.readonly_sql import ReadOnlyViolation, ensure_read_only
from shared.warehouse.dialect import referenced_tables

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


class UnsafeSQL(GridsightError):
    status = 400


def guard_sql(sql: str, *, allowed: frozenset[str] = ALLOWED_TABLES, max_limit: int = MAX_LIMIT) -> str:
    """The statement, re-rendered as GoogleSQL with a LIMIT, or UnsafeSQL saying why not."""
    try:
        statement = ensure_read_only(sql, allowed_tables=allowed, known_functions_only=True)
    except ReadOnlyViolation as exc:
        raise UnsafeSQL(str(exc)) from exc
    tables = referenced_tables(statement)
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
