"""The embedded bus: a durable SQLite queue that the local dispatcher delivers from.

Publishing fans the message out to one delivery row per subscription of its topic in one
transaction, so once `publish` returns the message survives a crash of any process. SQLite in WAL
mode lets every service publish while the dispatcher leases deliveries; `synchronous=NORMAL` is
durable against process crashes (only a power cut can lose the last commit), which is what the
local runtime needs. Delivery state lives here too, so a restarted dispatcher resumes where the
killed one stopped:

    pending --lease--> leased --2xx--> acked
       ^                  |--nack, attempts < max--> pending (next_attempt_at = now + backoff)
       |                  `--nack, attempts = max--> dead (copied to <subscription>-dead-letter)
       `------------------- replay (gridsight dead-letters replay) ---------------------'
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from shared.bus.base import check_topic
from shared.events import Event, encode_event
from shared.settings import Settings
from shared.topology import Subscription, Topology, load_topology

__all__ = [
    "DeadLetter",
    "Lease",
    "LocalPublisher",
    "Outcome",
    "QueueStore",
    "SubscriptionStats",
    "effective_subscription",
    "queue_path",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    publish_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(message_id),
    state TEXT NOT NULL,              -- pending | acked | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    leased_until REAL,
    last_status INTEGER,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    topic TEXT NOT NULL,
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    dead_lettered_at REAL NOT NULL,
    replayed_at REAL,
    PRIMARY KEY (subscription, message_id, dead_lettered_at)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def queue_path(settings: Settings) -> Path:
    return settings.queue_dir / "bus.sqlite3"


def effective_subscription(sub: Subscription, settings: Settings) -> Subscription:
    """events.yaml values, with the local overrides from settings (so tests and the demo are quick)."""
    update: dict[str, float | int] = {}
    if settings.bus_min_backoff_s is not None:
        update["min_backoff_seconds"] = settings.bus_min_backoff_s
    if settings.bus_max_backoff_s is not None:
        update["max_backoff_seconds"] = settings.bus_max_backoff_s
    if settings.bus_max_delivery_attempts is not None:
        update["max_delivery_attempts"] = settings.bus_max_delivery_attempts
    if settings.bus_ack_deadline_s is not None:
        update["ack_deadline_seconds"] = settings.bus_ack_deadline_s
    return sub.model_copy(update=update)


class Lease(BaseModel):
    """One delivery the dispatcher owns until `leased_until` (the ack deadline)."""

    subscription: str
    message_id: str
    topic: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str
    attempt: int


class Outcome(BaseModel):
    """How one delivery ended: acked, or nacked with a retry time (None = dead-letter it)."""

    lease: Lease
    status: int | None
    acked: bool
    error: str | None = None
    retry_at: float | None = None


class SubscriptionStats(BaseModel):
    subscription: str
    pending: int = 0
    retrying: int = 0
    in_flight: int = 0
    acked: int = 0
    dead: int = 0


class DeadLetter(BaseModel):
    topic: str
    subscription: str
    message_id: str
    event_type: str | None
    correlation_id: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    dead_lettered_at: datetime


class QueueStore:
    """All queue state, one short transaction per call; safe to use from several processes."""

    def __init__(self, path: Path, topology: Topology) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.topology = topology
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)

    @classmethod
    def open(cls, settings: Settings, topology: Topology | None = None) -> QueueStore:
        return cls(queue_path(settings), topology or load_topology())

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- publishing ------------------------------------------------------------------------------
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Store the message and one pending delivery per subscription, atomically."""
        message_id = uuid.uuid4().hex
        now = time.time()
        subscriptions = self.topology.subscriptions_of(topic)
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                (message_id, topic, data, json.dumps(attributes), datetime.now(UTC).isoformat()),
            )
            db.executemany(
                "INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at)"
                " VALUES (?, ?, 'pending', ?, ?)",
                [(name, message_id, now, now) for name in subscriptions],
            )
        return message_id

    # --- delivering ------------------------------------------------------------------------------
    def lease_due(
        self, limit: int, ack_deadline_s: dict[str, float], now: float | None = None
    ) -> list[Lease]:
        """Take up to `limit` due deliveries, counting the attempt before it is made (as Pub/Sub
        does), so a delivery cut short by a crash still counts towards the dead-letter limit."""
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.subscription, d.message_id, d.attempts, m.topic, m.data, m.attributes,"
                " m.publish_time FROM deliveries d JOIN messages m USING (message_id)"
                " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
                " AND (d.leased_until IS NULL OR d.leased_until < ?)"
                " ORDER BY d.next_attempt_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            leases = []
            for sub, mid, attempts, topic, data, attrs, ptime in rows:
                deadline = now + ack_deadline_s.get(sub, 600.0)
                db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, leased_until = ?, updated_at = ?"
                    " WHERE subscription = ? AND message_id = ?",
                    (deadline, now, sub, mid),
                )
                leases.append(
                    Lease(
                        subscription=sub,
                        message_id=mid,
                        topic=topic,
                        data=data,
                        attributes=json.loads(attrs),
                        publish_time=ptime,
                        attempt=attempts + 1,
                    )
                )
        return leases

    def ack(self, lease: Lease, status: int) -> None:
        self.settle([Outcome(lease=lease, status=status, acked=True)])

    def nack(self, lease: Lease, status: int | None, error: str, *, retry_at: float | None) -> None:
        """Schedule a redelivery at `retry_at`, or dead-letter the message when it is None."""
        self.settle([Outcome(lease=lease, status=status, acked=False, error=error, retry_at=retry_at)])

    def settle(self, outcomes: list[Outcome]) -> None:
        """Record the result of several deliveries in one transaction (the dispatcher's hot path)."""
        if not outcomes:
            return
        now = time.time()
        with self._tx() as db:
            for o in outcomes:
                key = (o.lease.subscription, o.lease.message_id)
                error = (o.error or "")[:2000] or None
                if o.acked:
                    db.execute(
                        "UPDATE deliveries SET state = 'acked', leased_until = NULL, last_status = ?,"
                        " last_error = NULL, updated_at = ? WHERE subscription = ? AND message_id = ?",
                        (o.status, now, *key),
                    )
                elif o.retry_at is not None:
                    db.execute(
                        "UPDATE deliveries SET leased_until = NULL, next_attempt_at = ?, last_status = ?,"
                        " last_error = ?, updated_at = ? WHERE subscription = ? AND message_id = ?",
                        (o.retry_at, o.status, error, now, *key),
                    )
                else:
                    db.execute(
                        "UPDATE deliveries SET state = 'dead', leased_until = NULL, last_status = ?,"
                        " last_error = ?, updated_at = ? WHERE subscription = ? AND message_id = ?",
                        (o.status, error, now, *key),
                    )
                    db.execute(
                        "INSERT INTO dead_letters (topic, subscription, message_id, attempts, last_status,"
                        " last_error, dead_lettered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            self.topology.dead_letter_topic(o.lease.subscription),
                            *key,
                            o.lease.attempt,
                            o.status,
                            error,
                            now,
                        ),
                    )

    def release_leases(self) -> int:
        """Make every leased delivery due now: called by a dispatcher starting after a crash, since
        only one dispatcher runs at a time and its predecessor's HTTP calls died with it."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE deliveries SET leased_until = NULL, next_attempt_at = MIN(next_attempt_at, ?)"
                " WHERE state = 'pending' AND leased_until IS NOT NULL",
                (time.time(),),
            )
            return cur.rowcount

    def next_due_at(self) -> float | None:
        row = self._conn.execute(
            "SELECT MIN(COALESCE(MAX(next_attempt_at, leased_until), next_attempt_at))"
            " FROM deliveries WHERE state = 'pending'"
        ).fetchone()
        return row[0] if row else None

    # --- dead letters ----------------------------------------------------------------------------
    def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT l.topic, l.subscription, l.message_id, m.attributes, l.attempts, l.last_status,"
            " l.last_error, l.dead_lettered_at FROM dead_letters l JOIN messages m USING (message_id)"
            " WHERE l.replayed_at IS NULL AND (? IS NULL OR l.subscription = ?)"
            " ORDER BY l.dead_lettered_at",
            (subscription, subscription),
        ).fetchall()
        out = []
        for topic, sub, mid, attrs, attempts, status, error, at in rows:
            attributes = json.loads(attrs)
            out.append(
                DeadLetter(
                    topic=topic,
                    subscription=sub,
                    message_id=mid,
                    event_type=attributes.get("type"),
                    correlation_id=attributes.get("correlation_id"),
                    attempts=attempts,
                    last_status=status,
                    last_error=error,
                    dead_lettered_at=datetime.fromtimestamp(at, UTC),
                )
            )
        return out

    def replay_dead_letters(self, subscription: str | None = None) -> int:
        """Send dead-lettered messages to their subscription again, with a fresh attempt budget."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT subscription, message_id FROM dead_letters"
                " WHERE replayed_at IS NULL AND (? IS NULL OR subscription = ?)",
                (subscription, subscription),
            ).fetchall()
            for sub, mid in rows:
                db.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                    " leased_until = NULL, updated_at = ? WHERE subscription = ? AND message_id = ?",
                    (now, now, sub, mid),
                )
            db.execute(
                "UPDATE dead_letters SET replayed_at = ? WHERE replayed_at IS NULL"
                " AND (? IS NULL OR subscription = ?)",
                (now, subscription, subscription),
            )
        return len(rows)

    # --- status ----------------------------------------------------------------------------------
    def stats(self) -> list[SubscriptionStats]:
        now = time.time()
        by_sub = {name: SubscriptionStats(subscription=name) for name in self.topology.subscriptions}
        rows = self._conn.execute(
            "SELECT subscription,"
            " SUM(state = 'pending' AND attempts = 0 AND (leased_until IS NULL OR leased_until < ?)),"
            " SUM(state = 'pending' AND attempts > 0 AND (leased_until IS NULL OR leased_until < ?)),"
            " SUM(state = 'pending' AND leased_until >= ?),"
            " SUM(state = 'acked'), SUM(state = 'dead')"
            " FROM deliveries GROUP BY subscription",
            (now, now, now),
        ).fetchall()
        for sub, pending, retrying, in_flight, acked, dead in rows:
            by_sub[sub] = SubscriptionStats(
                subscription=sub,
                pending=pending or 0,
                retrying=retrying or 0,
                in_flight=in_flight or 0,
                acked=acked or 0,
                dead=dead or 0,
            )
        return list(by_sub.values())

    def unsettled(self) -> int:
        """Deliveries not yet acked or dead-lettered (due, waiting for a retry, or in flight)."""
        row = self._conn.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()
        return int(row[0])

    def delivery_states(self) -> list[tuple[str, str, str, int]]:
        """(subscription, message_id, state, attempts) of every delivery, for tests and reports."""
        return [
            (s, m, st, a)
            for s, m, st, a in self._conn.execute(
                "SELECT subscription, message_id, state, attempts FROM deliveries ORDER BY rowid"
            ).fetchall()
        ]

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None


class LocalPublisher:
    """Publisher onto the local durable queue; the dispatcher process pushes from there."""

    def __init__(
        self, settings: Settings, topology: Topology | None = None, source: str = "gridsight"
    ) -> None:
        self.topology = topology or load_topology()
        self.store = QueueStore(queue_path(settings), self.topology)
        self.source = source

    def publish(self, event: Event, *, correlation_id: str | None = None) -> str:
        topic = check_topic(self.topology, event)
        data, attributes = encode_event(event, correlation_id=correlation_id, source=self.source)
        return self.store.publish(topic, data, attributes)

    def close(self) -> None:
        self.store.close()
