"""Every GoogleSQL statement we send to BigQuery, analysed by ZetaSQL (Google's analyzer) before it runs.

The catalog is built from the `.yml` contracts and the connector's `schema()` in BigQuery types, so a
misspelt column, a type mismatch or a BigQuery-only rule (QUALIFY needs WHERE/GROUP BY/HAVING, ...)
fails here instead of on a platform team's first sync. What is analysed is the text the BigQuery
adapter sends: staging models inlined, then transpiled by sqlglot for BigQuery (so a sqlglot rendering
BigQuery would reject is caught too). Covered: each model's SELECT and the MERGE it runs under, the
MERGE `BigQueryWarehouse.merge` runs for every service-written table, every table's DDL, every chat
template in every structural variant, and every SQL literal in services/ and shared/ that names a
warehouse table (found by reading the source, so a new query is analysed without being listed here).
Not covered: SQL built from f-strings inside functions (the raw watermark query per raw table, chat's
vector-index queries), and the model-written SQL chat guards at run time (shared/readonly_sql.py).
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from collections.abc import Iterator

import pytest

from shared.settings import REPO_ROOT
from shared.warehouse.contracts import load_contracts
from shared.warehouse.dialect import TableMap, transpile
from shared.warehouse.models import compile_sql
from tests.googlesql import PARAMETER_TYPES, GoogleSqlAnalyzer, connector_schema

pytest.importorskip("zetasql", reason="zetasql not installed: `pip install -c constraints.txt -e .[dev]`")

pytestmark = pytest.mark.googlesql

# As the code names the datasets (the adapter maps them to the configured datasets at run time).
_DATASETS = TableMap.of({"raw": (None, "raw"), "energy_analytics": (None, "energy_analytics")})
_SQL_START = re.compile(r"^\s*(select|with|merge|insert|update|delete)\b", re.IGNORECASE)
_NAMES_WAREHOUSE = re.compile(r"\b(energy_analytics|raw|staging)\.[a-z_]+\b")
_SCANNED = ("services", "shared")

# id prefix -> why it does not pass (an xfail with the reason); empty: every statement passes.
_KNOWN: dict[str, str] = {}


def _models() -> Iterator[tuple[str, str]]:
    from shared.refresh import _model_merge_sql, _restrict_column  # the exact MERGEs the refresh runs

    for contract in load_contracts().values():
        if contract.is_model:
            yield f"model:{contract.table}", contract.model_sql()
            yield f"merge:{contract.table}", _model_merge_sql(contract.table)
            column = _restrict_column(contract) if contract.materialization != "full" else None
            if column is not None:  # a pass for some devices (or their sites)
                yield f"merge:{contract.table}:{column}", _model_merge_sql(contract.table, column)


def _service_merges() -> Iterator[tuple[str, str]]:
    from shared.warehouse.bigquery import rows_merge_sql

    for contract in load_contracts().values():
        if not contract.is_model:
            yield (
                f"rows-merge:{contract.table}",
                rows_merge_sql(contract, list(contract.columns), contract.unique_key),
            )


def _ddl() -> Iterator[tuple[str, str]]:
    from shared.warehouse.statements import create_table_sql

    for contract in load_contracts().values():
        yield f"ddl:{contract.table}", create_table_sql(contract, layout=True)


def _chat_templates() -> Iterator[tuple[str, str]]:
    from services.chat.queries import TEMPLATES, render_template

    groups, scopes, hours_options = ("fleet", "device", "site"), ("fleet", "devices", "sites"), (False, True)
    for name in TEMPLATES:
        seen: set[str] = set()
        # the orderings answer.py asks of each template
        orders = {
            "usage": ("energy_kwh", "max_device_power_w", "energy_per_device_kwh"),
            "peak_hour": ("energy_kwh", "max_power_w"),
        }.get(name, ("energy_kwh",))
        variants = itertools.product(groups if name == "usage" else ("fleet",), scopes, hours_options, orders)
        for group, scope, hours, order_by in variants:
            sql = render_template(name, group=group, scope=scope, hours=hours, order_by=order_by)
            if sql not in seen:
                seen.add(sql)
                yield f"chat:{name}:{group}/{scope}/hours={hours}/{order_by}", sql


def _source_literals() -> Iterator[tuple[str, str]]:
    """String literals in the source that are SQL over warehouse tables, plus module-level f-string
    constants (their value, read from the imported module); str.format templates are the chat's."""
    for folder in _SCANNED:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            rel = path.relative_to(REPO_ROOT)
            tree = ast.parse(path.read_text())
            module = ".".join(rel.with_suffix("").parts)
            # the literal pieces of an f-string are fragments, not statements (the whole value is
            # analysed below when it is a module-level constant)
            pieces = {
                id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
            }
            for node in ast.walk(tree):
                if id(node) in pieces:
                    continue
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    if _SQL_START.match(text) and _NAMES_WAREHOUSE.search(text) and "{" not in text:
                        yield f"source:{rel}:{node.lineno}", text
            for node in tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.JoinedStr):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            value = getattr(importlib.import_module(module), target.id)
                            if _SQL_START.match(value) and _NAMES_WAREHOUSE.search(value):
                                yield f"source:{rel}:{target.id}", value


