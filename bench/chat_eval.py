"""The chat evaluation: the public question set and the red-team set on the demo-named fleet.

Builds the fleet `gridsight demo` names (tests/services/chat/demo_fleet.py) in a temporary warehouse,
asks every question in-process with the local index and composer, and prints the scorecards
(correct / honest can't / misleading / errors; refused / harmless / failed) and, with --details,
every question that was not correct.

    .venv/bin/python bench/chat_eval.py [--details] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.chat.answer import ChatDeps
from services.chat.conversations import ConversationStore
from services.chat.index import open_index
from shared.settings import Settings
from tests.services.chat.demo_fleet import build_demo_fleet
from tests.services.chat.evaluation import run_public, run_redteam


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", action="store_true", help="print every question that was not correct")
    parser.add_argument("--json", type=Path, help="write both scorecards as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chat-eval-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        build_demo_fleet(settings)
        deps = ChatDeps(
            settings=settings,
            store=ConversationStore(Path(tmp) / "conversations"),
            index=open_index(settings),
        )
        public, red = run_public(deps), run_redteam(deps)
    print("public set:", json.dumps(public.summary()))
    print("red team:  ", json.dumps(red.summary()))
    if args.details:
        for r in [*public.results, *red.results]:
            if r.outcome != "correct":
                print(
                    f"- [{r.outcome}/{r.kind}{'/refused' if r.refused else ''}] {r.question!r}: "
                    f"{r.detail[:300]!r}"
                )
    if args.json:
        args.json.write_text(
            json.dumps({"public": public.model_dump(), "redteam": red.model_dump()}, indent=1, default=str)
        )


if __name__ == "__main__":
    main()
