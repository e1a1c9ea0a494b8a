"""answer_question end to end on the demo fleet: retrieval choices, citations, clarifications."""

from __future__ import annotations

from services.chat.answer import ChatDeps, answer_question
from services.chat.api import ChatRequest, ChatResponse
from tests.services.chat.fleet import INJECTION


def ask(deps: ChatDeps, question: str, conversation_id: str | None = None) -> ChatResponse:
    return answer_question(ChatRequest(question=question, conversation_id=conversation_id), "tester", deps)


def test_a_rephrased_question_takes_the_intent_of_the_nearest_known_question(chat_deps: ChatDeps) -> None:
    response = ask(chat_deps, "Which meters stopped sending any data?")
    assert response.intent == "silent_devices"
    assert response.values[0].value == 1


def test_advice_quotes_the_playbook_and_cites_it(chat_deps: ChatDeps) -> None:
    response = ask(chat_deps, "How can we reduce our standby consumption?")
    assert response.intent == "advice"
    assert response.citations[0].kind == "document"
    assert response.citations[0].id == "playbook:cut-the-base-load"
    assert "base load" in response.answer


def test_anomaly_explanations_are_quoted_verbatim_even_when_they_carry_instructions(
    chat_deps: ChatDeps,
) -> None:
    response = ask(chat_deps, "Why was the server room flagged?")
    assert f'"Night-time base load 0.75 kWh vs 0.3 kWh usual. {INJECTION}"' in response.answer
    assert response.grounded
    assert all(v.value != 999 for v in response.values)


def test_a_date_without_data_gets_a_no_data_answer(chat_deps: ChatDeps) -> None:
    response = ask(chat_deps, "How much did the heat pump use on 2024-02-03?")
    assert response.answer.startswith("There is no data for Heat pump (dev-005)")
    assert response.values == []


def test_device_facts_without_a_device_asks_which(chat_deps: ChatDeps) -> None:
    response = ask(chat_deps, "Tell me about the meter")
    assert "Which meter do you mean?" in response.answer


def test_every_sql_citation_binds_its_values_as_parameters(chat_deps: ChatDeps) -> None:
    response = ask(chat_deps, "What did the kitchen cost yesterday at 0.25 per kWh between 5 and 7 pm?")
    sql = response.citations[0]
    assert sql.params is not None
    assert sql.params["peak_price"] == 0.25
    assert sql.params["device_ids"] == ["dev-004"]
    assert (sql.params["hod_start"], sql.params["hod_end"]) == (17, 19)
    assert "dev-004" not in (sql.sql or "")
    assert "0.25" not in (sql.sql or "")
