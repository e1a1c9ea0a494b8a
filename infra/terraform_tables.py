"""Write the BigQuery table definitions Terraform creates from the warehouse table contracts.

shared/sql/{marts,tables}/*.yml are the one source of every energy_analytics table's columns and
layout. Terraform cannot read them directly without losing column order (HCL objects iterate
alphabetically), so this renders them to one JSON file the module `jsondecode`s; tests/infra fails
when the committed file is stale. Run `python -m infra.terraform_tables` after changing a contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT
from shared.warehouse.contracts import TableContract, load_contracts

__all__ = ["TABLES_FILE", "render_tables", "table_definition"]

TABLES_FILE = REPO_ROOT / "infra" / "terraform" / "modules" / "gridsight" / "tables.json"


def table_definition(contract: TableContract) -> dict[str, Any]:
    """One table as bigquery.tf consumes it: schema in contract order, partition and cluster columns."""
    return {
        "description": f"Grain: {contract.grain}. Contract: shared/sql ({contract.table}.yml).",
        "partition_by": contract.partition_by,
        "cluster_by": list(contract.cluster_by),
        "schema": [
            {"name": name, "type": kind, "mode": "NULLABLE"} for name, kind in contract.columns.items()
        ],
    }


def render_tables(contracts: dict[str, TableContract]) -> str:
    tables = {name: table_definition(contracts[name]) for name in sorted(contracts)}
    return json.dumps(tables, indent=2) + "\n"


def main(path: Path = TABLES_FILE) -> None:
    path.write_text(render_tables(load_contracts()))
    print(f"wrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
