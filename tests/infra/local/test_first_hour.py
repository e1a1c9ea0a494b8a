"""The README's "first hour" walkthrough, run as written: the commands are read from README.md
(between the first-hour markers), so the README cannot drift from what works.

Each line runs in bash from the repository root with the test's environment on the PATH (what
`source .venv/bin/activate` does) and its own home and ports; the line marked "terminal 2" runs in
the background until the end, then gets Ctrl-C as the README says.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.local.demo import wait_settled
from infra.local.ports import free_port
from shared.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.slow
SERVICES = ("SIMULATOR", "INGEST", "FORECAST", "ANOMALY", "CHAT", "MODEL_SERVER")


def walkthrough() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- first-hour:start -->\n```bash\n(.*?)```\n<!-- first-hour:end -->", text, re.S)
    assert block, "README.md has no first-hour block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _command(line: str) -> str:
    return re.split(r"\s{2,}#", line)[0].strip()  # comments sit two or more spaces after the command


class Background:
    """A long-running command whose output is read as it comes (to see when it is ready)."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.2)  # polling its output, with a deadline

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=5)
        return code


def test_the_first_hour_walkthrough_runs_as_written(settings: Settings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COLUMNS": "160",
        "PYTHONPATH": str(REPO_ROOT),
        "GRIDSIGHT_HOME": str(settings.home),
        **{f"GRIDSIGHT_{name}_PORT": str(free_port()) for name in SERVICES},
    }
    transcript: list[str] = []
    background: Background | None = None
    try:
        for line in walkthrough():
            command = _command(line)
            transcript.append(f"$ {command}")
            if command == "source .venv/bin/activate":
                env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
                continue
            assert command.startswith("gridsight "), f"not a gridsight command: {line}"
            if "terminal 2" in line:
                background = Background(command, env)
                background.wait_for("next:", timeout_s=120)
                transcript.append("".join(background.lines).rstrip() + "\n  (left running)")
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
            )
            shown = done.stdout + done.stderr
            transcript.append(shown.rstrip())
            assert done.returncode == 0, "\n".join(transcript)
            assert "Traceback" not in shown, shown
        assert background is not None, "the walkthrough starts a stack in terminal 2"
        wait_settled(Settings(home=settings.home, **_ports(env)), timeout_s=300)
        forecast_runs = subprocess.run(
            [
                "bash",
                "-c",
                'gridsight query --json "SELECT COUNT(DISTINCT made_at) AS n FROM '
                'energy_analytics.forecasts"',
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert json.loads(forecast_runs.stdout)[0]["n"] == 2  # the demo's, then the synced day's
    finally:
        if background is not None:
            code = background.interrupt()
            transcript.append("".join(background.lines[-2:]).rstrip())
            (tmp_path / "transcript.txt").write_text("\n".join(transcript) + "\n")
            print("\n".join(transcript))
    assert code == 0
    assert "stopped" in "".join(background.lines[-3:])
    demo_out = transcript[transcript.index("$ gridsight demo --devices 4 --days 28") + 1]
    assert "failed" not in demo_out
    sync_out = transcript[transcript.index("$ gridsight sync") + 1]
    assert "sync_end webhook: published" in sync_out


def _ports(env: dict[str, str]) -> dict[str, int]:
    return {f"{name.lower()}_port": int(env[f"GRIDSIGHT_{name}_PORT"]) for name in SERVICES}
