"""The configuration cloudbuild.yaml hands to `fivetran deploy` passes the connector's own validation."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from infra.cloudbuild.connector_configuration import BASE, render

CONNECTOR = BASE.parent / "connector.py"


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Loaded as the runner loads it: its folder on sys.path (`client` is a sibling module)."""
    from fivetran_connector_sdk import Logging

    monkeypatch.setattr(Logging, "LOG_LEVEL", Logging.Level.SEVERE)  # unset outside the runner
    monkeypatch.syspath_prepend(str(CONNECTOR.parent))
    spec = importlib.util.spec_from_file_location("gridsight_connector_under_test", CONNECTOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("client", None)


def test_deployed_configuration_is_valid_for_the_connector(connector: ModuleType) -> None:
    environ = {"VENDOR_API_URL": "https://meters.example.com/api", "VENDOR_API_KEY": "k-123"}
    configuration = render(environ)
    assert configuration["base_url"] == "https://meters.example.com/api"
    assert configuration["api_key"] == "k-123"
    assert all(isinstance(v, str) for v in configuration.values()), "Fivetran stores strings"
    parsed = connector.validate_configuration(configuration)
    assert parsed["base_url"] == "https://meters.example.com/api"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VENDOR_API_URL": "https://x.example"}, "VENDOR_API_KEY"),
        ({"VENDOR_API_URL": "http://x.example", "VENDOR_API_KEY": "k"}, "https://"),
        ({"VENDOR_API_URL": " ", "VENDOR_API_KEY": "k"}, "VENDOR_API_URL"),
    ],
)
def test_missing_or_insecure_vendor_settings_are_refused_by_name(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render(environ, base=Path(BASE))
