"""The schema of infra/events.yaml, which both Terraform and the local runtime read.

Keeping the schema as a pydantic model means a typo in the YAML fails a test here instead of
surfacing as a missing subscription in the cloud.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.settings import REPO_ROOT

__all__ = ["TOPOLOGY_FILE", "Subscription", "Topic", "Topology", "load_topology"]

TOPOLOGY_FILE = REPO_ROOT / "infra" / "events.yaml"


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    event_type: str
    publisher: str
    subscribers: list[str] = Field(default_factory=list)


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str
    service: str
    path: str = Field(pattern=r"^/")
    ack_deadline_seconds: int = Field(ge=10, le=600)
    min_backoff_seconds: float = Field(ge=0, le=600)
    max_backoff_seconds: float = Field(ge=0, le=600)
    max_delivery_attempts: int = Field(ge=5, le=100)


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic_suffix: str
    subscription_suffix: str
    retention_seconds: int


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port_setting: str


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topics: dict[str, Topic]
    subscriptions: dict[str, Subscription]
    dead_letter: DeadLetter
    services: dict[str, ServiceSpec]

    @model_validator(mode="after")
    def _references_resolve(self) -> Topology:
        for name, sub in self.subscriptions.items():
            if sub.topic not in self.topics:
                raise ValueError(f"subscription {name} names unknown topic {sub.topic}")
            if sub.service not in self.services:
                raise ValueError(f"subscription {name} names unknown service {sub.service}")
            if sub.min_backoff_seconds > sub.max_backoff_seconds:
                raise ValueError(f"subscription {name}: min_backoff_seconds > max_backoff_seconds")
        return self

    def dead_letter_topic(self, subscription: str) -> str:
        return f"{subscription}{self.dead_letter.topic_suffix}"

    def subscriptions_of(self, topic: str) -> dict[str, Subscription]:
        return {name: s for name, s in self.subscriptions.items() if s.topic == topic}


@cache
def _load(path: Path) -> Topology:
    return Topology.model_validate(yaml.safe_load(path.read_text()))


def load_topology(path: Path = TOPOLOGY_FILE) -> Topology:
    return _load(path.resolve())
