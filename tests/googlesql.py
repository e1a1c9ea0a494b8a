"""Google's own GoogleSQL analyzer (ZetaSQL, the `zetasql` WebAssembly build) over our catalog.

bqemulator executes SQL with DuckDB underneath, so it accepts GoogleSQL that BigQuery rejects. ZetaSQL
is the analyzer BigQuery is built on: given the tables (from the `.yml` contracts and the connector's
raw schema, in BigQuery types) it resolves every name and type and enforces the language rules.

Language options: PRODUCT_EXTERNAL (BigQuery's product mode: no INT32/UINT/PROTO types) with every
released feature. ZetaSQL ships no BigQuery feature list, so this is a superset of BigQuery's: a
statement it rejects is wrong on BigQuery; one it accepts could still use a feature BigQuery lacks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from infra.local.sync import CONNECTOR_SOURCE
from shared.warehouse.contracts import TableContract, load_contracts

__all__ = [
    "CONNECTOR_TYPES",
    "PARAMETER_TYPES",
    "GoogleSqlAnalyzer",
    "connector_schema",
]

# Fivetran Connector SDK column types -> the BigQuery types Fivetran writes (Fivetran's destination docs).
CONNECTOR_TYPES = {
    "STRING": "STRING",
    "DOUBLE": "FLOAT64",
    "FLOAT": "FLOAT64",
    "INT": "INT64",
    "LONG": "INT64",
    "SHORT": "INT64",
    "BOOLEAN": "BOOL",
    "UTC_DATETIME": "TIMESTAMP",
    "NAIVE_DATETIME": "DATETIME",
    "NAIVE_DATE": "DATE",
    "JSON": "JSON",
    "BINARY": "BYTES",
}
# Every table Fivetran writes also carries these.
FIVETRAN_COLUMNS = {"_fivetran_synced": "TIMESTAMP", "_fivetran_deleted": "BOOL"}

# The BigQuery type of each named query parameter, as shared/warehouse/bigquery.py binds the Python
# values the callers pass (datetime -> TIMESTAMP, int -> INT64, list[str] -> ARRAY<STRING>, ...).
# A statement using a parameter missing here fails the analysis test: add it with its type.
PARAMETER_TYPES: dict[str, str] = {
    **dict.fromkeys(
        [
            "window_start", "window_end", "start", "end", "since", "origin", "until", "history_start",
            "lookback_start", "clock", "cutoff", "mark", "open_since", "today_start", "as_of",
            "week_start", "week_end", "previous_start", "earliest", "latest", "modelled_through",
        ],
        "TIMESTAMP",
    ),
    **dict.fromkeys([
        "tz", "device_id", "currency", "handler", "key", "status", "incident_id",
    ], "STRING"),
    **dict.fromkeys(["device_ids", "site_ids", "devices", "restrict"], "ARRAY<STRING>"),
    **dict.fromkeys(["limit", "hod_start", "hod_end", "peak_start", "peak_end", "silent_hours"], "INT64"),
    **dict.fromkeys(["peak_price", "offpeak_price"], "FLOAT64"),
}  # fmt: skip


def connector_schema() -> dict[str, dict[str, str]]:
    """raw.<table> -> column -> BigQuery type, from the connector's own `schema()`."""
    sys.path.insert(0, str(CONNECTOR_SOURCE))
    try:
        import connector

        tables = connector.schema({})
    finally:
        sys.path.remove(str(CONNECTOR_SOURCE))
        sys.modules.pop("connector", None)
        sys.modules.pop("client", None)
    return {
        t["table"]: {**{c: CONNECTOR_TYPES[k] for c, k in t["columns"].items()}, **FIVETRAN_COLUMNS}
        for t in tables
    }


