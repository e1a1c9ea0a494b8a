"""Table contracts: the sibling `.yml` of every model and service-written table, as pydantic models.

The YAML is the single source of a table's columns, grain, key and layout; DDL on both backends, the
MERGE a model runs under and the contract tests are all derived from it, so they cannot drift apart.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
ColumnType = Literal["STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE"]


class TableContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    grain: str
    unique_key: tuple[str, ...]
    materialization: Literal["full", "incremental", "service"]
    columns: dict[str, ColumnType]
    time_column: str | None = None
    partition_by: str | None = None
    cluster_by: tuple[str, ...] = ()
    propagates_hours: int = Field(default=0, ge=0)
    # A changed input row changes this model's rows up to this many hours *before* it (an interval
    # closed by a reading covers hours before the reading), so the refresh widens the window back.
    propagates_back_hours: int = Field(default=0, ge=0)
    sql_path: Path | None = None

    @model_validator(mode="after")
    def _columns_exist(self) -> TableContract:
        named = [*self.unique_key, *self.cluster_by]
        named += [c for c in (self.time_column, self.partition_by) if c]
        missing = [c for c in named if c not in self.columns]
        if missing:
            raise ValueError(f"{self.table}: contract names unknown columns {missing}")
        if self.materialization == "incremental" and not self.time_column:
            raise ValueError(f"{self.table}: an incremental model needs a time_column")
        return self

    @property
    def is_model(self) -> bool:
        return self.sql_path is not None

    def model_sql(self) -> str:
        if self.sql_path is None:
            raise ValueError(f"{self.table} is written by a service, not by a model")
        return self.sql_path.read_text()


def _load(path: Path) -> TableContract:
    data = yaml.safe_load(path.read_text())
    sql = path.with_suffix(".sql")
    return TableContract(**data, sql_path=sql if sql.exists() else None)


@cache
def load_contracts(sql_dir: Path = SQL_DIR) -> dict[str, TableContract]:
    """Every energy_analytics table: marts (models) and tables (written by services)."""
    contracts: dict[str, TableContract] = {}
    for folder in ("marts", "tables"):
        for path in sorted((sql_dir / folder).glob("*.yml")):
            contract = _load(path)
            if contract.table != path.stem:
                raise ValueError(f"{path}: table name {contract.table!r} differs from the file name")
            contracts[contract.table] = contract
    return contracts


def contract_for(table: str) -> TableContract:
    """`table` may be bare or `energy_analytics.`-qualified."""
    name = table.removeprefix("energy_analytics.")
    try:
        return load_contracts()[name]
    except KeyError:
        raise KeyError(f"no contract for energy_analytics.{name}") from None
