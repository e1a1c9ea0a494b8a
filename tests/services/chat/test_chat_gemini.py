"""The Gemini path, driven through the real google-genai client against a local fake of its HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from services.chat.answer import ChatDeps, answer_question
from services.chat.api import ChatRequest
from services.chat.conversations import ConversationStore
from services.chat.generation import GeminiGenerator
from services.chat.index import open_index
from shared.settings import Settings
from tests.services.chat.fake_gemini import FakeGemini, serve, system_text
from tests.services.chat.fleet import INJECTION
from tests.services.chat.questionset import table_checksums


@pytest.fixture
def fake() -> FakeGemini:
    return FakeGemini(reply=lambda body: "")


@pytest.fixture
def gemini_deps(chat_settings: Settings, tmp_path: Path, fake: FakeGemini) -> Iterator[ChatDeps]:
    with serve(fake) as url:
        client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=url))
        yield ChatDeps(
            settings=chat_settings,
            store=ConversationStore(tmp_path / "conversations"),
            index=open_index(chat_settings),
            generator=GeminiGenerator(client, "gemini-2.5-flash"),
        )


def ask(deps: ChatDeps, question: str) -> dict:
    return json.loads(answer_question(ChatRequest(question=question), "tester", deps).model_dump_json())


def test_prompt_holds_the_retrieved_rows_and_nothing_outside_them(
    gemini_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = lambda body: "The HVAC plant used 32.936 kWh yesterday."
    response = ask(gemini_deps, "How much energy did the HVAC plant use yesterday?")
    rows = response["citations"][0]["rows"]
    prompt = fake.prompt()
    assert fake.paths[-1].endswith("models/gemini-2.5-flash:generateContent")
    assert json.dumps(rows, default=str) in prompt
    assert "HVAC plant" in prompt
    for outside in ("Kitchen", "Cold store", "Oven line", "Riverside Bakery", INJECTION):
        assert outside not in prompt
    assert "untrusted" in fake.system()
    assert response["generator"] == "gemini"
    assert response["answer"] == f"The HVAC plant used {rows[0]['energy_kwh']} kWh yesterday."


def test_an_invented_number_from_the_model_is_replaced_by_the_grounded_composer(
    gemini_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = lambda body: "The HVAC plant used 41.5 kWh yesterday, up 12% on the week."
    response = ask(gemini_deps, "How much energy did the HVAC plant use yesterday?")
    assert response["generator"] == "local"
    assert "41.5" not in response["answer"]
    assert str(response["citations"][0]["rows"][0]["energy_kwh"]) in response["answer"]


def test_an_instruction_injected_in_data_is_passed_as_data_and_never_obeyed(
    gemini_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = lambda body: "Meter usage was 999 kWh."  # a model that obeyed the injected text
    response = ask(gemini_deps, "Why was the server room flagged?")
    prompt = fake.prompt()
    data = prompt[prompt.index("<<<DATA") :]
    assert INJECTION in data  # the explanation is shown, inside the untrusted DATA block
    assert "999" not in response["answer"].replace(INJECTION, "")
    assert response["generator"] == "local"


def test_model_sql_that_writes_is_refused_and_tables_stay_unchanged(
    gemini_deps: ChatDeps, fake: FakeGemini
) -> None:
    def reply(body: dict) -> str:
        if "GoogleSQL SELECT" in system_text(body):
            return "DELETE FROM energy_analytics.hourly_consumption WHERE TRUE"
        return "done"

    fake.reply = reply
    before = table_checksums(gemini_deps)
    response = ask(gemini_deps, "What is the median occupancy share per meter type?")
    assert "could not answer that safely" in response["answer"]
    assert response["citations"] == []
    assert table_checksums(gemini_deps) == before


def test_model_sql_that_only_reads_is_run_and_cited(gemini_deps: ChatDeps, fake: FakeGemini) -> None:
    sql = (
        "SELECT meter_type, COUNT(*) AS devices FROM energy_analytics.dim_device "
        "GROUP BY meter_type ORDER BY meter_type"
    )

    def reply(body: dict) -> str:
        if "GoogleSQL SELECT" in system_text(body):
            return f"```sql\n{sql}\n```"
        return "There are 4 single_phase and 4 three_phase meters."

    fake.reply = reply
    response = ask(gemini_deps, "How many meters of each meter type are installed?")
    citation = response["citations"][0]
    assert citation["sql"].endswith("LIMIT 200")
    assert {r["meter_type"]: r["devices"] for r in citation["rows"]} == {"single_phase": 4, "three_phase": 4}
    assert response["generator"] == "gemini"
    assert response["answer"] == "There are 4 single_phase and 4 three_phase meters."
