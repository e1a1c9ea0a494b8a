"""Run the whole local stack as processes on 127.0.0.1: simulator, services, model server, dispatcher.

Each process is what runs in the cloud (functions-framework apps, the model-server container's
entry point) so the local stack exercises the same code paths. Children get the parent's settings
as GRIDSIGHT_* variables, log to `<home>/logs/<name>.log`, and are health-checked before the stack
counts as up. A child that dies is restarted (a few times), since the durable queue makes a
restart lose nothing. Stopping sends SIGTERM (dispatcher first, so nothing is pushed at a service
that is going away), waits, then SIGKILLs what is left. The pids go to `<home>/run/stack.json` so
`gridsight status` can report on a stack started from another terminal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests
from pydantic import BaseModel, Field, SecretStr

from shared.bus.local import QueueStore
from shared.logging import get_logger
from shared.settings import REPO_ROOT, Settings

__all__ = ["ProcessSpec", "StackOptions", "Supervisor", "settings_env", "stack_specs", "stack_state"]

log = get_logger("infra.local.supervisor")
_MAX_RESTARTS = 3
_STOP_GRACE_S = 10.0
HEARTBEAT_KEY = "dispatcher_heartbeat"


class StackOptions(BaseModel):
    """The simulated fleet the stack serves (its size decides how long a history sync takes)."""

    devices: int = Field(default=50, ge=1)
    days: int = Field(default=28, ge=1)
    seed: int = 7


class ProcessSpec(BaseModel):
    name: str
    argv: list[str]
    port: int | None = None
    extra_env: dict[str, str] = Field(default_factory=dict)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as GRIDSIGHT_* variables, so every child sees exactly what the parent sees."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        text = json.dumps(value) if isinstance(value, list | dict | tuple | set) else str(value)
        env[f"GRIDSIGHT_{name.upper()}"] = text
    return env


def _functions_framework() -> str:
    local = Path(sys.executable).with_name("functions-framework")
    return str(local) if local.exists() else "functions-framework"


def stack_specs(settings: Settings, options: StackOptions) -> list[ProcessSpec]:
    """Every process of the local stack whose code is present in this checkout, in start order."""
    py = sys.executable
    specs = [
        ProcessSpec(
            name="simulator",
            argv=[
                py,
                "-m",
                "infra.local.cli",
                "simulator",
                "serve",
                "--port",
                str(settings.simulator_port),
                "--devices",
                str(options.devices),
                "--days",
                str(options.days),
                "--seed",
                str(options.seed),
            ],
            port=settings.simulator_port,
        )
    ]
    for service in ("ingest", "forecast", "anomaly", "chat"):
        source = REPO_ROOT / "services" / service / "main.py"
        if not source.exists():
            log.warning("service not in this checkout; not started", extra={"service": service})
            continue
        port = getattr(settings, f"{service}_port")
        specs.append(
            ProcessSpec(
                name=service,
                argv=[
                    _functions_framework(),
                    "--source",
                    str(source),
                    "--target",
                    "app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                port=port,
            )
        )
    if importlib.util.find_spec("services.forecast.model_server") is not None:
        specs.append(
            ProcessSpec(
                name="model-server",
                argv=[py, "-m", "services.forecast.model_server"],
                port=settings.model_server_port,
                extra_env={
                    "AIP_HTTP_PORT": str(settings.model_server_port),
                    "AIP_HEALTH_ROUTE": "/health",
                    "AIP_PREDICT_ROUTE": "/predict",
                    "AIP_STORAGE_URI": str(settings.model_dir),
                },
            )
        )
    specs.append(ProcessSpec(name="dispatcher", argv=[py, "-m", "infra.local.dispatcher"]))
    return specs


def _state_path(settings: Settings) -> Path:
    return settings.home / "run" / "stack.json"


def stack_state(settings: Settings) -> dict[str, dict[str, object]]:
    """name -> {pid, port, alive, log} of the stack last started in this home (empty if none)."""
    path = _state_path(settings)
    if not path.exists():
        return {}
    state: dict[str, dict[str, object]] = json.loads(path.read_text())
    for entry in state.values():
        entry["alive"] = _alive(int(str(entry["pid"])))
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Child:
    def __init__(self, spec: ProcessSpec, log_file: IO[bytes]) -> None:
        self.spec = spec
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0


class Supervisor:
    def __init__(self, settings: Settings, specs: list[ProcessSpec]) -> None:
        self.settings = settings
        self.specs = specs
        self.log_dir = settings.home / "logs"
        self.children: dict[str, _Child] = {}
        self._env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Start the servers, wait until they answer, then the processes that call them (the
        dispatcher), so the first deliveries are not spent on connection errors."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        servers = [s for s in self.specs if s.port is not None]
        for group in (servers, [s for s in self.specs if s.port is None]):
            for spec in group:
                child = _Child(spec, (self.log_dir / f"{spec.name}.log").open("ab"))
                self.children[spec.name] = child
                self._spawn(child)
            self._write_state()
            if group is servers:
                self.wait_healthy(timeout_s)

    def _spawn(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            child.spec.argv,
            cwd=REPO_ROOT,
            env={**self._env, **child.spec.extra_env},
            stdout=child.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us only; we stop children in order
        )
        log.info("started", extra={"proc": child.spec.name, "pid": child.proc.pid})

    def wait_healthy(self, timeout_s: float = 60.0) -> dict[str, bool]:
        """Poll until every process answers (HTTP) or beats (dispatcher); raise if one never does."""
        deadline = time.monotonic() + timeout_s
        healthy = dict.fromkeys(self.children, False)
        while time.monotonic() < deadline:
            for name, child in self.children.items():
                if healthy[name]:
                    continue
                if child.proc is not None and child.proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with code {child.proc.returncode} during start-up; "
                        f"see {self.log_dir / (name + '.log')}"
                    )
                healthy[name] = self._is_healthy(child)
            if all(healthy.values()):
                return healthy
            time.sleep(0.2)  # polling a condition with a deadline, not sleeping as synchronisation
        missing = [n for n, ok in healthy.items() if not ok]
        raise RuntimeError(f"not healthy after {timeout_s:.0f} s: {missing}; logs in {self.log_dir}")

    def _is_healthy(self, child: _Child) -> bool:
        if child.spec.port is not None:
            try:
                requests.get(f"http://127.0.0.1:{child.spec.port}/healthz", timeout=1.0)
            except requests.RequestException:
                return False
            return True  # any HTTP answer (even 404) means the server is serving
        store = QueueStore.open(self.settings)
        try:
            beat = store.get_meta(HEARTBEAT_KEY)
        finally:
            store.close()
        return beat is not None and time.time() - float(beat) < 5.0 and child.proc is not None

    def check(self) -> list[str]:
        """Restart children that died; returns the names restarted. Raises after too many restarts."""
        restarted = []
        for name, child in self.children.items():
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.restarts >= _MAX_RESTARTS:
                raise RuntimeError(f"{name} keeps exiting (code {child.proc.returncode}); see its log")
            log.warning("process exited; restarting", extra={"proc": name, "code": child.proc.returncode})
            child.restarts += 1
            self._spawn(child)
            restarted.append(name)
        if restarted:
            self._write_state()
        return restarted

    def stop(self) -> None:
        order = sorted(self.children.values(), key=lambda c: c.spec.name != "dispatcher")
        for child in order:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for child in order:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time; killing", extra={"proc": child.spec.name})
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            child.log_file.close()
        with contextlib.suppress(FileNotFoundError):
            _state_path(self.settings).unlink()

    def kill(self, name: str) -> None:
        """SIGKILL one child (tests and the benchmark use it to prove crashes lose nothing)."""
        proc = self.children[name].proc
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _write_state(self) -> None:
        path = _state_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            name: {
                "pid": child.proc.pid if child.proc else None,
                "port": child.spec.port,
                "log": str(self.log_dir / f"{name}.log"),
            }
            for name, child in self.children.items()
        }
        path.write_text(json.dumps(state, indent=2))

    def __enter__(self) -> Supervisor:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
