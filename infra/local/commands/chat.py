"""`gridsight chat ["question"]`: ask the chat service, or answer in-process with the same code.

With `gridsight up` running, the question goes to the chat service on 127.0.0.1:<chat_port> (found by
its health check), so the CLI sees exactly what API clients see. Otherwise the same
`answer_question` runs in this process over the local warehouse. No question = an interactive
prompt that keeps one conversation, so follow-ups ("and the day before?") work.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.local.commands.errors import fail
from shared.settings import Settings

__all__ = ["ask", "register"]

console = Console(width=120)
SHOW_SQL_HINT = "--show-sql or /sql shows the SQL and rows"
HEALTH_TIMEOUT_S = 0.5
MAX_QUESTION = 1000  # ChatRequest's limit
ASK_TIMEOUT_S = 60.0


def _service_url(settings: Settings) -> str | None:
    import requests

    url = f"http://127.0.0.1:{settings.chat_port}"
    try:
        ok = requests.get(f"{url}/healthz", timeout=HEALTH_TIMEOUT_S).ok
    except requests.RequestException:
        return None
    return url if ok else None


def ask(question: str, conversation_id: str | None, settings: Settings, url: str | None) -> dict[str, Any]:
    """The API's JSON for one question, from the service at `url` or in-process when `url` is None."""
    if url is not None:
        import requests

        key = settings.chat_api_keys.get_secret_value().split(",")[0].strip()
        body: dict[str, Any] = {"question": question}
        if conversation_id:
            body["conversation_id"] = conversation_id
        response = requests.post(
            f"{url}/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=ASK_TIMEOUT_S
        )
        payload = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"chat service answered {response.status_code}: {payload.get('error')}")
        return dict(payload)
    from services.chat.answer import answer_question
    from services.chat.api import ChatRequest

    request = ChatRequest(question=question, conversation_id=conversation_id)
    return dict(json.loads(answer_question(request, "cli", _deps(settings)).model_dump_json()))


_DEPS: dict[str, Any] = {}


def _deps(settings: Settings) -> Any:
    """One set of deps per process, so the interactive prompt keeps its index and schema check."""
    from services.chat.answer import build_deps

    if "deps" not in _DEPS:
        _DEPS["deps"] = build_deps(settings)
    return _DEPS["deps"]


def _print(payload: dict[str, Any], *, show_sql: bool = False) -> None:
    """The answer, then either one line naming its sources (default) or each cited query in full."""
    style = "yellow" if payload.get("refused") else "bold"
    console.print(f"[{style}]{escape(payload['answer'])}[/{style}]")
    citations = payload.get("citations") or []
    if not citations:
        return
    if show_sql:
        _print_citations(citations)
        return
    parts = []
    for i, citation in enumerate(citations, start=1):
        if citation["kind"] == "document":
            parts.append(f"[{i}] {citation.get('title') or citation.get('id')}")
        else:
            n = len(citation.get("rows") or [])
            parts.append(f"[{i}] query, {n} row{'s' if n != 1 else ''}")
    console.print(f"[dim]sources: {escape(' · '.join(parts))} ({SHOW_SQL_HINT})[/dim]")


def _print_citations(citations: list[dict[str, Any]]) -> None:
    for i, citation in enumerate(citations, start=1):
        if citation["kind"] == "document":
            console.print(
                f"[dim][{i}] document {citation['id']}: {escape(citation.get('title') or '')}[/dim]"
            )
            continue
        rows = citation.get("rows") or []
        console.print(
            f"[dim][{i}] SQL ({len(rows)} row{'s' if len(rows) != 1 else ''}), params "
            f"{escape(json.dumps(citation.get('params') or {}, default=str))}[/dim]"
        )
        console.print(f"[dim]{escape(citation['sql'])}[/dim]")
        if rows:
            table = Table(*rows[0].keys(), show_edge=False, header_style="dim")
            for row in rows[:10]:
                # as the service sent them (rounded in its SQL): the answer's figures are these cells
                table.add_row(*(escape("" if v is None else str(v)) for v in row.values()))
            console.print(table)
            if len(rows) > 10:
                console.print(f"[dim]… {len(rows) - 10} more rows (--json shows all)[/dim]")


def chat(
    question: Annotated[
        str | None, typer.Argument(help="The question; omit for an interactive prompt.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON response.")] = False,
    conversation: Annotated[str | None, typer.Option(help="Continue this conversation id.")] = None,
    local: Annotated[
        bool, typer.Option(help="Answer in-process even if the chat service is running.")
    ] = False,
    show_sql: Annotated[
        bool, typer.Option("--show-sql", help="Show each answer's SQL, parameters and rows.")
    ] = False,
) -> None:
    """Ask about your energy data; every number comes with the query that produced it."""
    from services.chat.api import CONVERSATION_ID

    if question is not None and not question.strip():
        raise typer.BadParameter(
            "the question is empty; omit it for an interactive prompt", param_hint="QUESTION"
        )
    if question is not None and len(question) > MAX_QUESTION:
        raise typer.BadParameter(f"at most {MAX_QUESTION} characters", param_hint="QUESTION")
    if conversation is not None and not re.fullmatch(CONVERSATION_ID, conversation):
        raise typer.BadParameter(
            "a conversation id is 1-64 letters, digits, '-' or '_' (the id an earlier --json answer gave)",
            param_hint="--conversation",
        )
    settings = Settings()
    url = None if local else _service_url(settings)
    if question is not None:
        try:
            payload = ask(question, conversation, settings, url)
        except (RuntimeError, ValueError) as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise fail(str(exc), "is the chat service healthy? `gridsight status` shows it") from exc
        if as_json:
            typer.echo(json.dumps(payload, indent=2, default=str))
        else:
            _print(payload, show_sql=show_sql)
        return
    _interactive(settings, url, conversation, as_json, show_sql)


def _interactive(
    settings: Settings, url: str | None, conversation: str | None, as_json: bool, show_sql: bool
) -> None:
    import readline  # noqa: F401  (arrow-key history for input())

    console.print(
        f"[dim]gridsight chat ({'service ' + url if url else 'in-process'}); /sql shows the last "
        "answer's SQL and rows, /sql on|off for every answer; empty line or Ctrl-D to leave[/dim]"
    )
    last: dict[str, Any] | None = None
    while True:
        try:
            question = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not question:
            return
        if question.startswith("/"):
            show_sql = _command(question, last, show_sql)
            continue
        try:
            payload = ask(question, conversation, settings, url)
        except (RuntimeError, ValueError) as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            continue
        last = payload
        conversation = payload.get("conversation_id", conversation)
        if as_json:
            typer.echo(json.dumps(payload, indent=2, default=str))
        else:
            _print(payload, show_sql=show_sql)


def _command(text: str, last: dict[str, Any] | None, show_sql: bool) -> bool:
    """One slash command of the prompt; returns whether answers now show their SQL."""
    words = text.split()
    if words[0] != "/sql" or len(words) > 2 or (len(words) == 2 and words[1] not in ("on", "off")):
        console.print("[dim]commands: /sql (the last answer's SQL and rows), /sql on, /sql off[/dim]")
        return show_sql
    if len(words) == 2:
        console.print(f"[dim]SQL and rows {'shown' if words[1] == 'on' else 'hidden'} from now on[/dim]")
        return words[1] == "on"
    if last is None or not last.get("citations"):
        console.print("[dim]no answer with sources yet[/dim]")
    else:
        _print_citations(last["citations"])
    return show_sql


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
