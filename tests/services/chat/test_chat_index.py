"""The vector index: local (hashed n-grams + DuckDB cosine) and the cloud path against fake clients."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from services.chat.documents import example_documents, playbook_documents
from services.chat.index import (
    BigQueryVectorIndex,
    Document,
    HashingEmbedder,
    LocalVectorIndex,
    VertexEmbedder,
)


def test_local_index_finds_the_playbook_section_for_a_question(tmp_path: Path) -> None:
    index = LocalVectorIndex(tmp_path / "index.duckdb", HashingEmbedder())
    index.sync(list(playbook_documents()))
    hits = index.search("how do we cut our standby consumption at night?", k=1, kinds=["playbook"])
    assert hits[0].document.id == "playbook:cut-the-base-load"
    ev = index.search("charging the electric car", k=1)
    assert ev[0].document.id == "playbook:ev-charging"


def test_sync_is_idempotent_and_replaces_changed_documents(tmp_path: Path) -> None:
    path = tmp_path / "index.duckdb"
    docs = [*playbook_documents(), *example_documents()]
    assert LocalVectorIndex(path, HashingEmbedder()).sync(docs) is True
    assert LocalVectorIndex(path, HashingEmbedder()).sync(docs) is False  # a new process sees it is current
    changed = [Document(id="device:dev-001", kind="device", title="Main incomer", text="A three_phase meter")]
    index = LocalVectorIndex(path, HashingEmbedder())
    assert index.sync(changed) is True
    assert [h.document.id for h in index.search("main incomer", k=5)] == ["device:dev-001"]


def test_a_rephrased_question_is_nearest_to_its_known_good_example(tmp_path: Path) -> None:
    index = LocalVectorIndex(tmp_path / "index.duckdb", HashingEmbedder())
    index.sync(list(example_documents()))
    hit = index.search("meters that stopped sending any data", k=1, kinds=["example"])[0]
    assert hit.document.meta["intent"] == "silent_devices"


class FakeGenai:
    """google-genai's `models.embed_content` shape; deterministic vectors from the text."""

    def __init__(self) -> None:
        self.models = self
        self.calls: list[list[str]] = []

    def embed_content(self, *, model: str, contents: list[str]) -> Any:
        self.calls.append(contents)
        vectors = [HashingEmbedder().embed([c])[0][:8].tolist() for c in contents]
        return SimpleNamespace(embeddings=[SimpleNamespace(values=v) for v in vectors])


class FakeBigQuery:
    """Records what the index sends to BigQuery and answers VECTOR_SEARCH with one row."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, Any]] = []
        self.loaded: list[dict] = []

    def query(self, sql: str, job_config: Any = None) -> Any:
        self.queries.append((sql, job_config))
        if "VECTOR_SEARCH" in sql:
            row = {
                "doc_id": "playbook:x",
                "kind": "playbook",
                "title": "X",
                "text": "t",
                "meta": "{}",
                "score": 0.9,
            }
            return SimpleNamespace(result=lambda: [row])
        return SimpleNamespace(result=lambda: [{"f": None}])

    def load_table_from_json(self, rows: list[dict], table: str, job_config: Any = None) -> Any:
        self.loaded = rows
        return SimpleNamespace(result=lambda: None)


def test_cloud_index_loads_vertex_vectors_and_searches_with_vector_search() -> None:
    genai, bq = FakeGenai(), FakeBigQuery()
    index = BigQueryVectorIndex(bq, "proj.energy_analytics.chat_documents", VertexEmbedder(genai, dim=8))
    docs = list(playbook_documents())
    assert index.sync(docs) is True
    assert index.sync(docs) is False  # same fingerprint: nothing re-embedded or re-loaded
    assert len(bq.loaded) == len(docs)
    assert len(bq.loaded[0]["embedding"]) == 8
    hits = index.search("standby", k=2, kinds=["playbook"])
    sql, config = bq.queries[-1]
    assert "VECTOR_SEARCH" in sql
    assert "distance_type => 'COSINE'" in sql
    names = {p.name: p for p in config.query_parameters}
    assert names["k"].value == 2
    assert names["kinds"].values == ["playbook"]
    assert genai.calls[-1] == ["standby"]
    assert np.allclose(names["query"].values, VertexEmbedder(FakeGenai(), dim=8).embed(["standby"])[0])
    assert hits[0].document.id == "playbook:x"


def test_learned_embeddings_find_a_paraphrase_that_shares_no_keyword(tmp_path: Path) -> None:
    from services.chat.documents import example_documents
    from services.chat.index import local_embedder

    index = LocalVectorIndex(tmp_path / "hybrid.duckdb", local_embedder("hybrid"))
    index.sync(list(example_documents()))
    # hashed n-grams alone rank another intent first here; the learned part knows "wattage" is power
    hit = index.search("mean wattage of a meter during office hours on working days", k=1, kinds=["example"])[
        0
    ]
    assert hit.document.meta["intent"] == "usage"
    exact = index.search("dev-00005 voltage and install date", k=1, kinds=["example"])[0]
    assert exact.document.meta["intent"] == "device_facts"  # ids still match by their letters