class GoogleSqlAnalyzer:
    """One loaded ZetaSQL (about 40 s to compile the WebAssembly) with our catalog; analyses are fast."""

    def __init__(
        self,
        raw: Mapping[str, Mapping[str, str]] | None = None,
        contracts: Mapping[str, TableContract] | None = None,
    ) -> None:
        from zetasql.core import ZetaSqlLocalService
        from zetasql.types import (
            LanguageOptions,
            ProductMode,
            SimpleCatalog,
            ZetaSQLBuiltinFunctionOptions,
        )

        self._language = LanguageOptions.maximum_features()
        self._language.product_mode = ProductMode.PRODUCT_EXTERNAL
        raw = raw if raw is not None else connector_schema()
        contracts = contracts if contracts is not None else load_contracts()
        self._catalog = SimpleCatalog(
            name="gridsight",
            builtin_function_options=ZetaSQLBuiltinFunctionOptions(language_options=self._language),
            catalog=[
                self._dataset("raw", raw),
                self._dataset("energy_analytics", {c.table: c.columns for c in contracts.values()}),
            ],
        )
        # registered once, so each analysis does not re-send (and ZetaSQL re-build) the function list
        self._service = ZetaSqlLocalService.get_instance()
        self._catalog_id = self._service.register_catalog(simple_catalog=self._catalog).registered_id

    def _dataset(self, name: str, tables: Mapping[str, Mapping[str, str]]) -> Any:
        from zetasql.api import TableBuilder
        from zetasql.types import SimpleCatalog

        built = []
        for table, columns in tables.items():
            builder = TableBuilder(table)
            for column, kind in columns.items():
                builder.add_column(column, self.type_of(kind))
            built.append(builder.build())
        return SimpleCatalog(name=name, table=built)

    @staticmethod
    def type_of(kind: str) -> Any:
        """A ZetaSQL type from BigQuery type text: scalars, ARRAY<...> and STRUCT<name TYPE, ...>."""
        from zetasql.api.type_factory import TypeFactory
        from zetasql.types import TypeKind

        kind = kind.strip()
        upper = kind.upper()
        if upper.startswith("ARRAY<") and upper.endswith(">"):
            return TypeFactory.create_array_type(GoogleSqlAnalyzer.type_of(kind[6:-1]))
        if upper.startswith("STRUCT<") and upper.endswith(">"):
            fields = []
            for part in _split_fields(kind[7:-1]):
                name, _, field_kind = part.strip().partition(" ")
                fields.append((name, GoogleSqlAnalyzer.type_of(field_kind)))
            return TypeFactory.create_struct_type(fields)
        kinds = {
            "STRING": TypeKind.TYPE_STRING,
            "INT64": TypeKind.TYPE_INT64,
            "FLOAT64": TypeKind.TYPE_DOUBLE,
            "BOOL": TypeKind.TYPE_BOOL,
            "TIMESTAMP": TypeKind.TYPE_TIMESTAMP,
            "DATE": TypeKind.TYPE_DATE,
            "DATETIME": TypeKind.TYPE_DATETIME,
            "JSON": TypeKind.TYPE_JSON,
            "BYTES": TypeKind.TYPE_BYTES,
            "NUMERIC": TypeKind.TYPE_NUMERIC,
        }
        return TypeFactory.create_simple_type(kinds[upper])

    def analyze(self, sql: str, parameters: Mapping[str, str]) -> str:
        """Analyse one statement; returns the resolved statement's kind, raises on any GoogleSQL error."""
        from zetasql.types import AnalyzerOptions

        options = AnalyzerOptions(
            language_options=self._language,
            query_parameters=[
                AnalyzerOptions.QueryParameter(name=name, type=self.type_of(kind))
                for name, kind in parameters.items()
            ],
        )
        response = self._service.analyze(
            sql_statement=sql, options=options, registered_catalog_id=self._catalog_id
        )
        return type(response.resolved_statement).__name__


def _split_fields(text: str) -> Iterator[str]:
    """Top-level comma split (a field may itself be an ARRAY<STRUCT<...>>)."""
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            yield text[start:i]
            start = i + 1
    if text[start:].strip():
        yield text[start:]
