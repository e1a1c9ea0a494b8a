"""What the alert tests deliver to: a local webhook receiver that checks signatures the way the
docs tell a real one to (computed here, independently of the code under test), and incident rows
written straight to the warehouse when a test needs several of one device."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from shared.events import AnomaliesDetected
from shared.settings import Settings
from shared.warehouse import open_warehouse

SECRET = "test-alert-secret"


def expected_signature(headers: dict[str, str], raw: bytes, secret: str = SECRET) -> str:
    """hex HMAC-SHA256 of "<X-Gridsight-Timestamp>.<raw body>" (README "Alerts")."""
    signed = headers["X-Gridsight-Timestamp"].encode() + b"." + raw
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class Receiver:
    """A local webhook endpoint: records each POST; answers with the next scripted status (and
    headers), 204 once the script is used up."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int | tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                step = receiver.script.pop(0) if receiver.script else 204
                status, headers = step if isinstance(step, tuple) else (step, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.calls]

    def all_signed(self) -> bool:
        return all(h["X-Gridsight-Signature-256"] == expected_signature(h, raw) for h, raw in self.calls)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def put_incident(
    settings: Settings,
    incident_id: str,
    *,
    severity: str = "medium",
    detected_at: datetime,
    device_id: str = "dev-2",
    start: str = "2024-02-12 09:00",
) -> AnomaliesDetected:
    """One incident row as the scorer writes it, and the event it would publish."""
    start_hour = pd.Timestamp(start, tz="UTC")
    row = {
        "incident_id": incident_id,
        "device_id": device_id,
        "start_hour": start_hour,
        "end_hour": start_hour + pd.Timedelta(hours=3),
        "anomaly_type": "level_shift",
        "severity": severity,
        "score": 0.9,
        "expected": 10.0,
        "actual": 17.0,
        "explanation": "level shift: 17.0 kWh/h against 10.0 kWh/h expected",
        "detected_at": pd.Timestamp(detected_at),
        "probability": 0.8,
        "energy_at_stake_kwh": 21.0,
        "cost_at_stake": 6.3,
        "status": "open",
    }
    with open_warehouse(settings) as wh:
        wh.merge("anomalies", pd.DataFrame([row]), key=["incident_id"])
    return AnomaliesDetected(
        incident_id=incident_id,
        device_id=device_id,
        anomaly_type="level_shift",
        severity=severity,  # type: ignore[arg-type]
        score=0.9,
        start_hour=start_hour.to_pydatetime(),
        end_hour=(start_hour + pd.Timedelta(hours=3)).to_pydatetime(),
        explanation=row["explanation"],  # type: ignore[arg-type]
    )
