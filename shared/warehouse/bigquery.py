"""BigQuery through the official client: the same GoogleSQL, dataset names mapped by sqlglot.

`settings.bigquery_api_endpoint` points the client at bqemulator in tests (anonymous credentials);
otherwise Application Default Credentials are used. Rows for MERGE travel as one ARRAY<STRUCT> query
parameter per chunk, so no temporary tables or load jobs are needed (and the emulator, which has no
multipart load, handles it too).

Terraform owns every dataset and table in BigQuery (infra/terraform bigquery.tf, from the same
contracts), and the runtime service accounts may not create them (a create needs project-level
`bigquery.datasets.create` even when the dataset exists). So nothing here creates or alters a
dataset or table on a request path: `create_schema` exists only to play Terraform's part on the
emulator (tests, the emulated stack), called once before any service runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from shared.errors import TransientError
from shared.settings import Settings
from shared.warehouse import _rows
from shared.warehouse.base import Params
from shared.warehouse.contracts import TableContract, contract_for, load_contracts
from shared.warehouse.dialect import TableMap, inline_timestamps, render, transpile
from shared.warehouse.statements import merge_sql

__all__ = ["BigQueryWarehouse", "rows_merge_sql", "table_map"]

MERGE_CHUNK_ROWS = 2_000  # keeps each request well under BigQuery's 10 MB query size


class BigQueryWarehouse:
    backend = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        *,
        project: str,
        raw_dataset: str,
        analytics_dataset: str,
        location: str | None = None,
        maximum_bytes_billed: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        self._client = client
        self._project = project
        self._datasets = {"raw": raw_dataset, "energy_analytics": analytics_dataset}
        self._location = location
        self._maximum_bytes_billed = maximum_bytes_billed
        self._endpoint = endpoint
        self._map = TableMap.of({name: (project, dataset) for name, dataset in self._datasets.items()})

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryWarehouse:
        endpoint = settings.bigquery_api_endpoint
        client = bigquery.Client(
            project=settings.gcp_project,
            location=settings.bq_location,
            credentials=AnonymousCredentials() if endpoint else None,
            client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None,
        )
        return cls(
            client,
            project=settings.gcp_project,
            raw_dataset=settings.raw_dataset,
            analytics_dataset=settings.analytics_dataset,
            location=settings.bq_location,
            maximum_bytes_billed=settings.bq_maximum_bytes_billed,
            endpoint=endpoint,
        )

    # --- the Warehouse protocol ---------------------------------------------------------------
    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        job = self._run(sql, params)
        return job.result().to_arrow(create_bqstorage_client=False)

    def query_df(self, sql: str, params: Params | None = None) -> pd.DataFrame:
        return self.query(sql, params).to_pandas()

    def execute(self, sql: str, params: Params | None = None) -> int:
        job = self._run(sql, params)
        job.result()
        return int(job.num_dml_affected_rows or 0)

    def merge(self, table: str, rows: pa.Table | pd.DataFrame, key: Sequence[str]) -> int:
        contract = contract_for(table)
        arrow = _rows.to_arrow(rows)
        columns = _rows.merge_columns(contract, arrow, key)
        statement = rows_merge_sql(contract, columns, key)
        changed = 0
        for offset in range(0, arrow.num_rows, MERGE_CHUNK_ROWS):
            chunk = arrow.slice(offset, MERGE_CHUNK_ROWS).select(columns).to_pylist()
            changed += self.execute(statement, {"rows": _struct_array(contract, columns, chunk)})
        return changed

    def table_exists(self, table: str) -> bool:
        dataset, _, name = table.rpartition(".")
        if dataset not in self._datasets:
            raise ValueError(f"table must be raw.<name> or energy_analytics.<name>, got {table!r}")
        try:
            self._client.get_table(f"{self._project}.{self._datasets[dataset]}.{name}")
        except gexc.NotFound:
            return False
        return True

    def close(self) -> None:
        self._client.close()

    # --- schema ---------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the analytics dataset and every contract table (day-partitioned, clustered): what
        `terraform apply` does in a project. For the emulator only; never called by a service."""
        dataset = self._datasets["energy_analytics"]
        ds = bigquery.Dataset(f"{self._project}.{dataset}")
        ds.location = self._location
        self._client.create_dataset(ds, exists_ok=True)
        for contract in load_contracts().values():
            self._ensure_table(dataset, contract)

    def table(self, table: str) -> bigquery.Table:
        """Table metadata (schema, partitioning, clustering) of an energy_analytics table."""
        name = table.removeprefix("energy_analytics.")
        return self._client.get_table(f"{self._project}.{self._datasets['energy_analytics']}.{name}")

    # --- internals ------------------------------------------------------------------------------
    def _ensure_table(self, dataset: str, contract: TableContract) -> None:
        schema = [bigquery.SchemaField(name, kind) for name, kind in contract.columns.items()]
        wanted = bigquery.Table(f"{self._project}.{dataset}.{contract.table}", schema=schema)
        if contract.partition_by:
            wanted.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=contract.partition_by
            )
        if contract.cluster_by:
            wanted.clustering_fields = list(contract.cluster_by)
        existing = self._client.create_table(wanted, exists_ok=True)
        have = {f.name for f in existing.schema}
        missing = [f for f in schema if f.name not in have]
        if missing:
            existing.schema = [*existing.schema, *missing]
            self._client.update_table(existing, ["schema"])

    def _run(self, sql: str, params: Params | None) -> bigquery.QueryJob:
        statement = transpile(sql, "bigquery", self._map)
        given = dict(params or {})
        missing = sorted(statement.parameters - given.keys())
        if missing:
            raise ValueError(f"query parameters not given: {missing}")
        text, wanted = statement.text, statement.parameters
        stamps = {n: v for n, v in given.items() if n in wanted and isinstance(v, dt.datetime)}
        if stamps and text.lstrip().upper().startswith("MERGE"):
            # bqemulator misnumbers a parameter used in both USING and WHEN of a MERGE; typed
            # datetimes are safe to inline as literals, so MERGE gets them inline everywhere.
            text = render(inline_timestamps(sql, stamps), "bigquery", self._map)
            wanted = wanted - stamps.keys()
        config = bigquery.QueryJobConfig(
            query_parameters=[_parameter(name, given[name]) for name in sorted(wanted)],
            maximum_bytes_billed=self._maximum_bytes_billed,
        )
        try:
            return self._client.query(text, job_config=config)
        except (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.InternalServerError) as exc:
            raise TransientError(f"BigQuery unavailable: {exc}") from exc


