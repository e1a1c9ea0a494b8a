"""What one incident alert costs the anomaly service, end to end on loopback: deliver_alert for N
incidents of distinct devices (read, decide, claim, deliver, stamp, 'sent' in a temporary DuckDB
warehouse) to a local webhook receiver, then again with an e-mail through a relay that needs
STARTTLS and AUTH (aiosmtpd, the tests' relay). Prints medians and p95 per alert; compare with the
Terraform worst case (locals.tf alert_worst_case_seconds: 27 s at the defaults, 87 s with e-mail)
the request timeout is sized for.

    nice -n 10 .venv/bin/python bench/bench_alerts.py --incidents 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "services" / "anomaly"))  # the tests' receiver and relay

from alert_receiver import SECRET, Receiver, put_incident
from smtp_relay import PASSWORD, USER, start_relay


@dataclass(frozen=True)
class _Ctx:
    settings: object


def _run(label: str, n: int, mail: bool, folder: Path) -> tuple[float, float]:
    from services.anomaly.alerts import AlertSettings, deliver_alert
    from shared.settings import Settings

    home = folder / label
    home.mkdir()
    os.environ["GRIDSIGHT_HOME"] = str(home)
    settings = Settings()
    receiver = Receiver()
    receiver.thread.start()
    relay, controller = start_relay(folder) if mail else (None, None)
    cfg = AlertSettings(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        min_severity="low",
        smtp_host="127.0.0.1" if mail else None,
        smtp_port=relay.port if relay else 25,
        smtp_username=USER if mail else None,
        smtp_password=PASSWORD,
        smtp_ca_file=str(folder / "ca.pem") if mail else None,
        mail_to="ops@example.org" if mail else None,
    )
    now = datetime.now(UTC)
    events = [put_incident(settings, f"inc-{i}", detected_at=now, device_id=f"dev-{i}") for i in range(n)]
    times = []
    try:
        for event in events:
            started = time.perf_counter()
            outcome = deliver_alert(event, _Ctx(settings), cfg=cfg)  # type: ignore[arg-type]
            times.append(1000 * (time.perf_counter() - started))
            assert outcome.status == "sent", outcome
    finally:
        receiver.stop()
        if controller:
            controller.stop()
    assert len(receiver.calls) == n
    if relay:
        assert len(relay.messages) == n
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        web = _run("webhook", args.incidents, False, folder)
        both = _run("webhook+mail", args.incidents, True, folder)
    print(f"alerts per run: {args.incidents} (distinct devices, all 'sent')")
    print(f"webhook only:                   median {web[0]:.1f} ms  p95 {web[1]:.1f} ms")
    print(f"webhook + STARTTLS/AUTH e-mail: median {both[0]:.1f} ms  p95 {both[1]:.1f} ms")
    print(f"e-mail adds (medians):          {both[0] - web[0]:.1f} ms, ratio {both[0] / web[0]:.2f}")


if __name__ == "__main__":
    main()
