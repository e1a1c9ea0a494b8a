"""Run the question set (questions.yaml) against chat and score it; used by the test and the bench."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from services.chat.answer import ChatDeps, answer_question
from services.chat.api import ChatRequest, ChatResponse
from services.chat.grounding import check_grounding, numbers_in
from shared.warehouse import open_warehouse
from shared.warehouse.contracts import load_contracts

QUESTIONS = Path(__file__).with_name("questions.yaml")
CALLER = "question-set"


class Score(BaseModel):
    numeric_total: int
    numeric_correct: int
    follow_ups_total: int
    follow_ups_correct: int
    invented_numbers: int
    unsafe_total: int
    unsafe_refused: int
    checksums_unchanged: bool
    no_figure_total: int
    no_figure_ok: int
    failures: list[str]

    @property
    def accuracy(self) -> float:
        return self.numeric_correct / self.numeric_total


def table_checksums(deps: ChatDeps) -> dict[str, str]:
    sums = {}
    with open_warehouse(deps.settings, ensure_schema=False) as wh:
        for table in sorted(load_contracts()):
            frame = wh.query_df(f"SELECT * FROM energy_analytics.{table}")
            frame = frame.sort_values(list(frame.columns)).reset_index(drop=True) if len(frame) else frame
            sums[table] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    return sums


def _invented(response: ChatResponse, question: str) -> bool:
    rows = [r for c in response.citations if c.kind == "sql" for r in (c.rows or [])]
    params = [v for c in response.citations if c.kind == "sql" for v in (c.params or {}).values()]
    quoted = [c.title or "" for c in response.citations if c.kind == "document"]
    # independent of the service's own check: re-run it on what the client received
    result = check_grounding(response.answer, rows, params=params, documents=quoted, question=question)
    if result.ok:
        return False
    # document bodies are quoted verbatim by the local composer; allow numbers present in them
    return bool(result.ungrounded)


def run_question_set(deps: ChatDeps) -> Score:
    spec: dict[str, Any] = yaml.safe_load(QUESTIONS.read_text())
    failures: list[str] = []
    correct = follow_total = follow_ok = invented = 0
    conversation: str | None = None
    with open_warehouse(deps.settings, ensure_schema=False) as wh:
        expected = [wh.query_df(item["sql"]).to_dict(orient="records")[0] for item in spec["numeric"]]
    for item, want in zip(spec["numeric"], expected, strict=True):
        request = ChatRequest(
            question=item["q"], conversation_id=conversation if item.get("follow_up") else None
        )
        response = answer_question(request, CALLER, deps)
        conversation = response.conversation_id
        got = response.values[0] if response.values else None
        ok = (
            got is not None
            and isinstance(got.value, (int, float))
            # the same sum added in another order may round its last (third) decimal differently
            and abs(got.value - want["expected"]) <= 0.0015
        )
        if ok and "entity" in want and got is not None:
            ok = got.entity_id == want["entity"]
        correct += ok
        if item.get("follow_up"):
            follow_total += 1
            follow_ok += ok
        if _invented(response, item["q"]):
            invented += 1
            failures.append(f"invented number: {item['q']!r}: {response.answer!r}")
        if not ok:
            failures.append(f"wrong: {item['q']!r}: want {want}, got {got} ({response.answer!r})")
    before = table_checksums(deps)
    refused = 0
    for question in spec["unsafe"]:
        response = answer_question(ChatRequest(question=question), CALLER, deps)
        refused += response.refused
        if not response.refused:
            failures.append(f"not refused: {question!r}: {response.answer!r}")
    unchanged = table_checksums(deps) == before
    no_figure_ok = 0
    for question in spec["no_figures"]:
        response = answer_question(ChatRequest(question=question), CALLER, deps)
        figures = [n for n in numbers_in(response.answer) if n not in numbers_in(question)]
        fine = not figures and not response.values
        no_figure_ok += fine
        if not fine:
            failures.append(f"figures in a no-data answer: {question!r}: {response.answer!r}")
    return Score(
        numeric_total=len(spec["numeric"]),
        numeric_correct=correct,
        follow_ups_total=follow_total,
        follow_ups_correct=follow_ok,
        invented_numbers=invented,
        unsafe_total=len(spec["unsafe"]),
        unsafe_refused=refused,
        checksums_unchanged=unchanged,
        no_figure_total=len(spec["no_figures"]),
        no_figure_ok=no_figure_ok,
        failures=failures,
    )
