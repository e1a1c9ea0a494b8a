import pytest

from services.chat.sql_guard import UnsafeSQL, guard_sql


def test_a_select_over_allowed_tables_gets_a_limit() -> None:
    safe = guard_sql("SELECT device_id, SUM(energy_kwh) FROM energy_analytics.hourly_consumption GROUP BY 1")
    assert safe.endswith("LIMIT 200")


def test_a_larger_limit_is_clamped() -> None:
    assert guard_sql("SELECT * FROM energy_analytics.dim_device LIMIT 100000").endswith("LIMIT 200")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM energy_analytics.forecasts WHERE TRUE", "only a single SELECT"),
        ("SELECT 1 FROM energy_analytics.dim_site; DROP TABLE energy_analytics.forecasts", "exactly one"),
        ("SELECT * FROM energy_analytics.pipeline_runs", "allow list"),
        ("SELECT * FROM raw.reading", "allow list"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table functions"),
        ("SELECT getenv('HOME') FROM energy_analytics.dim_device", "getenv"),
        ("SELECT * INTO copy FROM energy_analytics.dim_site", "INTO"),
        ("SELECT * FROM `other-project.energy_analytics.dim_site`", "project-qualified"),
        ("SELECT 1", "reads no warehouse table"),
        ("UPDATE energy_analytics.forecasts SET p50 = 0 WHERE TRUE", "only a single SELECT"),
    ],
)
def test_anything_but_one_read_only_select_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(UnsafeSQL, match=reason):
        guard_sql(sql)


class FakeBigQuery:
    """Answers a dry run with a fixed byte count and records the job config it was given."""

    def __init__(self, scanned: int) -> None:
        self.scanned = scanned
        self.configs: list = []

    def query(self, sql: str, job_config=None):
        from types import SimpleNamespace

        self.configs.append(job_config)
        return SimpleNamespace(total_bytes_processed=self.scanned)


def test_bigquery_dry_run_caps_bytes_and_never_runs_the_query() -> None:
    from services.chat.sql_guard import bigquery_dry_run

    client = FakeBigQuery(scanned=5_000)
    assert bigquery_dry_run(client, "SELECT 1", [], maximum_bytes_billed=10_000) == 5_000
    config = client.configs[0]
    assert config.dry_run is True
    assert config.maximum_bytes_billed == 10_000
    with pytest.raises(UnsafeSQL, match="scan"):
        bigquery_dry_run(FakeBigQuery(scanned=20_000), "SELECT 1", [], maximum_bytes_billed=10_000)
