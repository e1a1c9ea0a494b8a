"""Run the whole local stack as processes on 127.0.0.1: simulator, services, model server, dispatcher.

Each process is what runs in the cloud (functions-framework apps, the model-server container's
entry point) so the local stack exercises the same code paths. Children get the parent's settings
as GRIDSIGHT_* variables, log to `<home>/logs/<name>.log`, and are health-checked before the stack
counts as up. A child that dies is restarted (a few times), since the durable queue makes a
restart lose nothing. Stopping sends SIGTERM (dispatcher first, so nothing is pushed at a service
that is going away), waits, then SIGKILLs what is left. The pids go to `<home>/run/stack.json` so
`gridsight status` can report on a stack started from another terminal.

One stack per home: the supervisor holds `<home>/run/stack.lock` (an OS lock, released when the
process dies however it dies) for as long as it runs, so a second `gridsight up` on the same home
is refused with the first one's addresses before it starts anything, and can never remove the
first one's `stack.json`. Ports that something else already listens on are reported up front too.
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
from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, SecretStr

from infra.local.ports import port_is_free
from shared.bus.local import QueueStore
from shared.logging import get_logger
from shared.settings import REPO_ROOT, Settings

__all__ = [
    "PortsInUse",
    "ProcessSpec",
    "StackFailed",
    "StackOptions",
    "StackRunning",
    "Supervisor",
    "ports_in_use",
    "replay_start_date",
    "running_start_date",
    "settings_env",
    "stack_settings",
    "stack_specs",
    "stack_state",
]

log = get_logger("infra.local.supervisor")
_MAX_RESTARTS = 3
_STOP_GRACE_S = 10.0
HEARTBEAT_KEY = "dispatcher_heartbeat"


class StackOptions(BaseModel):
    """What the stack's vendor API serves: a simulated fleet (its size decides how long a history
    sync takes) or, with `replay`, a real meters CSV (devices and seed then do not apply)."""

    devices: int = Field(default=50, ge=1)
    days: int = Field(default=28, ge=1)
    seed: int = 7
    replay: Path | None = Field(default=None, description="meter_id,timestamp_utc,kwh CSV to serve")
    weather: Path | None = Field(default=None, description="weather CSV for replay")


def replay_start_date(meters_csv: Path) -> str:
    """The first UTC day of a meters CSV: where the connector's first sync must start."""
    import pandas as pd  # only replay needs it; keeps `gridsight status` quick to start

    first = pd.read_csv(meters_csv, usecols=["timestamp_utc"])["timestamp_utc"].min()
    return str(pd.Timestamp(first).tz_localize(None).date()) if pd.notna(first) else "1970-01-01"


def stack_settings(settings: Settings, options: StackOptions) -> Settings:
    """The settings the stack's processes (and its syncs) run with: replayed data starts when the
    data starts, unless GRIDSIGHT_CONNECTOR_START_DATE says otherwise."""
    if options.replay is None or "connector_start_date" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"connector_start_date": replay_start_date(options.replay)})


def running_start_date(settings: Settings) -> str | None:
    """The connector start date the stack running from this home was started with, if any."""
    state = _read_state(settings)
    pid, value = state.get("supervisor_pid"), state.get("connector_start_date")
    if not value or not pid or not _alive(int(str(pid))):
        return None  # no stack, or a record left behind by one that died
    return str(value)


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
                "--days",
                str(options.days),
                *_source_args(options),
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


class StackRunning(RuntimeError):
    """Another supervisor holds this home's stack lock."""

    def __init__(self, home: Path, supervisor_pid: int | None, urls: dict[str, str]) -> None:
        self.home, self.supervisor_pid, self.urls = home, supervisor_pid, urls
        who = f" (supervisor pid {supervisor_pid})" if supervisor_pid else ""
        super().__init__(f"a gridsight stack is already running from {home}{who}")


class PortsInUse(RuntimeError):
    """Ports of this stack that something else already listens on (name -> port)."""

    def __init__(self, taken: dict[str, int]) -> None:
        self.taken = taken
        listed = ", ".join(f"{port} ({name})" for name, port in taken.items())
        super().__init__(f"port(s) already in use on 127.0.0.1: {listed}")


class StackFailed(RuntimeError):
    """A child exited or never answered during start-up, or keeps exiting; the message names its log."""


def _source_args(options: StackOptions) -> list[str]:
    if options.replay is None:
        return ["--devices", str(options.devices), "--seed", str(options.seed)]
    return [
        "--replay",
        str(options.replay),
        *(["--weather", str(options.weather)] if options.weather else []),
    ]


def _state_path(settings: Settings) -> Path:
    return settings.home / "run" / "stack.json"


def _lock_path(settings: Settings) -> Path:
    return settings.home / "run" / "stack.lock"


