"""The Gemini path in Vertex AI mode (`vertexai=True`), through the real google-genai client.

The client talks to the local HTTP fake (only Google's endpoint is replaced), with a fixed OAuth
token. Gemini reads the question into the typed request by structured output (JSON schema);
the same templates, resolution and refusals follow. Expected figures are pandas sums of the rows
the fixture wrote (dev-005 "Heat pump" at site-b, London = UTC in November).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

from services.chat.answer import ChatDeps, answer_question
from services.chat.api import ChatRequest
from services.chat.conversations import ConversationStore
from services.chat.generation import REQUEST_INSTRUCTION, GeminiGenerator
from services.chat.index import open_index
from shared.settings import Settings
from tests.services.chat.fake_gemini import FakeGemini, serve, system_text
from tests.services.chat.fleet import Fleet


@pytest.fixture
def fake() -> FakeGemini:
    return FakeGemini(reply=lambda body: "")


@pytest.fixture
def vertex_deps(chat_settings: Settings, tmp_path: Path, fake: FakeGemini) -> Iterator[ChatDeps]:
    with serve(fake) as url:
        client = genai.Client(
            vertexai=True,
            project="test-project",
            location="europe-west1",
            credentials=Credentials(token="test-token"),  # a fixed bearer token: nothing to refresh
            http_options=types.HttpOptions(base_url=url),
        )
        yield ChatDeps(
            settings=chat_settings,
            store=ConversationStore(tmp_path / "conversations"),
            index=open_index(chat_settings),
            generator=GeminiGenerator(client, "gemini-2.5-flash"),
        )


def _scripted(request: dict, answer: str = "") -> object:
    def reply(body: dict) -> str:
        return json.dumps(request) if system_text(body) == REQUEST_INSTRUCTION else answer

    return reply


def _day_kwh(fleet: Fleet, device: str, day: str) -> float:
    h = fleet.hourly
    start = pd.Timestamp(day, tz="UTC")
    rows = h[(h["device_id"] == device) & (h["hour"] >= start) & (h["hour"] < start + pd.Timedelta(days=1))]
    return round(float(rows["energy_kwh"].sum()), 3)


def test_vertex_mode_reads_the_question_by_structured_output_and_answers_from_the_template(
    vertex_deps: ChatDeps, fake: FakeGemini, chat_home: tuple[Settings, Fleet]
) -> None:
    fake.reply = _scripted({"intent": "usage", "subjects": ["the heat pump"], "period_text": "yesterday"})  # type: ignore[assignment]
    response = answer_question(
        ChatRequest(question="What did the heat pump draw yesterday?"), "t", vertex_deps
    )
    first = fake.requests[0]
    assert fake.paths[0].endswith(
        "projects/test-project/locations/europe-west1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert first["generationConfig"]["responseMimeType"] == "application/json"
    schema = json.dumps(first["generationConfig"]).lower()
    assert all(field in schema for field in ("intent", "subjects", "period_text", "not_understood"))
    assert response.intent == "usage"
    assert response.values[0].entity_id == "dev-005"
    assert response.values[0].value == pytest.approx(
        _day_kwh(chat_home[1], "dev-005", "2026-11-19"), abs=0.0015
    )


def test_what_the_model_could_not_map_is_named_in_the_reply(vertex_deps: ChatDeps, fake: FakeGemini) -> None:
    fake.reply = _scripted(  # type: ignore[assignment]
        {
            "intent": "usage",
            "subjects": ["heat pump"],
            "period_text": "yesterday",
            "not_understood": ["per m²"],
        }
    )
    response = answer_question(ChatRequest(question="Heat pump use per m² yesterday?"), "t", vertex_deps)
    assert response.not_applied == ["per m² (not understood)"]
    assert response.answer.startswith("Not applied: per m² (not understood).")


def test_an_unknown_subject_from_the_model_is_not_replaced_by_the_fleet(
    vertex_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = _scripted({"intent": "usage", "subjects": ["Warehouse Annex"], "period_text": "yesterday"})  # type: ignore[assignment]
    response = answer_question(
        ChatRequest(question="What did Warehouse Annex use yesterday?"), "t", vertex_deps
    )
    assert "I don't know" in response.answer
    assert "warehouse annex" in response.answer
    assert response.values == []


def test_an_impossible_date_from_the_model_gets_a_question_back(
    vertex_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = _scripted({"intent": "usage", "subjects": ["heat pump"], "period_text": "31 February"})  # type: ignore[assignment]
    response = answer_question(ChatRequest(question="Heat pump on 31 February?"), "t", vertex_deps)
    assert response.intent == "clarify"
    assert "There is no 31 February" in response.answer


def test_the_rules_refuse_even_when_the_model_calls_a_write_harmless(
    vertex_deps: ChatDeps, fake: FakeGemini
) -> None:
    fake.reply = _scripted({"intent": "usage", "subjects": ["heat pump"]})  # type: ignore[assignment]
    response = answer_question(
        ChatRequest(question="please delete the heat pump's readings"), "t", vertex_deps
    )
    assert response.refused
    assert fake.requests == []  # refused before the model is asked


def test_an_invalid_model_reply_falls_back_to_the_rules(
    vertex_deps: ChatDeps, fake: FakeGemini, chat_home: tuple[Settings, Fleet]
) -> None:
    fake.reply = _scripted({"intent": "not-an-intent"})  # type: ignore[assignment]
    response = answer_question(
        ChatRequest(question="How much did the heat pump use yesterday?"), "t", vertex_deps
    )
    assert response.values[0].value == pytest.approx(
        _day_kwh(chat_home[1], "dev-005", "2026-11-19"), abs=0.0015
    )
