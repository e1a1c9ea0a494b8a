"""GoogleSQL in, backend SQL out: parse with sqlglot, map dataset names, transpile.

Queries name tables `raw.<t>` and `energy_analytics.<t>`; each backend says where those live
(`TableMap`). The mapping rewrites sqlglot Table nodes, so a column or string that happens to
contain "raw." is never touched, and CTE names are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

__all__ = [
    "DATASETS",
    "TableMap",
    "inline_timestamps",
    "parse_one_statement",
    "referenced_tables",
    "render",
    "used_parameters",
]

DATASETS = ("raw", "energy_analytics", "staging")


@dataclass(frozen=True)
class TableMap:
    """Where the logical datasets live on one backend: dataset -> (catalog, schema)."""

    locations: Mapping[str, tuple[str | None, str]]


def parse_one_statement(sql: str) -> exp.Expression:
    """Parse GoogleSQL; more than one statement is an error, so a caller can never smuggle a second."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except ParseError as exc:
        raise ValueError(f"cannot parse SQL: {_first_line(str(exc))}") from exc
    if len(statements) != 1:
        raise ValueError(f"expected exactly one SQL statement, got {len(statements)}")
    return statements[0]


def referenced_tables(expression: exp.Expression) -> set[str]:
    """Dataset-qualified tables a statement reads or writes (`raw.reading`), CTE names excluded."""
    cte_names = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    names: set[str] = set()
    for table in expression.find_all(exp.Table):
        if table.db:
            names.add(f"{table.db}.{table.name}")
        elif table.name not in cte_names and table.name:
            names.add(table.name)
    return names


def _map_tables(expression: exp.Expression, table_map: TableMap) -> exp.Expression:
    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db in table_map.locations and not node.catalog:
            catalog, schema = table_map.locations[node.db]
            node = node.copy()
            node.set("db", exp.to_identifier(schema))
            if catalog:
                node.set("catalog", exp.to_identifier(catalog, quoted=True))
        return node

    return expression.transform(rewrite)


def render(sql: str | exp.Expression, dialect: str, table_map: TableMap, *, pretty: bool = False) -> str:
    """GoogleSQL text (or a parsed statement) -> SQL for `dialect` ('duckdb' or 'bigquery')."""
    expression = parse_one_statement(sql) if isinstance(sql, str) else sql
    return _map_tables(expression, table_map).sql(dialect=dialect, pretty=pretty)


def used_parameters(expression: exp.Expression) -> set[str]:
    """Named `@params` in a statement, so adapters bind exactly those."""
    return {p.name for p in expression.find_all(exp.Parameter)}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def inline_timestamps(sql: str | exp.Expression, values: Mapping[str, datetime]) -> exp.Expression:
    """Replace `@name` parameters by TIMESTAMP literals of trusted, program-made values.

    For statements whose engine mishandles a parameter used in several clauses (bqemulator's MERGE);
    never use it for values that came from outside.
    """
    expression = parse_one_statement(sql) if isinstance(sql, str) else sql

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter) and node.name in values:
            value = values[node.name].astimezone(UTC)
            stamp = value.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if value.microsecond else "") + "+00:00")
            return exp.cast(exp.Literal.string(stamp), exp.DataType.build("TIMESTAMP", dialect="bigquery"))
        return node

    return expression.transform(replace)