def _read_state(settings: Settings) -> dict[str, object]:
    try:
        state: dict[str, object] = json.loads(_state_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state


def stack_state(settings: Settings) -> dict[str, dict[str, object]]:
    """name -> {pid, port, alive, log} of the stack last started in this home (empty if none)."""
    raw = _read_state(settings).get("processes", {})
    state: dict[str, dict[str, object]] = dict(raw) if isinstance(raw, dict) else {}
    for entry in state.values():
        pid = entry.get("pid")
        entry["alive"] = pid is not None and _alive(int(str(pid)))
    return state


def ports_in_use(specs: list[ProcessSpec]) -> dict[str, int]:
    """name -> port for every spec whose port something already listens on (bind test, as the
    servers themselves bind: SO_REUSEADDR, so a port in TIME_WAIT after the last stack counts as free)."""
    return {spec.name: spec.port for spec in specs if spec.port is not None and not port_is_free(spec.port)}


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
    def __init__(
        self, settings: Settings, specs: list[ProcessSpec], *, deferred: frozenset[str] = frozenset()
    ) -> None:
        """`deferred` names processes start() leaves out until start_deferred() (their ports are
        still checked up front): the demo starts the forecast service once a model exists."""
        self.settings = settings
        self.specs = specs
        self.deferred = deferred
        self.log_dir = settings.home / "logs"
        self.children: dict[str, _Child] = {}
        self._env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        self._lock: FileLock | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def claim(self) -> None:
        """Take this home's stack lock and check the ports, before anything starts.

        Raises StackRunning (with the running stack's addresses) or PortsInUse; either way this
        supervisor owns nothing afterwards, so its stop() touches nothing."""
        path = _lock_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise self._running() from exc
        taken = ports_in_use(self.specs)
        if taken:
            lock.release()
            raise PortsInUse(taken)
        self._lock = lock

    def _running(self) -> StackRunning:
        state = _read_state(self.settings)
        pid = state.get("supervisor_pid")
        urls = {
            name: f"http://127.0.0.1:{entry['port']}"
            for name, entry in stack_state(self.settings).items()
            if entry.get("port")
        }
        return StackRunning(self.settings.home, int(str(pid)) if pid else None, urls)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the servers, wait until they answer, then the processes that call them (the
        dispatcher), so the first deliveries are not spent on connection errors."""
        if self._lock is None:
            self.claim()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        now = [s for s in self.specs if s.name not in self.deferred]
        servers = [s for s in now if s.port is not None]
        for group in (servers, [s for s in now if s.port is None]):
            self._start_group(group)
            if group is servers:
                self.wait_healthy(timeout_s)

    def start_deferred(self, timeout_s: float = 60.0) -> list[str]:
        """Start the processes start() held back; returns their names once they answer."""
        group = [s for s in self.specs if s.name in self.deferred and s.name not in self.children]
        self._start_group(group)
        self.wait_healthy(timeout_s)
        return [s.name for s in group]

    def _start_group(self, group: list[ProcessSpec]) -> None:
        for spec in group:
            child = _Child(spec, (self.log_dir / f"{spec.name}.log").open("ab"))
            self.children[spec.name] = child
            self._spawn(child)
        self._write_state()

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
                    raise StackFailed(
                        f"{name} exited with code {child.proc.returncode} during start-up; "
                        f"see {self.log_dir / (name + '.log')}"
                    )
                healthy[name] = self._is_healthy(child)
            if all(healthy.values()):
                return healthy
            time.sleep(0.2)  # polling a condition with a deadline, not sleeping as synchronisation
        missing = [n for n, ok in healthy.items() if not ok]
        raise StackFailed(f"not healthy after {timeout_s:.0f} s: {missing}; logs in {self.log_dir}")

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
                raise StackFailed(
                    f"{name} keeps exiting (code {child.proc.returncode}); see {self.log_dir / f'{name}.log'}"
                )
            log.warning("process exited; restarting", extra={"proc": name, "code": child.proc.returncode})
            child.restarts += 1
            self._spawn(child)
            restarted.append(name)
        if restarted:
            self._write_state()
        return restarted

    def stop(self) -> None:
        if self._lock is None:
            return  # never claimed this home: another stack's processes and stack.json are not ours
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
        self._lock.release()
        self._lock = None

    def kill(self, name: str) -> None:
        """SIGKILL one child (tests and the benchmark use it to prove crashes lose nothing)."""
        proc = self.children[name].proc
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _write_state(self) -> None:
        path = _state_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        processes = {
            name: {
                "pid": child.proc.pid if child.proc else None,
                "port": child.spec.port,
                "log": str(self.log_dir / f"{name}.log"),
            }
            for name, child in self.children.items()
        }
        state = {
            "supervisor_pid": os.getpid(),
            "connector_start_date": self.settings.connector_start_date,  # `gridsight sync` reads it
            "processes": processes,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)  # a reader (gridsight status) never sees half a file

    def __enter__(self) -> Supervisor:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
