"""GoogleSQL in, backend SQL out: parse with sqlglot, map dataset names, transpile.

Queries name tables `raw.<t>` and `energy_analytics.<t>`; each backend says where those live
(`TableMap`). The mapping rewrites sqlglot Table nodes, so a column or string that happens to
contain "raw." is never touched, and CTE names are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

__all__ = [
    "DATASETS",
    "TableMap",
    "Transpiled",
    "inline_timestamps",
    "parse_one_statement",
    "referenced_tables",
    "render",
    "transpile",
    "used_parameters",
]

DATASETS = ("raw", "energy_analytics", "staging")


@dataclass(frozen=True)
class TableMap:
    """Where the logical datasets live on one backend: dataset -> (catalog, schema). Hashable, so
    transpiled statements can be cached per backend."""

    entries: tuple[tuple[str, str | None, str], ...]

    @classmethod
    def of(cls, locations: Mapping[str, tuple[str | None, str]]) -> TableMap:
        return cls(tuple((name, catalog, schema) for name, (catalog, schema) in sorted(locations.items())))

    @property
    def locations(self) -> dict[str, tuple[str | None, str]]:
        return {name: (catalog, schema) for name, catalog, schema in self.entries}


@dataclass(frozen=True)
class Transpiled:
    """A statement ready for one backend, with what the adapter needs to know about it."""

    text: str
    parameters: frozenset[str]
    tables: frozenset[str]


def parse_one_statement(sql: str) -> exp.Expr:
    """Parse GoogleSQL; more than one statement is an error, so a caller can never smuggle a second."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except ParseError as exc:
        raise ValueError(f"cannot parse SQL: {_first_line(str(exc))}") from exc
    if len(statements) != 1:
        raise ValueError(f"expected exactly one SQL statement, got {len(statements)}")
    return statements[0]


def referenced_tables(expression: exp.Expr) -> set[str]:
    """Dataset-qualified tables a statement reads or writes (`raw.reading`), CTE names excluded."""
    cte_names = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
    names: set[str] = set()
    for table in expression.find_all(exp.Table):
        if table.db:
            names.add(f"{table.db}.{table.name}")
        elif table.name not in cte_names and table.name:
            names.add(table.name)
    return names


def _map_tables(expression: exp.Expr, table_map: TableMap) -> exp.Expr:
    locations = table_map.locations

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db in locations and not node.catalog:
            catalog, schema = locations[node.db]
            node = node.copy()
            node.set("db", exp.to_identifier(schema))
            if catalog:
                node.set("catalog", exp.to_identifier(catalog, quoted=True))
        return node

    return expression.transform(rewrite)


def render(sql: str | exp.Expr, dialect: str, table_map: TableMap, *, pretty: bool = False) -> str:
    """GoogleSQL text (or a parsed statement) -> SQL for `dialect` ('duckdb' or 'bigquery')."""
    expression = parse_one_statement(sql) if isinstance(sql, str) else sql
    expression = _map_tables(expression, table_map)
    if dialect == "duckdb":
        expression = expression.transform(_epoch_arithmetic).transform(_local_date).transform(_in_unnest)
    return expression.sql(dialect=dialect, pretty=pretty)


# Microseconds per unit for the fixed-length units GoogleSQL truncates and diffs TIMESTAMPs in.
_MICROS = {
    "MICROSECOND": 1,
    "MILLISECOND": 1_000,
    "SECOND": 1_000_000,
    "MINUTE": 60_000_000,
    "HOUR": 3_600_000_000,
    "DAY": 86_400_000_000,
}


