"""Every `gridsight …` command the READMEs show exists (infra/README.md once said `gridsight forecast
train`; the command is `gridsight train`)."""

from __future__ import annotations

import re

import pytest
import typer

from infra.local.cli import build_app
from shared.settings import REPO_ROOT

DOCS = ("README.md", "infra/README.md")
_COMMAND = re.compile(r"\bgridsight((?: [a-z][a-z-]*)+)")


def _tree() -> dict[str, object]:
    return dict(typer.main.get_command(build_app()).commands)  # type: ignore[attr-defined]


def _resolves(words: list[str], commands: dict[str, object]) -> bool:
    """The leading words name a command (a group must be followed by one of its commands)."""
    if not words or words[0] not in commands:
        return False
    sub = getattr(commands[words[0]], "commands", None)
    return sub is None or _resolves(words[1:], sub)


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_exist(doc: str) -> None:
    text = (REPO_ROOT / doc).read_text()
    fenced = re.compile(r"```[a-z]*\n(.*?)```", re.S)
    spans = fenced.findall(text)
    prose = fenced.sub("", text)
    spans += [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]  # may wrap a line
    spans += re.findall(r"^    (.+)$", prose, re.M)  # indented code blocks
    tree, checked = _tree(), 0
    for span in spans:
        for match in _COMMAND.finditer(span):
            words = match.group(1).split()
            if words[0] in {"is", "isn", "stack", "demo-report"}:  # prose ("gridsight is …")
                continue
            assert _resolves(words, tree), f"{doc}: `gridsight {' '.join(words)}` is not a command"
            checked += 1
    assert checked > 0