def rows_merge_sql(contract: TableContract, columns: Sequence[str], key: Sequence[str]) -> str:
    """The MERGE `merge` runs: rows arrive as `@rows`, an ARRAY<STRUCT> of the contract's columns."""
    fields = ", ".join(f"CAST(r.{c} AS {contract.columns[c]}) AS {c}" for c in columns)
    return merge_sql(contract, f"SELECT {fields} FROM UNNEST(@rows) AS r", columns=columns, key=key)


def _parameter(name: str, value: Any) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, bigquery.ArrayQueryParameter):
        return bigquery.ArrayQueryParameter(name, value.array_type, value.values)
    if isinstance(value, list | tuple):
        kind = _scalar_type(value[0]) if value else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, list(value))
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def _struct_array(
    contract: TableContract, columns: list[str], rows: list[dict[str, Any]]
) -> bigquery.ArrayQueryParameter:
    structs = [
        bigquery.StructQueryParameter(
            None, *(bigquery.ScalarQueryParameter(c, contract.columns[c], row[c]) for c in columns)
        )
        for row in rows
    ]
    return bigquery.ArrayQueryParameter("rows", "STRUCT", structs)


def table_map(settings: Settings) -> TableMap:
    """Where `raw` and `energy_analytics` live for these settings (used to pre-transpile)."""
    return TableMap.of(
        {
            "raw": (settings.gcp_project, settings.raw_dataset),
            "energy_analytics": (settings.gcp_project, settings.analytics_dataset),
        }
    )
