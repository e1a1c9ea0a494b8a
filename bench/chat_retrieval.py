"""Retrieval quality of the local vector index: hashed n-grams vs learned (wordllama) vs both.

Asks the paraphrases in tests/services/chat/eval/retrieval.yaml of an index holding the known-good
questions and the playbook, and prints recall@1, recall@3 and MRR per embedder, plus the time to
embed one query. A hit is relevant when it is a known question of the expected intent, or the
expected playbook section.

    .venv/bin/python bench/chat_retrieval.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.chat.documents import example_documents, playbook_documents
from services.chat.index import LocalVectorIndex, local_embedder

SET = Path(__file__).resolve().parent.parent / "tests/services/chat/eval/retrieval.yaml"


def score(kind: str, tmp: Path) -> dict[str, float]:
    embedder = local_embedder(kind)
    index = LocalVectorIndex(tmp / f"{kind}.duckdb", embedder)
    index.sync([*example_documents(), *playbook_documents()])
    spec = yaml.safe_load(SET.read_text())
    ranks: list[int | None] = []
    timings: list[float] = []
    cases = [(c["q"], "example", c) for c in spec["examples"]] + [
        (c["q"], "playbook", c) for c in spec["playbook"]
    ]
    for query, doc_kind, case in cases:
        t0 = time.perf_counter()
        embedder.embed([query])
        timings.append((time.perf_counter() - t0) * 1000)
        hits = index.search(query, k=10, kinds=[doc_kind])
        relevant = [
            (h.document.meta.get("intent") == case["intent"])
            if doc_kind == "example"
            else h.document.id == f"playbook:{case['playbook']}"
            for h in hits
        ]
        ranks.append(relevant.index(True) + 1 if True in relevant else None)
    n = len(ranks)
    return {
        "queries": n,
        "recall@1": sum(r == 1 for r in ranks) / n,
        "recall@3": sum(r is not None and r <= 3 for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
        "embed_ms_median": statistics.median(timings),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="chat-retrieval-") as tmp:
        print(f"{'embedder':10} {'queries':>7} {'recall@1':>9} {'recall@3':>9} {'MRR':>6} {'embed ms':>9}")
        for kind in ("hashed", "learned", "hybrid"):
            s = score(kind, Path(tmp))
            print(
                f"{kind:10} {s['queries']:>7.0f} {s['recall@1']:>9.2f} {s['recall@3']:>9.2f} "
                f"{s['mrr']:>6.2f} {s['embed_ms_median']:>9.2f}"
            )


if __name__ == "__main__":
    main()
