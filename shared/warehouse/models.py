"""The model graph: compile a mart (inline its staging models), list what it reads, order the marts.

Staging models are not materialised: each `staging.stg_<raw>` a mart names is replaced by that
file's SELECT as a subquery, so the only persisted tables are the energy_analytics contracts.
"""

from __future__ import annotations

from functools import cache
from graphlib import TopologicalSorter

from sqlglot import exp

from shared.warehouse.contracts import SQL_DIR, TableContract, load_contracts
from shared.warehouse.dialect import parse_one_statement, referenced_tables

__all__ = ["compile_sql", "model_inputs", "ordered_models"]

STAGING_DIR = SQL_DIR / "staging"


@cache
def _staging(name: str) -> exp.Expr:
    path = STAGING_DIR / f"{name}.sql"
    if not path.exists():
        raise ValueError(f"unknown staging model staging.{name} (no {path.name})")
    return parse_one_statement(path.read_text())


def compile_sql(sql: str) -> exp.Expr:
    """Parse GoogleSQL and inline every `staging.<model>` it reads as a subquery."""

    def inline(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db == "staging":
            return exp.Subquery(
                this=_staging(node.name).copy(),
                alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)),
            )
        return node

    return parse_one_statement(sql).transform(inline)


def model_inputs(contract: TableContract) -> frozenset[str]:
    """The energy_analytics tables a model reads (its upstream models), found by sqlglot.

    A model that reads its own earlier rows (fct_reading: what it modelled before) does not depend
    on itself: those rows are its state, not an upstream."""
    return _inputs(contract.table) - {contract.table}


@cache
def _inputs(table: str) -> frozenset[str]:
    tables = referenced_tables(parse_one_statement(load_contracts()[table].model_sql()))
    return frozenset(t.split(".", 1)[1] for t in tables if t.startswith("energy_analytics."))


@cache
def ordered_models() -> tuple[TableContract, ...]:
    """Every model, each after the models it reads."""
    contracts = load_contracts()
    models = {name: c for name, c in contracts.items() if c.is_model}
    graph: dict[str, frozenset[str]] = {}
    for name, contract in models.items():
        inputs = model_inputs(contract)
        unknown = inputs - models.keys()
        if unknown:
            raise ValueError(f"model {name} reads {sorted(unknown)}, which no model builds")
        graph[name] = inputs
    return tuple(models[name] for name in TopologicalSorter(graph).static_order())
