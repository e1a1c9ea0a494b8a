"""The whole local path: incidents published on the bus, the dispatcher pushing them in parallel (8
workers) to the anomaly service on loopback, the service posting to a local receiver. A device
whose incidents are all published at once (a backfill, a flapping meter) still alerts once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import functions_framework
import pytest
from alert_receiver import SECRET, Receiver, put_incident
from anomaly_fleet import read_anomalies
from werkzeug.serving import make_server

from shared.bus import open_publisher
from shared.settings import REPO_ROOT, Settings
from tests.infra.local.loopback import dispatching, settled, wait_until


def test_parallel_deliveries_of_one_device_send_one_alert(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    receiver.thread.start()
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("GRIDSIGHT_ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GRIDSIGHT_ALERT_MIN_SEVERITY", "low")
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / "services/anomaly/main.py"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        now = datetime.now(UTC)  # the scorer stamps detected_at with the time it ran: just now
        severities = ["medium", "low", "high", "medium", "high", "low"]
        events = [
            put_incident(settings, f"inc-{i}", severity=s, detected_at=now, start=f"2024-02-{10 + i} 09:00")
            for i, s in enumerate(severities)
        ]
        events.append(put_incident(settings, "other", severity="low", detected_at=now, device_id="dev-4"))
        publisher = open_publisher(settings)
        for event in events:
            publisher.publish(event)
        publisher.close()
        with dispatching(settings, {"anomaly": f"http://127.0.0.1:{server.server_port}"}):
            wait_until(settled(settings), timeout_s=60, what="every alert push acknowledged")
    finally:
        server.shutdown()
        receiver.stop()
    # dev-2: the two highs come first, and of them the smaller id (inc-2); dev-4 alerts on its own.
    assert sorted(b["incident_id"] for b in receiver.bodies()) == ["inc-2", "other"]
    assert receiver.all_signed()
    status = dict(zip(*read_anomalies(settings)[["incident_id", "alert_status"]].T.values, strict=True))
    assert status == {
        "inc-0": "suppressed",
        "inc-1": "suppressed",
        "inc-2": "sent",
        "inc-3": "suppressed",
        "inc-4": "suppressed",
        "inc-5": "suppressed",
        "other": "sent",
    }
