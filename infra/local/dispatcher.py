"""The local stand-in for Pub/Sub push subscriptions, reading the same infra/events.yaml.

It copies what services can observe of Pub/Sub (DESIGN.md "Pub/Sub push semantics"): the push
envelope with `deliveryAttempt`, ack on 102/200/201/202/204, nack on anything else or a timeout
(the subscription's ack deadline), redelivery after exponential backoff between the minimum and
maximum, the dead-letter topic after max delivery attempts, at-least-once and unordered delivery.
All state is in the durable queue (shared/bus/local.py), so SIGKILL of this process or of a service
loses nothing: a restarted dispatcher makes the killed one's in-flight deliveries due again.

Run it with `python -m infra.local.dispatcher` (the supervisor does); only one runs per home.
"""

from __future__ import annotations

import base64
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import FrameType

import requests
from filelock import FileLock, Timeout

from shared.bus.local import Lease, Outcome, QueueStore, effective_subscription, queue_path
from shared.logging import bind_correlation_id, configure_logging, get_logger
from shared.push import local_push_token
from shared.settings import Settings
from shared.topology import Subscription, Topology, load_topology

__all__ = ["ACK_CODES", "Dispatcher", "DispatcherBusy", "backoff_seconds", "push_body", "service_urls"]

ACK_CODES = frozenset({102, 200, 201, 202, 204})
HEARTBEAT_KEY = "dispatcher_heartbeat"
_HEARTBEAT_EVERY_S = 1.0
log = get_logger("infra.local.dispatcher")


class DispatcherBusy(RuntimeError):
    """Another dispatcher owns this queue; two would deliver every message twice as often."""


def backoff_seconds(sub: Subscription, attempt: int) -> float:
    """Delay before redelivering after failed attempt number `attempt` (1-based), as Pub/Sub does."""
    return float(min(sub.max_backoff_seconds, sub.min_backoff_seconds * 2 ** max(attempt - 1, 0)))


def push_body(lease: Lease, project: str) -> dict[str, object]:
    return {
        "message": {
            "data": base64.b64encode(lease.data).decode(),
            "attributes": lease.attributes,
            "messageId": lease.message_id,
            "message_id": lease.message_id,
            "publishTime": lease.publish_time,
        },
        "subscription": f"projects/{project}/subscriptions/{lease.subscription}",
        "deliveryAttempt": lease.attempt,
    }


def service_urls(settings: Settings, topology: Topology) -> dict[str, str]:
    """service name -> http://127.0.0.1:<port>, ports from settings as events.yaml names them."""
    return {
        name: f"http://127.0.0.1:{getattr(settings, spec.port_setting)}"
        for name, spec in topology.services.items()
    }


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        topology: Topology | None = None,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.topology = topology or load_topology()
        self.subscriptions = {
            n: effective_subscription(s, settings) for n, s in self.topology.subscriptions.items()
        }
        self.endpoints = dict(endpoints or service_urls(settings, self.topology))
        self.store = QueueStore(queue_path(settings), self.topology)
        self._lock = FileLock(str(settings.queue_dir / "dispatcher.lock"))
        self._local = threading.local()
        self.delivered = 0
        # presented on every push, as Pub/Sub presents its OIDC token (shared/push.py checks it)
        self._headers = {"Authorization": f"Bearer {local_push_token(settings)}"}

    # --- one delivery (worker thread) ------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _deliver(self, lease: Lease) -> tuple[Lease, int | None, str]:
        sub = self.subscriptions[lease.subscription]
        url = self.endpoints[sub.service] + sub.path
        try:
            response = self._session().post(
                url,
                json=push_body(lease, self.settings.gcp_project),
                headers=self._headers,
                timeout=sub.ack_deadline_seconds,
            )
        except requests.RequestException as exc:
            return lease, None, f"{type(exc).__name__}: {exc}"
        return lease, response.status_code, response.text[:500]

    # --- bookkeeping (dispatcher thread) ---------------------------------------------------------
    def _outcome(self, lease: Lease, status: int | None, text: str) -> Outcome:
        sub = self.subscriptions[lease.subscription]
        facts = {
            "subscription": lease.subscription,
            "message_id": lease.message_id,
            "delivery_attempt": lease.attempt,
            "status": status,
        }
        with bind_correlation_id(lease.attributes.get("correlation_id")):
            if status in ACK_CODES:
                self.delivered += 1
                log.debug("delivered", extra=facts)
                return Outcome(lease=lease, status=status, acked=True)
            error = text or "no response"
            if lease.attempt >= sub.max_delivery_attempts:
                log.error(
                    "dead-lettered",
                    extra={**facts, "dead_letter_topic": self.topology.dead_letter_topic(lease.subscription)},
                )
                return Outcome(lease=lease, status=status, acked=False, error=error, retry_at=None)
            delay = backoff_seconds(sub, lease.attempt)
            log.warning("nacked; will redeliver", extra={**facts, "retry_in_s": delay, "reason": error[:200]})
            return Outcome(lease=lease, status=status, acked=False, error=error, retry_at=time.time() + delay)

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; in-flight deliveries finish (or time out) before returning."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout as exc:
            raise DispatcherBusy(f"another dispatcher holds {self._lock.lock_file}") from exc
        try:
            released = self.store.release_leases()
            if released:
                log.info(
                    "resumed deliveries left in flight by a previous dispatcher", extra={"count": released}
                )
            self._loop(stop)
        finally:
            self._lock.release()

    def _loop(self, stop: threading.Event) -> None:
        workers = self.settings.dispatcher_workers
        deadlines = {n: float(s.ack_deadline_seconds) for n, s in self.subscriptions.items()}
        in_flight: set[Future[tuple[Lease, int | None, str]]] = set()
        last_beat = 0.0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push") as pool:
            while not stop.is_set() or in_flight:
                now = time.time()
                if now - last_beat >= _HEARTBEAT_EVERY_S:
                    self.store.set_meta(HEARTBEAT_KEY, str(now))
                    last_beat = now
                if not stop.is_set() and len(in_flight) < workers:
                    for lease in self.store.lease_due(workers - len(in_flight), deadlines):
                        in_flight.add(pool.submit(self._deliver, lease))
                if not in_flight:
                    stop.wait(self.settings.dispatcher_poll_s)
                    continue
                done, in_flight = wait(
                    in_flight, timeout=self.settings.dispatcher_poll_s, return_when=FIRST_COMPLETED
                )
                self.store.settle([self._outcome(*future.result()) for future in done])

    def close(self) -> None:
        self.store.close()


def main() -> None:
    configure_logging()
    settings = Settings()
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    dispatcher = Dispatcher(settings)
    log.info(
        "dispatcher started", extra={"queue": str(queue_path(settings)), "endpoints": dispatcher.endpoints}
    )
    try:
        dispatcher.run(stop)
    finally:
        dispatcher.close()


if __name__ == "__main__":
    main()
