"""The JSON contract of `POST /v1/chat`, request and response, as pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.chat.composer import Value

__all__ = ["ChatRequest", "ChatResponse", "Citation"]

CONVERSATION_ID = r"^[A-Za-z0-9_-]{1,64}$"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=1000)
    conversation_id: str | None = Field(default=None, pattern=CONVERSATION_ID)


class Citation(BaseModel):
    kind: Literal["sql", "document"]
    sql: str | None = None
    params: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None
    id: str | None = None
    title: str | None = None


class ChatResponse(BaseModel):
    answer: str
    values: list[Value] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    intent: str
    refused: bool = False
    conversation_id: str
    generator: str = Field(default="local", description="local | gemini: who wrote the answer text.")
    grounded: bool = Field(default=True, description="Every number in the answer is in a cited row.")
    not_applied: list[str] = Field(
        default_factory=list,
        description="Parts of the question the answer could not apply (also in its text).",
    )
    suggestions: list[str] = Field(default_factory=list, description="Closest known names to an unknown one.")
