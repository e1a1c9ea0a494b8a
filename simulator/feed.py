"""Keyset pagination over any data source: entity lists and the per-device change feed.

The change feed is ordered by (received_at, reading timestamp) and filtered to what was visible
at the simulated "now". Pages are cut without materialising a device's history: days are
generated one at a time until a page is provably complete (a reading is never received before
its own timestamp, so once day D is generated, every record received before the end of D is
known).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Protocol

from shared.errors import InvalidEvent
from simulator.fleet import DAY_S, RawRecord

MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 1000


class Source(Protocol):
    """What the HTTP server serves: the synthetic `Fleet` or a `Replay` of real data."""

    initial_now: int
    max_delay_s: int

    def site_bodies(self) -> list[dict]: ...

    def device_bodies(self, now: int) -> list[dict]: ...

    def first_day(self, device_id: str) -> int | None: ...

    def records(self, device_id: str, day: int) -> list[RawRecord]: ...


def encode_token(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, scope: str) -> dict:
    """Tokens are opaque to clients but must come back unchanged and for the same query."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidEvent("page_token is not a token this API issued") from exc
    if not isinstance(payload, dict) or payload.get("q") != scope:
        raise InvalidEvent("page_token belongs to a different query")
    return payload


def parse_page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidEvent(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def entity_page(
    rows: list[dict], key: str, page_size: int, token: str | None, scope: str
) -> tuple[list[dict], str | None]:
    """Keyset page over rows sorted by `key` (sites, devices)."""
    after = decode_token(token, scope)["k"] if token else None
    remaining = [r for r in rows if after is None or r[key] > after]
    page = remaining[:page_size]
    more = len(remaining) > page_size
    return page, encode_token({"q": scope, "k": page[-1][key]}) if more else None


def readings_page(
    source: Source,
    device_id: str,
    since: int,
    now: int,
    page_size: int,
    token: str | None,
) -> tuple[list[dict], str | None]:
    """One page of a device's change feed: records received at or after `since`, visible by `now`."""
    scope = f"readings:{device_id}:{since}"
    after: tuple[int, int] | None = None
    if token:
        payload = decode_token(token, scope)
        after = (int(payload["r"]), int(payload["t"]))
    first = source.first_day(device_id)
    if first is None:
        return [], None
    lower = max(since, after[0] if after else since)
    day = max(first, (lower - source.max_delay_s) // DAY_S)
    last_day = now // DAY_S
    found: list[RawRecord] = []
    while day <= last_day:
        for rec in source.records(device_id, day):
            if (
                rec.visible <= now
                and rec.received >= since
                and (after is None or (rec.received, rec.ts) > after)
            ):
                found.append(rec)
        day += 1
        complete_before = day * DAY_S
        if sum(1 for r in found if r.received < complete_before) > page_size:
            break
    found.sort(key=lambda r: (r.received, r.ts))
    page = found[:page_size]
    more = len(found) > page_size
    next_token = encode_token({"q": scope, "r": page[-1].received, "t": page[-1].ts}) if more else None
    return [r.body for r in page], next_token
