"""The single-SELECT guard: what passes, what is refused and why."""

from __future__ import annotations

import pytest

from shared.readonly_sql import ReadOnlyViolation, ensure_read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM energy_analytics.hourly_consumption WHERE hour >= @since",
        "WITH recent AS (SELECT * FROM energy_analytics.forecasts) SELECT COUNT(*) FROM recent",
        "SELECT device_id FROM raw.reading UNION ALL SELECT device_id FROM energy_analytics.dim_device",
        "SELECT 1 AS one",
    ],
)
def test_read_only_queries_pass(sql: str) -> None:
    ensure_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM energy_analytics.forecasts WHERE TRUE", "only a single SELECT"),
        ("DROP TABLE energy_analytics.forecasts", "only a single SELECT"),
        ("SELECT 1; DROP TABLE energy_analytics.forecasts", "exactly one SQL statement"),
        ("CREATE TABLE energy_analytics.x AS SELECT 1 AS a", "only a single SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "not allowed"),
        ("SELECT read_text('/etc/passwd') AS t", r"read_text\(\) is not allowed"),
        ("SELECT * FROM secrets", "table 'secrets' is not allowed"),
        ("SELECT * FROM `other-project`.ds.t", "is not allowed"),
        ("SELEC 1", "cannot parse"),
    ],
)
def test_everything_else_is_refused_with_a_reason(sql: str, reason: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=reason):
        ensure_read_only(sql)
