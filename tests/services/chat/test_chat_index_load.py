"""The BigQuery chat index rewrites `chat_documents` with Terraform's schema, never autodetected,
never allowed to create the table (#20). BigQuery is the boundary (bqemulator has no load jobs), so
a recording client stands in for it; the job configuration is the real google-cloud-bigquery one."""

from __future__ import annotations

from typing import Any

from google.cloud import bigquery

from services.chat.index import DOCUMENT_SCHEMA, BigQueryVectorIndex, Document, HashingEmbedder


class RecordingClient:
    def __init__(self) -> None:
        self.loads: list[tuple[list[dict[str, Any]], str, bigquery.LoadJobConfig]] = []

    def query(self, sql: str, job_config: Any = None) -> Any:
        class Result:
            def result(self) -> list[dict[str, Any]]:
                return [{"f": None}]  # the table is empty: the index must load

        return Result()

    def load_table_from_json(self, rows: list[dict[str, Any]], table: str, job_config: Any) -> Any:
        self.loads.append((rows, table, job_config))

        class Job:
            def result(self) -> None:
                return None

        return Job()


def test_the_index_load_passes_the_terraform_schema_and_may_not_create_the_table() -> None:
    client = RecordingClient()
    index = BigQueryVectorIndex(client, "p.energy_analytics.chat_documents", HashingEmbedder())
    docs = [Document(id="d1", kind="runbook", title="t", text="text", meta={"a": 1})]
    assert index.sync(docs) is True
    [(rows, table, config)] = client.loads
    assert table == "p.energy_analytics.chat_documents"
    assert config.write_disposition == "WRITE_TRUNCATE"
    assert config.create_disposition == "CREATE_NEVER"
    assert not config.autodetect
    assert [(f.name, f.field_type, f.mode) for f in config.schema] == list(DOCUMENT_SCHEMA)
    assert set(rows[0]) == {name for name, _, _ in DOCUMENT_SCHEMA}
    assert index.sync(docs) is False  # unchanged documents: no second load
    assert len(client.loads) == 1
