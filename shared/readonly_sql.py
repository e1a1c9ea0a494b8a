"""The guard in front of ad-hoc SQL (`gridsight query`, chat): one read-only GoogleSQL SELECT or nothing.

Parsing (not pattern matching) decides: the statement must be a single query, contain no DML or DDL
anywhere (a CTE can hold an INSERT in some dialects), read only dataset-qualified warehouse tables
or its own CTEs, and call no table function: on DuckDB those read files (`read_csv('/etc/passwd')`).
"""

from __future__ import annotations

from sqlglot import exp

from shared.warehouse.dialect import parse_one_statement

__all__ = ["ALLOWED_DATASETS", "ReadOnlyViolation", "ensure_read_only"]

ALLOWED_DATASETS = frozenset({"raw", "energy_analytics"})
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
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
    exp.Pragma,
    exp.Set,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Grant,
    exp.LoadData,
    exp.TruncateTable,
)
_FORBIDDEN_FUNCTION_PREFIXES = (
    "read_",
    "glob",
    "parquet_",
    "sniff_",
    "getenv",
    "query",
    "duckdb_",
    "current_setting",
)


class ReadOnlyViolation(ValueError):
    """The SQL is not a single read-only SELECT; the message says why, for the person who wrote it."""


def ensure_read_only(
    sql: str, *, allowed_tables: frozenset[str] | None = None, known_functions_only: bool = False
) -> exp.Query:
    """Return the parsed statement if it is one read-only SELECT over warehouse tables, else raise.

    `allowed_tables` narrows the datasets to named tables (`energy_analytics.forecasts`), and
    `known_functions_only` refuses every function sqlglot does not know: SQL a model wrote gets both,
    a person at `gridsight query` neither.
    """
    try:
        statement = parse_one_statement(sql)
    except ValueError as exc:
        raise ReadOnlyViolation(str(exc)) from exc
    if not isinstance(statement, exp.Query):
        raise ReadOnlyViolation(f"only a single SELECT is allowed, not {statement.key.upper()}")
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise ReadOnlyViolation(f"only a single SELECT is allowed; found {node.key.upper()}")
    cte_names = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        _check_table(table, cte_names, allowed_tables)
    for node in statement.walk():
        unknown = known_functions_only and isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc))
        if isinstance(node, exp.Func) and (unknown or _is_file_function(node)):
            raise ReadOnlyViolation(f"function {_function_name(node)}() is not allowed in a query")
    return statement


def _check_table(table: exp.Table, cte_names: set[str], allowed_tables: frozenset[str] | None) -> None:
    if not isinstance(table.this, exp.Identifier):
        raise ReadOnlyViolation("table functions are not allowed in a query")
    if table.catalog:
        raise ReadOnlyViolation(f"project-qualified table {table.sql(dialect='bigquery')!r} is not allowed")
    if not table.db and table.name in cte_names:
        return
    if table.db not in ALLOWED_DATASETS:
        raise ReadOnlyViolation(
            f"table {table.sql(dialect='bigquery')!r} is not allowed:"
            " name raw.<table> or energy_analytics.<table>"
        )
    if allowed_tables is not None and f"{table.db}.{table.name}" not in allowed_tables:
        raise ReadOnlyViolation(f"table {table.db}.{table.name} is outside the allow list")


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _is_file_function(node: exp.Func) -> bool:
    return _function_name(node).startswith(_FORBIDDEN_FUNCTION_PREFIXES)
