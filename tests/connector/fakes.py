"""A vendor feed and an SDK `op` recorder, for driving the connector's real sync functions in-process
(fast enough for property-based tests; the runner itself is covered by test_connector_sync.py).

`FeedClient` answers like the vendor API: a device's records with received_at >= received_since, in
received_at order, in pages; each page goes through JSON text and the real client's integer parsing,
so what validation sees is what it would see from the wire.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# "HUGE<n>" in a record is sent as an n-digit integer literal (too long for Python's int to print)
_HUGE = re.compile(r'"HUGE(\d+)"')


@dataclass
class FeedClient:
    feeds: dict[str, list[Any]]
    page_size: int = 50
    requests_made: int = 0

    def readings_path(self, device_id: str) -> str:
        return device_id

    def pages(self, path: str, params: dict) -> Iterator[list]:
        since = _when(params["received_since"])
        served = [r for r in self.feeds.get(path, []) if _received(r) is None or _received(r) >= since]
        served.sort(key=lambda r: _received(r) or since)
        for i in range(0, max(len(served), 1), self.page_size):
            self.requests_made += 1
            text = json.dumps({"data": served[i : i + self.page_size]}, default=str)
            text = _HUGE.sub(lambda m: "1" + "0" * (int(m.group(1)) - 1), text)
            yield json.loads(text, parse_int=sys.modules["client"]._int_or_text)["data"]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _received(record: Any) -> datetime | None:
    """The vendor orders its feed by received_at; a record without a parseable one is served anyway."""
    if not isinstance(record, dict) or not isinstance(record.get("received_at"), str):
        return None
    try:
        moment = _when(record["received_at"])
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass
class Recorder:
    """Stands in for the SDK's Operations: every upsert kept in order, per table."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    checkpoints: int = 0

    def upsert(self, table: str, data: dict) -> None:
        self.rows.setdefault(table, []).append(dict(data))

    def delete(self, table: str, keys: dict) -> None:
        self.rows.setdefault(f"{table}.deleted", []).append(dict(keys))

    def checkpoint(self, state: dict) -> None:
        self.checkpoints += 1

    def table(self, name: str) -> list[dict]:
        return self.rows.get(name, [])
