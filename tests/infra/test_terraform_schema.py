"""Every argument, block and referenced attribute exists in the pinned google provider's schema.

The nearest thing to `terraform validate` without downloading providers (see provider_schema.py).
"""

from __future__ import annotations

import os
import re
from typing import Any

import hcl2
import pytest

from tests.infra.provider_schema import SCHEMA_DIR, camel, provider_version, schema, unknown_arguments
from tests.infra.tfcommon import INSECURE_FIXTURE, MODULE_DIR, blocks

REFERENCE = re.compile(r"\b(google_[a-z0-9_]+)\.([a-z0-9_]+)(?:\[[^\]]+\])?\.([a-z_]+)\b")


@pytest.fixture(scope="module", autouse=True)
def _bindings() -> None:
    if not SCHEMA_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SCHEMA_DIR} missing: `make test` unpacks it through `make tf-schema`")
        pytest.skip("provider bindings missing: run `make tf-schema`")


def test_bindings_are_generated_from_the_pinned_provider_version(module: dict[str, Any]) -> None:
    pinned = module["versions.tf"]["terraform"][0]["required_providers"][0]["google"]["version"]
    assert provider_version() == pinned.strip('"'), "bump @cdktf/provider-google in the Makefile with the pin"


def test_every_argument_and_block_of_every_google_resource_exists(resources: dict[str, Any]) -> None:
    problems = [
        problem
        for address, body in resources.items()
        if address.startswith("google_")
        for problem in unknown_arguments(address.split(".")[0], body, address)
    ]
    assert not problems, "not in the google provider schema:\n" + "\n".join(problems)


def test_every_referenced_attribute_exists(module: dict[str, Any]) -> None:
    data_sources = {name.split(".")[0] for parsed in module.values() for name in blocks(parsed, "data")}
    text = "\n".join(path.read_text() for path in MODULE_DIR.glob("*.tf"))
    problems = []
    for kind, _name, attribute in set(REFERENCE.findall(text)):
        found = schema(kind, data=kind in data_sources)
        if found is None:
            problems.append(f"{kind}: unknown type")
        elif camel(attribute) not in found.attributes | found.arguments:
            problems.append(f"{kind}.{attribute}")
    assert not problems, "referenced attributes the provider does not export:\n" + "\n".join(sorted(problems))


def test_the_insecure_fixture_is_valid_terraform_too() -> None:
    """The policies must fail it for its settings, not because it is malformed."""
    parsed = hcl2.load((INSECURE_FIXTURE / "main.tf").open())
    problems = [
        p
        for address, body in blocks(parsed, "resource").items()
        for p in unknown_arguments(address.split(".")[0], body, address)
    ]
    assert not problems, problems
