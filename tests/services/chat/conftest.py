"""Chat test fixtures: one demo fleet per session (read-only for most tests), deps wired to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.chat.answer import ChatDeps
from services.chat.conversations import ConversationStore
from services.chat.index import open_index
from shared.settings import Settings
from tests.services.chat.fleet import Fleet, build_fleet


@pytest.fixture(scope="session")
def chat_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Fleet]:
    home = tmp_path_factory.mktemp("chat-home")
    settings = Settings(home=home)
    fleet = build_fleet(settings)
    return settings, fleet


@pytest.fixture(scope="session")
def chat_settings(chat_home: tuple[Settings, Fleet]) -> Settings:
    return chat_home[0]


@pytest.fixture
def chat_deps(chat_settings: Settings, tmp_path: Path) -> ChatDeps:
    """Deps over the shared fleet; conversations are private to the test."""
    return ChatDeps(
        settings=chat_settings,
        store=ConversationStore(tmp_path / "conversations"),
        index=open_index(chat_settings),
    )


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Fleet]:
    """The fleet `gridsight demo` names (Office 5, Meter 1, dev-00005), for the evaluation sets."""
    from tests.services.chat.demo_fleet import build_demo_fleet

    settings = Settings(home=tmp_path_factory.mktemp("chat-demo"))
    return settings, build_demo_fleet(settings)


@pytest.fixture
def demo_deps(demo_home: tuple[Settings, Fleet], tmp_path: Path) -> ChatDeps:
    settings = demo_home[0]
    return ChatDeps(
        settings=settings, store=ConversationStore(tmp_path / "conversations"), index=open_index(settings)
    )
