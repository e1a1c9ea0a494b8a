"""The vendor API over HTTP on 127.0.0.1: bearer auth, keyset pages, a clock, faults on demand.

Routes (all JSON; `page_size` 1..5000, default 1000; `next_page_token` is null on the last page):
  GET  /healthz                                    no auth
  GET  /v1/sites?page_size=&page_token=
  GET  /v1/devices?page_size=&page_token=          decommissioned devices carry status="decommissioned"
  GET  /v1/devices/{id}/readings?received_since=ISO&page_size=&page_token=
                                                   change feed ordered by (received_at, timestamp)
  GET  /v1/readings/changes?received_since=ISO[&published_since=ISO]&page_size=&page_token=
                                                   the fleet change feed: every device's records,
                                                   ordered by (received_at, device_id, timestamp);
                                                   with published_since (the `as_of` of the previous
                                                   sync) also those published since then
  POST /_admin/advance {"hours": 24}               moves the simulated clock; releases more data
  GET  /_admin/stats                               request counts per route (tests count pages)

`SimulatorServer` runs it in a thread on an ephemeral port (tests) or in the foreground (CLI).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.errors import InvalidEvent, NotFound
from shared.logging import get_logger
from simulator.faults import FaultPolicy
from simulator.feed import FleetFeed, Source, changes_page, entity_page, parse_page_size, readings_page
from simulator.fleet import iso, parse_iso

log = get_logger("simulator")
_READINGS = re.compile(r"^/v1/devices/([A-Za-z0-9_.-]{1,64})/readings$")
_MAX_ADVANCE_H = 24 * 366


class VendorApi:
    """Everything the handler needs, with the one piece of mutable state: the simulated clock."""

    def __init__(self, source: Source, api_key: str, faults: FaultPolicy | None = None) -> None:
        self.source = source
        self.api_key = api_key
        self.faults = faults or FaultPolicy()
        self.now = source.initial_now
        self.feed = FleetFeed(source)
        self._devices_at: tuple[int, list[dict]] | None = None
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    def advance(self, hours: float) -> int:
        with self._lock:
            self.now += int(hours * 3600)
            return self.now

    def _device_bodies(self, now: int) -> list[dict]:
        """The device list at `now`, built once per clock value: 100 pages of 1,000 at 100k devices
        rebuilt all 100k bodies for every page."""
        with self._lock:
            if self._devices_at is None or self._devices_at[0] != now:
                self._devices_at = (now, self.source.device_bodies(now))
            return self._devices_at[1]

    def count(self, route: str) -> None:
        with self._lock:
            self.stats[route] += 1

    def authorised(self, header: str | None) -> bool:
        supplied = (header or "").removeprefix("Bearer ").encode()
        return (
            header is not None
            and header.startswith("Bearer ")
            and hmac.compare_digest(supplied, self.api_key.encode())
        )

    def get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        now = self.now
        size = parse_page_size(query.get("page_size"))
        token = query.get("page_token")
        if path == "/v1/sites":
            self.count("sites")
            data, nxt = entity_page(self.source.site_bodies(), "site_id", size, token, "sites")
        elif path == "/v1/devices":
            self.count("devices")
            data, nxt = entity_page(self._device_bodies(now), "device_id", size, token, "devices")
        elif match := _READINGS.match(path):
            self.count("readings")
            since = _time_param(query, "received_since", required=True)
            assert since is not None
            data, nxt = readings_page(self.source, match.group(1), since, now, size, token)
        elif path == "/v1/readings/changes":
            self.count("changes")
            since = _time_param(query, "received_since", required=True)
            assert since is not None
            published = _time_param(query, "published_since", required=False)
            data, nxt = changes_page(self.feed, since, published, now, size, token)
        else:
            raise NotFound(f"no route {path}")
        return {"data": data, "next_page_token": nxt, "as_of": iso(now)}


def _time_param(query: dict[str, str], name: str, *, required: bool) -> int | None:
    text = query.get(name)
    if not text:
        if required:
            raise InvalidEvent(f"{name} (ISO 8601 UTC time) is required")
        return None
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise InvalidEvent(f"{name} is not an ISO 8601 time: {text!r}") from exc


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are counted in /_admin/stats; per-request access lines would drown the logs."""

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _fail(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": message}, headers)

    def do_GET(self) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._send(200, {"ok": True, "now": iso(api.now)})
        if not api.authorised(self.headers.get("Authorization")):
            return self._fail(401, "missing or wrong API key (Authorization: Bearer <key>)")
        if url.path == "/_admin/stats":
            stats = {"requests": dict(api.stats), "now": iso(api.now)}
            return self._send(200, {**stats, "fleet_blocks_built": api.feed.blocks_built})
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        fault = api.faults.draw(url.path) if url.path.startswith("/v1/") else None
        if fault == "rate_limited":
            api.count("fault_429")
            return self._fail(429, "rate limit exceeded", {"Retry-After": str(api.faults.retry_after_s)})
        if fault == "server_error":
            api.count("fault_5xx")
            return self._fail(503, "upstream meter gateway unavailable")
        if fault == "slow":
            api.count("fault_slow")
            time.sleep(api.faults.slow_s)
        try:
            self._send(200, api.get(url.path, query))
        except InvalidEvent as exc:
            self._fail(400, str(exc))
        except NotFound as exc:
            self._fail(404, str(exc))

    def do_POST(self) -> None:
        api = self.server.api
        if not api.authorised(self.headers.get("Authorization")):
            return self._fail(401, "missing or wrong API key (Authorization: Bearer <key>)")
        if urlsplit(self.path).path != "/_admin/advance":
            return self._fail(404, f"no route {self.path}")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            hours = float(body["hours"])
        except (ValueError, KeyError, TypeError):
            return self._fail(400, 'body must be JSON like {"hours": 24}')
        if not 0 < hours <= _MAX_ADVANCE_H:
            return self._fail(400, f"hours must be in (0, {_MAX_ADVANCE_H}]")
        now = api.advance(hours)
        log.info("clock advanced", extra={"hours": hours, "now": iso(now)})
        self._send(200, {"now": iso(now)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: VendorApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class SimulatorServer:
    """The API on 127.0.0.1; `port=0` picks a free port (in-process test fixtures)."""

    def __init__(self, api: VendorApi, port: int = 0, host: str = "127.0.0.1") -> None:
        self.api = api
        self._httpd = _Server((host, port), api)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"  # an AF_INET address: host is str

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="simulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
