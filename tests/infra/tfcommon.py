"""Paths and helpers shared by the infrastructure checks (fixtures live in conftest.py).

Kept out of conftest.py so test modules can import them by name: a conftest imported as a module is
ambiguous when several test folders are collected together.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.settings import REPO_ROOT

TERRAFORM_DIR = REPO_ROOT / "infra" / "terraform"
MODULE_DIR = TERRAFORM_DIR / "modules" / "gridsight"
DEV_DIR = TERRAFORM_DIR / "environments" / "dev"
POLICIES_DIR = TERRAFORM_DIR / "policies"
INSECURE_FIXTURE = Path(__file__).parent / "fixtures" / "insecure"
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
# Values for the module's required inputs when its locals are evaluated.
TEST_VARS = {
    "project_id": "gridsight-test",
    "region": "europe-west1",
    "prefix": "gridsight",
    "fivetran_connection_id": "test_connection",
    "topology_file": str(REPO_ROOT / "infra" / "events.yaml"),
}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"x"') and expressions wrapped ('${x}')."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """`resource`/`variable`/`output` blocks of a parsed file, keyed without quotes."""
    found: dict[str, dict[str, Any]] = {}
    for item in parsed.get(kind, []):
        for name, body in item.items():
            if kind == "resource":
                for res_name, res_body in body.items():
                    found[f"{unquote(name)}.{unquote(res_name)}"] = res_body
            else:
                found[unquote(name)] = body
    return found


def terraform_console(
    terraform: str, expression: str, workdir: Path, variables: dict[str, str] | None = None
) -> Any:
    """Evaluate `jsonencode(expression)` over locals.tf + variables.tf with TEST_VARS (and `variables`,
    HCL values such as '{smtp_host = "relay"}', on top)."""
    for name in ("locals.tf", "variables.tf"):
        shutil.copy(MODULE_DIR / name, workdir / name)
    args = [terraform, "console"]
    for key, value in {**TEST_VARS, **(variables or {})}.items():
        args += ["-var", f"{key}={value}"]
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(
        args,
        input=f"jsonencode({expression})\n",
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform console failed: {result.stderr}"
    return json.loads(json.loads(result.stdout.strip()))


def run_checkov(*args: str) -> list[dict[str, Any]]:
    """One checkov run with our policies, offline; its JSON report(s) as a list."""
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} missing: `make test` builds it through `make checkov`")
        pytest.skip("checkov venv missing: run `make checkov`")
    env = {**os.environ, "PYTHONPATH": str(TERRAFORM_DIR), "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    cmd = [str(CHECKOV), "--skip-download", "--external-checks-dir", str(POLICIES_DIR), "-o", "json", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}): {result.stderr[-2000:]}"
    assert "Cannot load external check" not in result.stderr, result.stderr[-2000:]
    return _json_documents(result.stdout)


def _json_documents(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON document per scanned directory, back to back."""
    decoder, index, reports = json.JSONDecoder(), 0, []
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return reports
        document, index = decoder.raw_decode(text, index)
        reports.extend(document if isinstance(document, list) else [document])
