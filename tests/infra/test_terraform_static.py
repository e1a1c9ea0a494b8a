"""The Terraform parses, is formatted, pins its providers, and documents its inputs and outputs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from infra.terraform_tables import TABLES_FILE, render_tables
from shared.warehouse.contracts import load_contracts
from tests.infra.tfcommon import DEV_DIR, MODULE_DIR, TERRAFORM_DIR, blocks, unquote


def test_every_terraform_file_parses(tf_files: list[Path]) -> None:
    for path in [*tf_files, DEV_DIR / "terraform.tfvars.example"]:
        parsed = hcl2.load(path.open())
        assert isinstance(parsed, dict), path


def test_terraform_fmt_finds_nothing_to_change(terraform: str | None) -> None:
    if terraform is None:
        pytest.skip("no terraform binary on this machine")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}"


def _providers(root: Path) -> dict[str, str]:
    """required_providers of a root/module as name -> version constraint."""
    parsed = hcl2.load((root / "versions.tf").open())
    providers = parsed["terraform"][0]["required_providers"][0]
    return {name: unquote(spec["version"]) for name, spec in providers.items() if not name.startswith("__")}


@pytest.mark.parametrize("root", [MODULE_DIR, DEV_DIR], ids=["module", "dev"])
def test_providers_are_pinned_to_exact_versions(root: Path) -> None:
    providers = _providers(root)
    assert set(providers) == {"google", "fivetran"}
    for name, version in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"


def test_dev_environment_pins_what_the_module_pins() -> None:
    assert _providers(DEV_DIR) == _providers(MODULE_DIR)


@pytest.mark.parametrize("kind", ["variable", "output"])
def test_module_inputs_and_outputs_are_described_and_alphabetical(module: dict[str, Any], kind: str) -> None:
    file = "variables.tf" if kind == "variable" else "outputs.tf"
    declared = blocks(module[file], kind)
    names = list(declared)
    assert names == sorted(names), f"{file}: not alphabetical: {names}"
    for name, body in declared.items():
        assert len(unquote(body.get("description", ""))) > 15, f"{kind} {name} needs a description"
        if kind == "variable":
            assert "type" in body, f"variable {name} has no type"


def test_module_variables_without_safe_default_are_validated(module: dict[str, Any]) -> None:
    for name, body in blocks(module["variables.tf"], "variable").items():
        if "default" not in body:
            assert body.get("validation"), f"required variable {name} is not validated"


def test_every_module_variable_is_used(module: dict[str, Any]) -> None:
    text = "\n".join(p.read_text() for p in MODULE_DIR.glob("*.tf") if p.name != "variables.tf")
    for name in blocks(module["variables.tf"], "variable"):
        assert f"var.{name}" in text, f"variable {name} is declared but never used"


def test_table_definitions_match_the_warehouse_contracts() -> None:
    """tables.json is what bigquery.tf creates; stale means BigQuery and the DDL would disagree."""
    assert TABLES_FILE.read_text() == render_tables(load_contracts()), (
        "infra/terraform/modules/gridsight/tables.json is stale: run `python -m infra.terraform_tables`"
    )


def test_modelled_tables_are_protected_and_the_large_ones_day_partitioned_and_clustered(
    resources: dict[str, Any],
) -> None:
    table = resources["google_bigquery_table.modelled"]
    assert table["deletion_protection"] == "${var.deletion_protection}"
    partitioning = table["dynamic"][0]['"time_partitioning"']
    assert unquote(partitioning["content"][0]["type"]) == "DAY"
    tables = json.loads(TABLES_FILE.read_text())
    # DESIGN.md: the per-hour and per-reading tables grow without bound; they must prune by day.
    for name in ("fct_reading", "hourly_consumption", "ml_features", "forecasts", "anomalies"):
        assert tables[name]["partition_by"], f"{name} is not partitioned"
        assert tables[name]["cluster_by"][:1] == ["device_id"], f"{name} is not clustered by device"


def test_dev_environment_passes_every_required_module_input_and_no_unknown_one(
    module: dict[str, Any],
) -> None:
    call = hcl2.load((DEV_DIR / "main.tf").open())["module"][0]
    (name, arguments), *_ = call.items()
    passed = {k for k in arguments if not k.startswith("__")} - {"source"}
    variables = blocks(module["variables.tf"], "variable")
    assert passed <= set(variables), f"{name}: unknown inputs {sorted(passed - set(variables))}"
    required = {n for n, body in variables.items() if "default" not in body}
    assert required <= passed, f"{name}: required inputs not passed {sorted(required - passed)}"