def _statements() -> list[tuple[str, str]]:
    found = [*_models(), *_service_merges(), *_ddl(), *_chat_templates(), *_source_literals()]
    return sorted(dict(found).items())


STATEMENTS = _statements()


def _params() -> list[object]:
    out = []
    for sid, sql in STATEMENTS:
        reason = next((r for prefix, r in _KNOWN.items() if sid == prefix), None)
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        out.append(pytest.param(sql, id=sid, marks=marks))
    return out


@pytest.fixture(scope="session")
def analyzer() -> GoogleSqlAnalyzer:
    return GoogleSqlAnalyzer()


def _as_sent(sql: str) -> tuple[str, dict[str, str]]:
    """The text the BigQuery adapter sends, and the declared type of each parameter it uses."""
    statement = transpile(compile_sql(sql).sql(dialect="bigquery"), "bigquery", _DATASETS)
    params: dict[str, str] = {}
    for name in statement.parameters:
        if name == "rows":
            continue  # typed per table below
        assert name in PARAMETER_TYPES, f"@{name}: declare its BigQuery type in tests/googlesql.py"
        params[name] = PARAMETER_TYPES[name]
    return statement.text, params


@pytest.mark.parametrize("sql", _params())
def test_statement_passes_googlesql_analysis(analyzer: GoogleSqlAnalyzer, sql: str) -> None:
    text, params = _as_sent(sql)
    if "@rows" in text:
        table = re.search(r"MERGE INTO energy_analytics\.(\w+)", text, re.IGNORECASE)
        assert table, text
        contract = load_contracts()[table.group(1)]
        fields = ", ".join(f"{c} {t}" for c, t in contract.columns.items())
        params["rows"] = f"ARRAY<STRUCT<{fields}>>"
    analyzer.analyze(text, params)


def test_inventory_covers_every_kind_of_statement() -> None:
    """The scan cannot silently find nothing: each source of SQL contributes what we know it holds."""
    ids = [sid for sid, _ in STATEMENTS]
    models = [c.table for c in load_contracts().values() if c.is_model]
    assert {f"model:{m}" for m in models} <= set(ids)
    assert {f"merge:{m}" for m in models} <= set(ids)
    for prefix, at_least in {
        "rows-merge:": 4,
        "ddl:": len(load_contracts()),
        "chat:": 9,
        "source:services/chat/dashboard/data.py": 9,
        "source:services/anomaly/": 5,
        "source:services/forecast/": 3,
        "source:shared/runs.py": 3,
        "source:shared/refresh.py": 3,
    }.items():
        assert sum(sid.startswith(prefix) for sid in ids) >= at_least, prefix


def test_analyzer_rejects_a_misspelt_column_and_a_bigquery_only_rule(analyzer: GoogleSqlAnalyzer) -> None:
    """The check can fail: a wrong column, a wrong parameter type and QUALIFY alone are all errors."""
    with pytest.raises(Exception, match="Unrecognized name: energy_kw"):
        analyzer.analyze("SELECT energy_kw FROM energy_analytics.hourly_consumption", {})
    with pytest.raises(Exception, match=r"No matching signature|operator"):
        analyzer.analyze(
            "SELECT 1 FROM energy_analytics.hourly_consumption WHERE hour >= @start", {"start": "INT64"}
        )
    with pytest.raises(Exception, match="QUALIFY clause must be used in conjunction with WHERE"):
        analyzer.analyze(
            "SELECT * FROM raw.reading QUALIFY ROW_NUMBER() OVER (PARTITION BY device_id) = 1", {}
        )
    # ... and the GoogleSQL way to write that dedupe passes
    analyzer.analyze(
        "SELECT * FROM raw.reading WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY device_id) = 1", {}
    )


def test_raw_catalog_is_the_connector_schema_in_bigquery_types() -> None:
    raw = connector_schema()
    assert raw["reading"]["timestamp"] == "TIMESTAMP"
    assert raw["reading"]["power_w"] == "FLOAT64"
    assert raw["device"]["interval_minutes"] == "INT64"
    assert raw["reading"]["_fivetran_deleted"] == "BOOL"