def _epoch_arithmetic(node: exp.Expr) -> exp.Expr:
    """TIMESTAMP_TRUNC / TIMESTAMP_DIFF in fixed units as integer epoch arithmetic on DuckDB.

    sqlglot maps them to DATE_TRUNC / DATE_DIFF, which DuckDB evaluates through ICU calendars on
    TIMESTAMPTZ, 5-20x slower than integer maths on the epoch (measured on the refresh models).
    A GoogleSQL TIMESTAMP is an instant and these units have fixed length in UTC, so the result is
    the same; truncation with a time zone argument, and other units, are left to sqlglot.
    """
    if isinstance(node, exp.TimestampTrunc) and not node.args.get("zone"):
        micros = _MICROS.get(node.text("unit").upper())
        if micros:
            seconds = micros // 1_000_000
            return exp.func(
                "TO_TIMESTAMP",
                exp.Mul(
                    this=exp.Paren(
                        this=exp.IntDiv(this=_epoch_us(node.this), expression=exp.Literal.number(micros))
                    ),
                    expression=exp.Literal.number(seconds),
                ),
            )
    if isinstance(node, exp.TimestampDiff):
        micros = _MICROS.get(node.text("unit").upper())
        if micros:
            difference = exp.Sub(this=_epoch_us(node.this), expression=_epoch_us(node.expression))
            # GoogleSQL truncates toward zero; DuckDB's // floors, so divide the magnitude.
            return exp.Mul(
                this=exp.func("SIGN", exp.Paren(this=difference.copy())),
                expression=exp.Paren(
                    this=exp.IntDiv(this=exp.func("ABS", difference), expression=exp.Literal.number(micros))
                ),
            )
    return node


def _local_date(node: exp.Expr) -> exp.Expr:
    """DATE(ts, zone) as DuckDB's TIMEZONE(zone, ts): the wall-clock time in that zone, whatever the
    session zone (sqlglot's rendering casts through the session zone, wrong outside UTC)."""
    if isinstance(node, exp.Date) and node.args.get("zone") is not None:
        local = exp.func("TIMEZONE", node.args["zone"].copy(), node.this.copy())
        return exp.cast(local, exp.DataType.build("DATE"))
    return node


def _in_unnest(node: exp.Expr) -> exp.Expr:
    """`x IN UNNEST(array)` as `x IN (SELECT UNNEST(array))` on DuckDB: a hash semi-join.

    sqlglot renders it as a CASE over ARRAY_CONTAINS and LIST_COUNT, evaluated per row in time
    linear in the array: a forecast shard's 5,000 device ids against 30,000 meters x 168 hours took
    81 s, and the stage grew with the fleet squared (docs/scaling.md). The subquery has GoogleSQL's
    semantics: FALSE for an empty or NULL array, NULL for a NULL value or an unmatched NULL element.
    """
    if isinstance(node, exp.In) and node.args.get("unnest") is not None:
        values = exp.select(node.args["unnest"].copy())
        return exp.In(this=node.this.copy(), query=exp.Subquery(this=values))
    return node


def _epoch_us(value: exp.Expr) -> exp.Expr:
    return exp.func("EPOCH_US", value.copy())


@lru_cache(maxsize=1024)
def transpile(sql: str, dialect: str, table_map: TableMap) -> Transpiled:
    """`render` plus the statement's parameters and tables, cached: parsing and generating a large
    model costs far more than running it incrementally, and the same texts recur every refresh."""
    expression = parse_one_statement(sql)
    return Transpiled(
        text=render(expression, dialect, table_map),
        parameters=frozenset(used_parameters(expression)),
        tables=frozenset(referenced_tables(expression)),
    )


def used_parameters(expression: exp.Expr) -> set[str]:
    """Named `@params` in a statement, so adapters bind exactly those."""
    return {p.name for p in expression.find_all(exp.Parameter)}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def inline_timestamps(sql: str | exp.Expr, values: Mapping[str, datetime]) -> exp.Expr:
    """Replace `@name` parameters by TIMESTAMP literals of trusted, program-made values.

    For statements whose engine mishandles a parameter used in several clauses (bqemulator's MERGE);
    never use it for values that came from outside.
    """
    expression = parse_one_statement(sql) if isinstance(sql, str) else sql

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter) and node.name in values:
            value = values[node.name].astimezone(UTC)
            stamp = value.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if value.microsecond else "") + "+00:00")
            return exp.cast(exp.Literal.string(stamp), exp.DataType.build("TIMESTAMP", dialect="bigquery"))
        return node

    return expression.transform(replace)
