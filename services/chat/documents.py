"""The documents the vector index holds: device and site descriptions, anomaly incident narratives,
the energy-efficiency playbook and known-good question -> SQL pairs.

Descriptions and narratives are written from warehouse rows, so they change when the data does (the
index re-syncs on a new fingerprint); the playbook and examples ship in `knowledge/`. Text taken from
data (names, explanations) is copied as is: it is data, never instructions, and generation is told so.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from services.chat.index import Document

__all__ = ["catalog_documents", "example_documents", "incident_documents", "playbook_documents"]

KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"


def catalog_documents(devices: list[dict[str, Any]], sites: list[dict[str, Any]]) -> list[Document]:
    site_names = {s["site_id"]: s.get("name") for s in sites}
    docs = [
        Document(
            id=f"site:{s['site_id']}",
            kind="site",
            title=f"{s.get('name') or s['site_id']} ({s['site_id']})",
            text=f"Site {s['site_id']} '{s.get('name')}' is a {s.get('site_type') or 'unknown'} site in "
            f"timezone {s.get('timezone') or 'UTC'}.",
            meta={"site_id": s["site_id"]},
        )
        for s in sites
    ]
    docs += [
        Document(
            id=f"device:{d['device_id']}",
            kind="device",
            title=f"{d.get('name') or d['device_id']} ({d['device_id']})",
            text=f"Device {d['device_id']} '{d.get('name')}' is a {d.get('meter_type') or 'meter'} at site "
            f"'{site_names.get(d.get('site_id')) or d.get('site_id')}' ({d.get('site_type') or 'unknown'}), "
            f"reading every {d.get('interval_minutes')} minutes.",
            meta={"device_id": d["device_id"], "site_id": d.get("site_id")},
        )
        for d in devices
    ]
    return docs


def incident_documents(incidents: list[dict[str, Any]]) -> list[Document]:
    return [
        Document(
            id=f"incident:{a['incident_id']}",
            kind="incident",
            title=f"{a.get('anomaly_type')} on {a.get('name') or a['device_id']} ({a['incident_id']})",
            text=f"{a.get('severity')} {a.get('anomaly_type')} incident on device {a['device_id']} starting "
            f"{a.get('start_hour')}: {a.get('explanation') or 'no explanation recorded'}",
            meta={"device_id": a["device_id"], "incident_id": a["incident_id"]},
        )
        for a in incidents
    ]


@cache
def playbook_documents() -> tuple[Document, ...]:
    text = (KNOWLEDGE / "playbook.md").read_text()
    docs = []
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        keywords = ""
        if body.startswith("Keywords:"):
            keywords, _, body = body.partition("\n")
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        docs.append(
            Document(
                id=f"playbook:{slug}",
                kind="playbook",
                title=title.strip(),
                text=" ".join(body.split()),
                meta={"keywords": keywords.removeprefix("Keywords:").strip()},
            )
        )
    return tuple(docs)


@cache
def example_documents() -> tuple[Document, ...]:
    entries = yaml.safe_load((KNOWLEDGE / "examples.yaml").read_text())
    return tuple(
        Document(
            id=f"example:{i}",
            kind="example",
            title=e["question"],
            text=e["question"],
            meta={"intent": e["intent"]},
        )
        for i, e in enumerate(entries)
    )
