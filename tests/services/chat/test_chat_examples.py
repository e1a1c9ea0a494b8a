"""Example questions shown to users name sites and devices the `gridsight demo` fleet really has (#19).

The chat's examples (knowledge/examples.yaml), its help text, the dashboard placeholder and the
README's Chat section are checked against the simulator's demo spec (50 devices, seed 7), and each
example must be understood as the intent it is labelled with.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml

from services.chat.answer import HELP
from services.chat.understanding import Catalog, Entity, understand
from tests.services.chat.demo_fleet import demo_entities

ROOT = Path(__file__).resolve().parents[3]
MENTION = re.compile(r"\b(?:Office|Home|Meter) \d+\b|\bdev-\d{5}\b|\bsite-\d{5}\b", re.IGNORECASE)
UNKNOWN_ON_PURPOSE = {"office 55"}  # the README's example of a name chat must not resolve to Office 5
NOT_IN_DEMO = re.compile(
    r"\bsite [A-Z]\b|HVAC plant|kitchen|Harbour Office|Elm Street|Riverside", re.IGNORECASE
)


def _texts() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    chat = readme[readme.index("## Chat") :]
    chat = chat[: chat.index("\n## ", 3)]
    return {
        "examples.yaml": (ROOT / "services/chat/knowledge/examples.yaml").read_text(),
        "help": HELP,
        "dashboard": (ROOT / "services/chat/dashboard/static/index.html").read_text(),
        "README Chat": chat,
    }


def _demo_catalog() -> Catalog:
    sites, devices = demo_entities()
    return Catalog(
        devices=[
            Entity(kind="device", id=d.device_id, name=d.name, site_id=d.site_id, timezone=d.timezone)
            for d in devices.itertuples()
        ],
        sites=[
            Entity(kind="site", id=s.site_id, name=s.name, timezone=s.timezone) for s in sites.itertuples()
        ],
    )


def test_every_named_site_or_device_exists_in_the_demo_fleet() -> None:
    sites, devices = demo_entities()
    known = {n.lower() for n in [*sites["name"], *devices["name"], *sites["site_id"], *devices["device_id"]]}
    for where, text in _texts().items():
        named = {m.lower() for m in MENTION.findall(text)} - UNKNOWN_ON_PURPOSE
        assert named <= known, f"{where} names {sorted(named - known)}, which the demo fleet does not have"
        assert not NOT_IN_DEMO.search(text), f"{where} names {NOT_IN_DEMO.search(text)[0]!r}"  # type: ignore[index]


def test_every_example_is_understood_as_its_labelled_intent() -> None:
    catalog = _demo_catalog()
    for entry in yaml.safe_load((ROOT / "services/chat/knowledge/examples.yaml").read_text()):
        got = understand(entry["question"], catalog, lambda tz: date(2026, 11, 20))
        assert got.intent == entry["intent"], entry["question"]
        assert not got.slots.unknown_names, entry["question"]
