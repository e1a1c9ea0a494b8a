"""What an image must contain: the modules reachable from its entrypoint and their distributions.

Walks the imports (every import statement, also those inside functions) from a service's entrypoint
through the repository's own modules, and maps each third-party import to the distribution that
provides it, so a test can compare that with the image's requirements file.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from shared.settings import REPO_ROOT

LOCAL_PACKAGES = {"shared", "services", "infra", "simulator", "fivetran_connector", "tests", "bench"}


def module_file(name: str) -> Path | None:
    """The repository file of a dotted module name, or None when it is not ours."""
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names imported by one file (relative imports resolved, `from a import b` as a.b too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def reachable(entry_module: str) -> tuple[dict[str, Path], set[str]]:
    """Our modules reachable from `entry_module`, and the dotted names of everything else imported."""
    ours: dict[str, Path] = {}
    external: set[str] = set()
    todo = [entry_module]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        path = module_file(name)
        if path is None:
            continue
        ours[name] = path
        for imported in _imports(path, name):
            top = imported.split(".")[0]
            if top in LOCAL_PACKAGES:
                # a package import also runs its parent packages' __init__ files
                parts = imported.split(".")
                todo.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                external.add(imported)
    return ours, external


def read_requirements(path: Path) -> set[str]:
    """Normalised distribution names of a requirements file, following `-r` includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            names |= read_requirements((path.parent / line[2:].strip()).resolve())
        else:
            names.add(normalise(Requirement(line).name))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _dependencies(name: str) -> frozenset[str]:
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    found = set()
    for spec in requires:
        requirement = Requirement(spec)
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        if requirement.marker and not requirement.marker.evaluate():
            continue
        found.add(normalise(requirement.name))
    return frozenset(found)


def installed_closure(names: set[str]) -> set[str]:
    """The distributions pip installs for `names` (what the installed metadata says they require)."""
    closure: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(_dependencies(name))
    return closure


@cache
def _installed_files() -> dict[str, frozenset[str]]:
    """Installed distribution -> the module paths it ships (`google/cloud/bigquery/__init__.py`)."""
    return {
        normalise(dist.metadata["Name"]): frozenset(
            str(f) for f in (dist.files or []) if f.suffix in {".py", ".so"}
        )
        for dist in metadata.distributions()
    }


def _ships(files: frozenset[str], prefix: str) -> bool:
    """A package dir, a module file or an extension module (`duckdb.cpython-311-x86_64.so`)."""
    if f"{prefix}/__init__.py" in files or f"{prefix}.py" in files:
        return True
    return any(
        f.startswith(f"{prefix}.") and f.endswith(".so") and "/" not in f[len(prefix) :] for f in files
    )


@cache
def distributions_of(dotted: str) -> frozenset[str]:
    """Distributions shipping the longest importable prefix of `dotted`.

    Namespace packages (`google`) are shipped by many distributions, so `google.cloud.bigquery`
    must resolve to google-cloud-bigquery, not to whichever google-* happens to be installed.
    """
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = "/".join(parts[:end])
        owners = frozenset(name for name, files in _installed_files().items() if _ships(files, prefix))
        if owners:
            return owners
    return frozenset()


def external_distributions(external: set[str]) -> tuple[set[str], list[str]]:
    """Distributions the imports need, and imports nothing installed provides.

    A bare namespace (`google.cloud` from `from google.cloud import bigquery`) is provided by
    whatever provides the longer names under it, so it is not reported on its own.
    """
    needed: set[str] = set()
    unprovided: list[str] = []
    for name in sorted(external):
        owners = distributions_of(name)
        if owners:
            needed |= owners
        elif not any(other.startswith(f"{name}.") for other in external):
            unprovided.append(name)
    return needed, unprovided
