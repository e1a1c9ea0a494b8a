"""Helpers to read checkov's parsed resource configuration (every attribute is a one-item list)."""

from __future__ import annotations

from typing import Any


def first(conf: dict[str, Any], key: str) -> Any:
    """The attribute's value, unwrapped from checkov's one-item list; None when absent."""
    value = conf.get(key)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def block(conf: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A nested block (checkov gives a list of dicts); None when absent or empty."""
    value = first(conf, key)
    return value if isinstance(value, dict) and value else None


def as_strings(value: Any) -> list[str]:
    """Flatten an attribute that may be a string, a list of strings or a list of lists."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for item in value for s in as_strings(item)]
    return [str(value)]
