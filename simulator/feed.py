"""Keyset pagination over any data source: entity lists, the per-device and the fleet change feed.

The per-device change feed is ordered by (received_at, reading timestamp) and filtered to what was
visible at the simulated "now". Pages are cut without materialising a device's history: days are
generated one at a time until a page is provably complete (a reading is never received before
its own timestamp, so once day D is generated, every record received before the end of D is
known).

The fleet change feed (`changes_page`) serves every device's records in (received_at, device_id,
timestamp) order, as head-end systems (MDMS) do, so a sync costs pages of new data instead of one
request per device. Ordering 100k devices needs only *when* each record arrives, not the record:
`FleetFeed` indexes receipts (timestamp, received, visible: a fifth of the cost of a record) per
block of received time, builds a block on first use and keeps the few newest; bodies are built
only for the records of the page served.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from threading import Lock
from typing import Protocol

import numpy as np

from shared.errors import InvalidEvent
from simulator.fleet import DAY_S, RawRecord

MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 1000


class Source(Protocol):
    """What the HTTP server serves: the synthetic `Fleet` or a `Replay` of real data."""

    initial_now: int
    max_delay_s: int  # the longest between a reading's timestamp and its receipt
    feed_lag_s: int  # the longest between a record's receipt and its publication (visible)

    def site_bodies(self) -> list[dict]: ...

    def fleet_ids(self) -> list[str]: ...

    def receipts(self, device_id: str, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def records_at(self, device_id: str, day: int, timestamps: set[int]) -> list[RawRecord]: ...

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
    """Keyset page over rows sorted by `key` (sites, devices): a binary search for the token's key."""
    after = decode_token(token, scope)["k"] if token else None
    start = 0 if after is None else bisect_right(rows, after, key=lambda r: r[key])
    page = rows[start : start + page_size]
    more = len(rows) > start + page_size
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


# Blocks of received time the fleet index is cut in, and how many stay built. A 15-minute sync
# reads one block (two across a boundary); at 100k devices x 15 minutes a block holds 1.2M
# receipts (29 MB), so three blocks bound the simulator's index at about 90 MB.
BLOCK_S = 3 * 3600
_BLOCKS_KEPT = 3


@dataclass(frozen=True)
class _Block:
    """Receipts of the whole fleet received in one block, sorted by (received, device, timestamp)."""

    received: np.ndarray
    device: np.ndarray  # position in `fleet_ids()` (sorted, so position order is device_id order)
    ts: np.ndarray
    visible: np.ndarray

    def after(self, start: int, key: tuple[int, int, int] | None) -> int:
        """Index of the first receipt at or after `start`, and strictly after `key` when given."""
        i = int(np.searchsorted(self.received, start, "left"))
        if key is None:
            return i
        j = int(np.searchsorted(self.received, key[0], "right"))
        if j <= i:
            return i
        devices = self.device[i:j]
        lo, hi = np.searchsorted(devices, key[1], "left"), np.searchsorted(devices, key[1], "right")
        return i + int(lo) + int(np.searchsorted(self.ts[i + lo : i + hi], key[2], "right"))


class FleetFeed:
    """The fleet-wide receipts index of one source, by blocks of received time (thread-safe)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._ids: list[str] | None = None
        self._first_days: list[int | None] = []
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._lock = Lock()
        self.blocks_built = 0

    @property
    def ids(self) -> list[str]:
        """The fleet's device ids, sorted, with their first days: read on first use, not at start-up."""
        with self._lock:
            if self._ids is None:
                ids = self.source.fleet_ids()
                self._first_days = [self.source.first_day(device_id) for device_id in ids]
                self._ids = ids
            return self._ids

    def block(self, b: int) -> _Block:
        ids = self.ids
        with self._lock:
            found = self._blocks.get(b)
            if found is None:
                found = self._blocks[b] = self._build(b, ids)
                self.blocks_built += 1
                while len(self._blocks) > _BLOCKS_KEPT:
                    self._blocks.popitem(last=False)
            self._blocks.move_to_end(b)
            return found

    def _build(self, b: int, ids: list[str]) -> _Block:
        lo, hi = b * BLOCK_S, (b + 1) * BLOCK_S
        first_ts_day, last_day = (lo - self.source.max_delay_s) // DAY_S, (hi - 1) // DAY_S
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for pos, device_id in enumerate(ids):
            first = self._first_days[pos]
            if first is None:
                continue
            for day in range(max(first, first_ts_day), last_day + 1):
                ts, received, visible = self.source.receipts(device_id, day)
                inside = (received >= lo) & (received < hi)
                if inside.any():
                    n = int(inside.sum())
                    parts.append((received[inside], np.full(n, pos, np.int32), ts[inside], visible[inside]))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return _Block(empty, empty.astype(np.int32), empty, empty)
        received, device, ts, visible = (np.concatenate(column) for column in zip(*parts, strict=True))
        order = np.lexsort((ts, device, received))
        return _Block(received[order], device[order], ts[order], visible[order])


def changes_page(
    feed: FleetFeed,
    since: int,
    published: int | None,
    now: int,
    page_size: int,
    token: str | None,
) -> tuple[list[dict], str | None]:
    """One page of the fleet change feed: records visible by `now` that were received at or after
    `since`, or (with `published`) published after it, whenever received (within the source's
    publication lag). `published` is the `as_of` of the caller's previous sync: with it no sync has
    to re-read hours behind its cursor to catch records published late."""
    scope = f"changes:{since}:{published}"
    key: tuple[int, int, int] | None = None
    if token:
        payload = decode_token(token, scope)
        key = (int(payload["r"]), int(payload["d"]), int(payload["t"]))
    lower = since if published is None else min(since, published - feed.source.feed_lag_s)
    start = max(lower, key[0]) if key else lower
    want = page_size + 1
    picked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    count = 0
    b = start // BLOCK_S
    while b * BLOCK_S <= now and count < want:  # nothing received after `now` is visible yet
        block = feed.block(b)
        i = block.after(start, key)
        received, visible = block.received[i:], block.visible[i:]
        wanted = received >= since
        if published is not None:
            wanted |= visible > published
        idx = np.flatnonzero(wanted & (visible <= now))[: want - count] + i
        picked.append((block.received[idx], block.device[idx], block.ts[idx]))
        count += len(idx)
        b += 1
    if not picked:
        return [], None
    received, device, ts = (
        np.concatenate(column)[:page_size].tolist() for column in zip(*picked, strict=True)
    )
    wanted_ts: dict[tuple[int, int], set[int]] = defaultdict(set)
    for d, t in zip(device, ts, strict=True):
        wanted_ts[(d, t // DAY_S)].add(t)
    bodies = {}
    for (d, day), stamps in wanted_ts.items():
        for rec in feed.source.records_at(feed.ids[d], day, stamps):
            bodies[(d, rec.ts)] = rec.body
    data = [bodies[(d, t)] for d, t in zip(device, ts, strict=True)]
    more = count > page_size
    nxt = encode_token({"q": scope, "r": received[-1], "d": device[-1], "t": ts[-1]}) if more else None
    return data, nxt
