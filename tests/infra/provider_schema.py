"""Attribute names of the google provider, from its generated CDKTF bindings (npm, no binary).

Providers cannot be downloaded here, so `terraform validate` is out of reach; the prebuilt
@cdktf/provider-google package is generated from the provider's schema and pinned to one provider
version, so its TypeScript declarations list every argument, block and exported attribute of every
resource. `make tf-schema` unpacks it into .venv-checkov/provider-google.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from shared.settings import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / ".venv-checkov" / "provider-google" / "package" / "lib"
_NOT_ARGUMENTS = {"for_each", "count", "depends_on", "provider", "lifecycle", "__is_block__", "__comments__"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class ResourceSchema:
    arguments: frozenset[str]  # every argument and nested block name, camelCase
    attributes: frozenset[str]  # every readable attribute of the resource itself


@cache
def schema(kind: str, *, data: bool = False) -> ResourceSchema | None:
    folder = ("data-google-" if data else "") + kind.removeprefix("google_").replace("_", "-")
    path = SCHEMA_DIR / folder / "index.d.ts"
    if not path.is_file():
        return None
    text = path.read_text()
    return ResourceSchema(
        frozenset(re.findall(r"readonly (\w+)\??:", text)), frozenset(re.findall(r"get (\w+)\(\)", text))
    )


def provider_version() -> str | None:
    """The google provider version the bindings were generated from."""
    match = re.search(
        r"hashicorp/google/(\d+\.\d+\.\d+)", (SCHEMA_DIR / "provider" / "index.d.ts").read_text()
    )
    return match.group(1) if match else None


def unknown_arguments(kind: str, body: Any, where: str) -> list[str]:
    """Argument and block names in one parsed resource body that the provider does not have."""
    found = schema(kind)
    if found is None:
        return [f"{where}: no resource type {kind}"]
    problems: list[str] = []

    def walk(block: Any, path: str) -> None:
        if isinstance(block, list):
            for item in block:
                walk(item, path)
            return
        if not isinstance(block, dict):
            return
        for raw_key, value in block.items():
            key = raw_key.strip('"')
            if key in _NOT_ARGUMENTS:
                continue
            if key == "dynamic":
                for dynamic in value:
                    for raw_name, spec in dynamic.items():
                        name = raw_name.strip('"')
                        if camel(name) not in found.arguments:
                            problems.append(f"{path}: dynamic block {name}")
                        walk(spec.get("content", []), f"{path}.{name}")
                continue
            if camel(key) not in found.arguments:
                problems.append(f"{path}: {key}")
            if (
                isinstance(value, list)
                and value
                and isinstance(value[0], dict)
                and value[0].get("__is_block__")
            ):
                walk(value, f"{path}.{key}")

    walk(body, where)
    return problems
