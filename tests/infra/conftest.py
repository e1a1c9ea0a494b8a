"""Fixtures for the infrastructure checks: parsed Terraform, evaluated locals, one checkov run.

The terraform binary cannot download providers here, so nothing is planned. What can be evaluated
is: the module's pure locals (locals.tf), with `terraform console` when a binary is present (no
providers needed) and always with a Python mirror of the same expressions, asserted equal.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.infra.tfcommon import (
    INSECURE_FIXTURE,
    MODULE_DIR,
    REPO_ROOT,
    TERRAFORM_DIR,
    blocks,
    run_checkov,
    terraform_console,
)


@pytest.fixture(scope="session")
def tf_files() -> list[Path]:
    files = sorted(TERRAFORM_DIR.rglob("*.tf"))
    assert files, "no Terraform files found"
    return files


@pytest.fixture(scope="session")
def module() -> dict[str, dict[str, Any]]:
    """Every file of the module, parsed, keyed by file name."""
    return {path.name: hcl2.load(path.open()) for path in sorted(MODULE_DIR.glob("*.tf"))}


@pytest.fixture(scope="session")
def resources(module: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """All module resources as 'type.name' -> body."""
    found: dict[str, dict[str, Any]] = {}
    for parsed in module.values():
        found.update(blocks(parsed, "resource"))
    return found


@pytest.fixture(scope="session")
def module_locals(module: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for parsed in module.values():
        for item in parsed.get("locals", []):
            merged.update({k: v for k, v in item.items() if not k.startswith("__")})
    return merged


@pytest.fixture(scope="session")
def terraform() -> str | None:
    return shutil.which("terraform")


@pytest.fixture(scope="session")
def evaluated_locals(
    terraform: str | None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any] | None:
    """The locals Terraform computes from events.yaml, or None without a terraform binary."""
    if terraform is None:
        return None
    names = ["topics", "push_subscriptions", "dead_letter_topics", "push_targets", "service_topics"]
    names += ["services", "images", "common_env", "push_audience", "secrets", "webhook_service"]
    names += ["service_timeout_seconds", "push_auth"]
    expression = "{" + ", ".join(f"{n} = local.{n}" for n in names) + "}"
    return terraform_console(terraform, expression, tmp_path_factory.mktemp("tf-console"))


@pytest.fixture(scope="session")
def checkov_report() -> list[dict[str, Any]]:
    """Terraform and Dockerfiles of the project (services and Cloud Build's CI image), every check."""
    dirs = [TERRAFORM_DIR, REPO_ROOT / "services", REPO_ROOT / "infra" / "cloudbuild"]
    args = [arg for d in dirs for arg in ("-d", str(d))]
    return run_checkov(*args, "--framework", "terraform", "dockerfile")


@pytest.fixture(scope="session")
def insecure_report() -> list[dict[str, Any]]:
    """Our policies alone over deliberately insecure Terraform (they must be able to fail)."""
    checks = "CKV_GRIDSIGHT_1,CKV_GRIDSIGHT_2,CKV_GRIDSIGHT_3,CKV_GRIDSIGHT_4,CKV_GRIDSIGHT_5"
    return run_checkov("-d", str(INSECURE_FIXTURE), "--framework", "terraform", "--check", checks)
