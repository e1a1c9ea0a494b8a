"""Conversation memory: the previous turn's understanding, so follow-ups can reuse its slots.

One small JSON file per conversation under settings.home/chat/conversations (Cloud Run: the
instance's /tmp, so a follow-up routed to another instance starts fresh and asks again). A
conversation belongs to the API key that opened it; another key cannot read or extend it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, Field

from services.chat.understanding import Understanding
from shared.errors import NotFound

__all__ = ["ConversationStore", "Turn"]

MAX_TURNS = 20


class Turn(BaseModel):
    question: str
    understanding: Understanding


class Conversation(BaseModel):
    owner: str
    turns: list[Turn] = Field(default_factory=list)


class ConversationStore:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _path(self, conversation_id: str) -> Path:
        return self._folder / f"{conversation_id}.json"

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def last_turn(self, conversation_id: str, owner: str) -> Turn | None:
        path = self._path(conversation_id)
        if not path.exists():
            return None
        conversation = Conversation.model_validate_json(path.read_text())
        if conversation.owner != owner:
            raise NotFound(f"no conversation {conversation_id}")  # do not reveal that it exists
        return conversation.turns[-1] if conversation.turns else None

    def append(self, conversation_id: str, owner: str, turn: Turn) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._path(conversation_id)
        with FileLock(str(path.with_suffix(".lock")), timeout=10):
            conversation = (
                Conversation.model_validate_json(path.read_text())
                if path.exists()
                else Conversation(owner=owner)
            )
            if conversation.owner != owner:
                raise NotFound(f"no conversation {conversation_id}")
            conversation.turns = [*conversation.turns, turn][-MAX_TURNS:]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(conversation.model_dump(mode="json")))
            tmp.replace(path)
