"""One rule for the whole CLI: a bad value, missing data or a service that is down gives one or two
plain lines and exit 2 (usage) or 1 (failure), never a traceback.

`test_every_option_rejects_a_bad_value_plainly` walks the real command tree, so a new option without
an entry in BAD fails here until someone says what a bad value for it is and checks the answer.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.ports import free_port

BUG_HINT = "looks like a bug"  # the catch-all's wording: a named user error must never reach it


class RanAnyway(BaseException):
    """Raised where a command would start long-running work: the bad value was not rejected."""


@pytest.fixture
def home_env(settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Every service port points at a port nobody listens on, so nothing reaches another stack."""
    for name in ("SIMULATOR", "INGEST", "FORECAST", "ANOMALY", "CHAT", "MODEL_SERVER"):
        monkeypatch.setenv(f"GRIDSIGHT_{name}_PORT", str(free_port()))

    def ran_anyway(*_a: object, **_k: object) -> None:
        raise RanAnyway

    monkeypatch.setattr("infra.local.supervisor.Supervisor.start", ran_anyway)
    monkeypatch.setattr("simulator.server.SimulatorServer.serve_forever", ran_anyway)
    monkeypatch.setattr("infra.local.sync.run_sync", ran_anyway)
    return {"COLUMNS": "200"}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    energy = tmp_path / "energy.csv"
    energy.write_text(
        "meter_id,timestamp_utc,kwh,label\n"
        + "".join(f"m1,2019-01-01 {h:02d}:00:00,{1 + h % 3},0\n" for h in range(24))
    )
    forecasts = tmp_path / "forecasts.csv"
    forecasts.write_text("meter_id,timestamp_utc,p10,p50,p90\nm1,2019-01-01 05:00:00,1,2,3\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("meter_id,timestamp_utc,score,is_anomaly,anomaly_type\n")
    return {"energy": energy, "forecasts": forecasts, "scores": scores, "dir": tmp_path}


def _commands(group: typer.Typer) -> list[tuple[list[str], object]]:
    found: list[tuple[list[str], object]] = []

    def walk(command: object, path: list[str]) -> None:
        commands = getattr(command, "commands", None)
        if commands is not None:
            for name, sub in commands.items():
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(group), [])
    return found


MISSING = "/no/such/file.csv"
# (command path or "*", option) -> bad value; DIR means "a folder where a file is expected"
BAD: dict[tuple[str, str], str] = {
    ("*", "--devices"): "0",
    ("*", "--days"): "0",
    ("*", "--seed"): "-1",
    ("*", "--interval-minutes"): "0",
    ("*", "--out"): "DIR",
    ("*", "--energy"): MISSING,
    ("*", "--weather"): MISSING,
    ("*", "--replay"): MISSING,
    ("up", "--devices"): "-3",
    ("status", "--runs"): "-1",
    ("demo", "--timeout"): "0",
    ("chat", "question"): "  ",
    ("chat", "--conversation"): "not an id!",
    ("query", "sql"): "DROP TABLE energy_analytics.forecasts",
    ("anomaly evaluate", "--scores"): MISSING,
    ("anomaly evaluate", "--labels"): MISSING,
    ("anomaly evaluate", "--json"): "DIR",
    ("anomaly evaluate", "--dev-until"): "1800",
    ("anomaly plot", "--device"): "no-such-meter",
    ("anomaly plot", "--start"): "yesterday",
    ("anomaly plot", "--end"): "2018-12-31",
    ("simulator serve", "--port"): "70000",
    ("simulator serve", "--fault-rate"): "1.5",
    ("simulator serve", "--malformed-rate"): "-0.1",
    ("simulator serve", "--late-share"): "2",
    ("simulator serve", "--decommission-share"): "-1",
    ("simulator serve", "--api-key"): "",
    ("simulator serve", "--replay"): MISSING,
    ("simulator truth", "--advanced-hours"): "-1",
    ("simulator advance", "--hours"): "-5",
    ("simulator advance", "--url"): "ftp://example.org",
    ("simulator plot", "--device"): "20",
    ("dead-letters replay", "--subscription"): "no-such-subscription",
    ("forecast backtest", "--start"): "2019-13-01",
    ("forecast backtest", "--end"): "2018-01-01",
    ("forecast backtest", "--data"): "/no/such/folder",
    ("forecast backtest", "--split"): "tuned-on",
    ("forecast backtest", "--years"): "20x9",
    ("forecast backtest", "--windows"): "easter",
    ("forecast backtest", "--origins"): "5",
    ("forecast backtest", "--train-days"): "0",
    ("forecast backtest", "--json"): "DIR",
    ("forecast plot", "--forecasts"): MISSING,
    ("forecast plot", "--meter"): "no-such-meter",
}


