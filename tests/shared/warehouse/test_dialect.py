"""GoogleSQL -> backend SQL: dataset mapping by sqlglot, and the DuckDB epoch rewrite keeping semantics."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from shared.warehouse.dialect import TableMap, parse_one_statement, referenced_tables, render

DUCK = TableMap.of({"raw": ("raw_src", "tester"), "energy_analytics": (None, "energy_analytics")})
BQ = TableMap.of({"raw": ("my-project", "gridsight_raw"), "energy_analytics": ("my-project", "analytics")})


def test_datasets_are_mapped_on_table_nodes_only() -> None:
    sql = (
        "WITH raw AS (SELECT 'raw.reading' AS label FROM raw.reading)"
        " SELECT * FROM raw JOIN energy_analytics.dim_device AS d ON TRUE"
    )
    duck = render(sql, "duckdb", DUCK)
    assert '"raw_src".tester.reading' in duck
    assert "'raw.reading'" in duck  # a string literal is never rewritten
    assert "FROM raw JOIN" in duck  # nor is a CTE that happens to be called raw
    assert "`my-project`.gridsight_raw.reading" in render(sql, "bigquery", BQ)
    assert referenced_tables(parse_one_statement(sql)) == {"raw.reading", "energy_analytics.dim_device"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("TIMESTAMP_TRUNC(TIMESTAMP '2026-01-01 10:59:59.7+00', HOUR)", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("TIMESTAMP_TRUNC(TIMESTAMP '2026-01-01 10:59:59+00', DAY)", datetime(2026, 1, 1, tzinfo=UTC)),
        (
            "TIMESTAMP_DIFF(TIMESTAMP '2026-01-01 10:59:59.7+00',"
            " TIMESTAMP '2026-01-01 10:00:00+00', SECOND)",
            3599,
        ),
        (
            "TIMESTAMP_DIFF(TIMESTAMP '2026-01-01 10:00:00+00', TIMESTAMP '2026-01-01 10:59:59+00', MINUTE)",
            -59,
        ),
    ],
)
def test_epoch_rewrite_matches_googlesql_semantics(expression: str, expected: object) -> None:
    sql = render(f"SELECT {expression} AS v", "duckdb", DUCK)
    assert "EPOCH_US" in sql
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # the rewrite must not depend on the session zone
    assert con.execute(sql).fetchone() == (expected,)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-03-28 22:59:59+00", date(2026, 3, 28)),  # 23:59:59 CET
        ("2026-03-28 23:00:00+00", date(2026, 3, 29)),  # 00:00 CET
        ("2026-03-29 21:59:59+00", date(2026, 3, 29)),  # 23:59:59 CEST, after the spring change
        ("2026-03-29 22:00:00+00", date(2026, 3, 30)),  # 00:00 CEST
    ],
)
def test_local_date_follows_the_zone_not_the_session(instant: str, expected: date) -> None:
    sql = render(f"SELECT DATE(TIMESTAMP '{instant}', 'Europe/Amsterdam') AS d", "duckdb", DUCK)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    assert con.execute(sql).fetchone() == (expected,)


# GoogleSQL's IN UNNEST, from its reference ("IN operator"): an empty (or NULL) array gives FALSE
# whatever the value; otherwise a NULL value gives NULL, a match TRUE, and no match NULL if the
# array holds a NULL, else FALSE. NOT IN is the negation (NULL stays NULL).
IN_UNNEST_CASES = [
    ("a", ["a", "b"], True),
    ("q", ["a", "b"], False),
    (None, ["a", "b"], None),
    ("a", [], False),
    (None, [], False),
    ("a", None, False),
    ("a", ["a", None], True),
    ("q", ["a", None], None),
    (None, ["a", None], None),
]


@pytest.mark.parametrize(("value", "array", "expected"), IN_UNNEST_CASES)
def test_in_unnest_keeps_googlesql_semantics_on_duckdb(
    value: str | None, array: list[str | None] | None, expected: bool | None
) -> None:
    sql = render(
        "SELECT CAST(@v AS STRING) IN UNNEST(@a) AS i, CAST(@v AS STRING) NOT IN UNNEST(@a) AS n",
        "duckdb",
        DUCK,
    )
    assert "ARRAY_CONTAINS" not in sql.upper()  # the per-row list scan it replaces
    con = duckdb.connect()
    got = con.execute(sql.replace("$a", "CAST($a AS VARCHAR[])"), {"v": value, "a": array})
    negated = None if expected is None else not expected
    assert got.fetchone() == (expected, negated)
