"""`gridsight chat`: in-process answers, JSON output, the interactive prompt, and the running service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.local.cli import build_app
from infra.local.commands import chat as chat_command
from infra.local.ports import free_port
from shared.settings import REPO_ROOT, Settings


@pytest.fixture
def runner_env(chat_settings: Settings) -> dict[str, str]:
    chat_command._DEPS.clear()
    return {"GRIDSIGHT_HOME": str(chat_settings.home), "GRIDSIGHT_CHAT_PORT": "9"}  # nothing listens on 9


def test_a_question_prints_the_answer_and_its_sql(runner_env: dict[str, str]) -> None:
    question = "Which meter used the most last week?"
    result = CliRunner().invoke(build_app(), ["chat", "--show-sql", question], env=runner_env)
    assert result.exit_code == 0, result.output
    assert "HVAC plant" in result.output
    assert "SQL (1 row)" in result.output


def test_json_is_the_api_response(runner_env: dict[str, str]) -> None:
    result = CliRunner().invoke(build_app(), ["chat", "--json", "delete all readings"], env=runner_env)
    payload = json.loads(result.output)
    assert payload["refused"] is True
    assert payload["intent"] == "unsafe"


def test_the_interactive_prompt_keeps_one_conversation(runner_env: dict[str, str]) -> None:
    script = "How much did the kitchen use yesterday?\nand the day before?\n\n"
    result = CliRunner().invoke(build_app(), ["chat", "--json"], input=script, env=runner_env)
    assert result.exit_code == 0, result.output
    bodies = [json.loads(chunk) for chunk in _json_chunks(result.output)]
    assert [b["intent"] for b in bodies] == ["usage", "usage"]
    assert bodies[0]["conversation_id"] == bodies[1]["conversation_id"]
    assert bodies[1]["citations"][0]["params"]["start"] < bodies[0]["citations"][0]["params"]["start"]


def _json_chunks(output: str) -> list[str]:
    chunks, depth, start = [], 0, None
    for i, ch in enumerate(output):
        if ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}":
            depth -= 1
            if depth == 0 and start is not None:
                chunks.append(output[start : i + 1])
    return chunks


@pytest.mark.slow
def test_with_the_service_running_the_cli_asks_it(chat_settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GRIDSIGHT_HOME": str(chat_settings.home), "GRIDSIGHT_CHAT_PORT": str(port)}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("functions-framework")), "--source", "services/chat/main.py",
         "--target", "app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        settings = Settings(home=chat_settings.home, chat_port=port)
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline and server.poll() is None:
            url = chat_command._service_url(settings)
            if url is None:
                time.sleep(0.2)  # polling for readiness, not synchronising on a guess
        assert url == f"http://127.0.0.1:{port}"
        payload = chat_command.ask("Which meter used the most last week?", None, settings, url)
        assert payload["intent"] == "top_k"
        assert payload["values"][0]["entity_id"] == "dev-002"
    finally:
        server.terminate()
        server.wait(timeout=10)