def _valid(command: str, name: str, files: dict[str, Path]) -> list[str]:
    """A good value for a required parameter, so the bad one is what the command meets."""
    good = {
        "sql": ["SELECT 1 AS one"],
        "--energy": ["--energy", str(files["energy"])],
        "--labels": ["--labels", str(files["energy"])],
        "--scores": ["--scores", str(files["scores"])],
        "--forecasts": ["--forecasts", str(files["forecasts"])],
        "--out": ["--out", str(files["dir"] / "out.png")],
        "--device": ["--device", "m1"],
        "--start": ["--start", "2019-01-01"],
        "--end": ["--end", "2019-01-02"],
    }
    return good[name]


def _bad(command: str, name: str, files: dict[str, Path]) -> str | None:
    value = BAD.get((command, name), BAD.get(("*", name)))
    return str(files["dir"]) if value == "DIR" else value


def test_every_option_rejects_a_bad_value_plainly(home_env: dict[str, str], files: dict[str, Path]) -> None:
    app = build_app()
    uncovered, checked = [], 0
    for path, command in _commands(app):
        name = " ".join(path)
        params = [p for p in command.params if not getattr(p, "is_flag", False)]  # type: ignore[attr-defined]
        for param in params:
            label = param.opts[0] if param.opts else param.name
            bad = _bad(name, label, files)
            if bad is None:
                uncovered.append(f"{name} {label}")
                continue
            args = list(path)
            for other in params:
                other_label = other.opts[0] if other.opts else other.name
                if other is not param and other.required:
                    args += _valid(name, other_label, files)
            args += [bad] if not param.opts else [label, bad]
            if name == "chat" and label == "--conversation":
                args.append("How much energy did the fleet use yesterday?")
            if name == "anomaly plot" and label == "--device":
                args += ["--energy", str(files["energy"])]
            if name == "anomaly plot" and label == "--end":
                args += ["--start", "2019-01-01"]
            if name == "forecast backtest" and label != "--start":
                args = [a for a in args if a not in ("--start", "2019-01-01")] + ["--start", "2019-01-01"]
            result = CliRunner().invoke(app, args, env=home_env, input="")
            shown = result.output
            assert result.exit_code in (1, 2), f"{args}: exit {result.exit_code}\n{shown}"
            assert "Traceback" not in shown, f"{args}:\n{shown}"
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                args,
                result.exception,
            )
            assert BUG_HINT not in shown, f"{args}: fell through to the catch-all\n{shown}"
            assert shown.strip(), f"{args}: failed silently"
            checked += 1
    assert not uncovered, f"no bad value known for: {uncovered}"
    assert checked >= 50


def test_advance_with_negative_hours_is_a_usage_error(home_env: dict[str, str]) -> None:
    result = CliRunner().invoke(build_app(), ["simulator", "advance", "--hours", "-5"], env=home_env)
    assert result.exit_code == 2
    assert "Invalid value for '--hours'" in result.output
    assert "-5 is not more than 0" in result.output


def test_advance_without_a_simulator_names_the_url_and_the_fix(home_env: dict[str, str]) -> None:
    result = CliRunner().invoke(build_app(), ["simulator", "advance", "--hours", "5"], env=home_env)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert "no simulator answering at http://127.0.0.1:" in lines[0]
    assert "gridsight simulator serve" in lines[1]


def test_status_with_negative_runs_is_a_usage_error(home_env: dict[str, str]) -> None:
    result = CliRunner().invoke(build_app(), ["status", "--runs", "-1"], env=home_env)
    assert result.exit_code == 2
    assert "Invalid value for '--runs'" in result.output


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    home_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("infra.local.commands.runtime.collect_status", broken)
    plain = CliRunner().invoke(build_app(), ["status"], env=home_env)
    assert plain.exit_code == 1
    assert "error: ZeroDivisionError: division by zero" in plain.output
    assert "--debug" in plain.output
    assert "Traceback" not in plain.output
    debug = CliRunner().invoke(build_app(), ["--debug", "status"], env=home_env)
    assert isinstance(debug.exception, ZeroDivisionError)  # let through, so the runner shows it


def test_servers_on_a_taken_port_say_so_before_starting(
    home_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("GRIDSIGHT_MODEL_SERVER_PORT", str(port))
        model = CliRunner().invoke(build_app(), ["forecast", "serve"], env=home_env)
        monkeypatch.setattr("simulator.server.SimulatorServer.serve_forever", lambda _self: None)
        vendor = CliRunner().invoke(build_app(), ["simulator", "serve", "--port", str(port)], env=home_env)
    assert model.exit_code == 1
    assert f"error: port {port} is already in use; set GRIDSIGHT_MODEL_SERVER_PORT" in model.output
    assert vendor.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in vendor.output
    assert "Traceback" not in model.output + vendor.output
