"""The vector index of documents behind one interface: local (hashed n-grams + DuckDB) or cloud
(Vertex text embeddings + BigQuery VECTOR_SEARCH), chosen by `settings.embedding_backend`.

Locally the embedder is learned sentence embeddings from `wordllama` (its weights ship in the PyPI
wheel, so nothing is downloaded) joined with hashed word and character n-grams (scikit-learn's
HashingVectorizer): meaning from the first, ids and typos from the second. bench/chat_retrieval.py
measures both alone and together on paraphrased questions and documents. The index lives in its
own DuckDB file under settings.home (not the warehouse file, so searching never takes the warehouse
lock) and is rebuilt only when the documents' fingerprint changes, so a sync is idempotent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock
from pydantic import BaseModel, Field

from shared.settings import Settings

__all__ = [
    "BigQueryVectorIndex",
    "Document",
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "HybridEmbedder",
    "LocalVectorIndex",
    "VectorIndex",
    "VertexEmbedder",
    "WordLlamaEmbedder",
    "fingerprint",
    "local_embedder",
    "open_index",
]

LOCAL_DIM = 1024


class Document(BaseModel):
    id: str
    kind: str = Field(description="device | site | incident | playbook | example")
    title: str
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)


class Hit(BaseModel):
    document: Document
    score: float


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class VectorIndex(Protocol):
    def sync(self, documents: Sequence[Document]) -> bool:
        """Make the index hold exactly `documents`; False when it already did (nothing written)."""
        ...

    def search(self, query: str, *, k: int = 3, kinds: Sequence[str] = ()) -> list[Hit]: ...


def _embedding_text(doc: Document) -> str:
    return f"{doc.title}\n{doc.text}\n{doc.meta.get('keywords', '')}"


def fingerprint(documents: Sequence[Document]) -> str:
    digest = hashlib.sha256()
    for doc in sorted(documents, key=lambda d: d.id):
        digest.update(doc.model_dump_json().encode())
    return digest.hexdigest()[:32]


class HashingEmbedder:
    """Content words plus character 3-5-grams (for typos and ids), each hashed into half of LOCAL_DIM
    buckets and weighted equally; unit length, so a dot product is the cosine."""

    dim = LOCAL_DIM

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        half = self.dim // 2
        self._words = HashingVectorizer(
            analyzer="word", stop_words="english", n_features=half, alternate_sign=False, norm="l2"
        )
        self._chars = HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=half, alternate_sign=False, norm="l2"
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        words = self._words.transform(list(texts)).toarray()
        chars = self._chars.transform(list(texts)).toarray()
        joined = np.hstack([words, chars])
        norms = np.linalg.norm(joined, axis=1, keepdims=True)
        return (joined / np.where(norms == 0, 1, norms)).astype(np.float32)


class WordLlamaEmbedder:
    """Learned sentence embeddings from `wordllama` (256-d, its 16 MB weights ship in the wheel).

    Token embeddings distilled from a large language model, average-pooled: it knows that "consumed"
    is "used" and "stopped sending data" is "silent", which hashed n-grams cannot. Loaded from the
    package folder with downloads disabled, so it never reaches the network (the package would
    otherwise fetch its tokenizer from Hugging Face, a path bug in 0.4.0).
    """

    dim = 256

    def __init__(self) -> None:
        import wordllama
        from wordllama import WordLlama

        self._model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._model.embed(list(texts), norm=True), dtype=np.float32)
        return vectors.reshape(len(texts), self.dim)


class HybridEmbedder:
    """Learned meaning plus exact wording: [sqrt(w) * learned, sqrt(1 - w) * hashed], unit length.

    The cosine of two such vectors is w * cos(learned) + (1 - w) * cos(hashed), so a paraphrase
    scores by meaning while ids and typos ("dev-00005", "ofice") still match by their letters.
    """

    def __init__(self, learned: Embedder, lexical: Embedder, weight: float = 0.7) -> None:
        self._learned, self._lexical, self._weight = learned, lexical, weight
        self.dim = learned.dim + lexical.dim
        self.name = "hybrid"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        a = self._learned.embed(texts) * np.sqrt(self._weight)
        b = self._lexical.embed(texts) * np.sqrt(1 - self._weight)
        return np.hstack([a, b]).astype(np.float32)


def local_embedder(kind: str = "hybrid") -> Embedder:
    """hashed (n-grams only, the former default), learned (wordllama only) or hybrid (both)."""
    if kind == "hashed":
        return HashingEmbedder()
    if kind == "learned":
        return WordLlamaEmbedder()
    return HybridEmbedder(WordLlamaEmbedder(), HashingEmbedder())


class LocalVectorIndex:
    def __init__(self, path: Path, embedder: Embedder) -> None:
        self._path = path
        self._lock = FileLock(str(path.with_suffix(".lock")), timeout=60)
        self._embedder = embedder
        self._known: str | None = None

    def _connect(self, *, read_only: bool = False) -> Any:
        import duckdb

        return duckdb.connect(str(self._path), read_only=read_only)

    def sync(self, documents: Sequence[Document]) -> bool:
        wanted = fingerprint(documents)
        if wanted == self._known:
            return False
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (fingerprint VARCHAR)")
            row = conn.execute("SELECT max(fingerprint) FROM meta").fetchone()
            if row and row[0] == wanted:
                self._known = wanted
                return False
            vectors = self._embedder.embed([_embedding_text(d) for d in documents]) if documents else None
            conn.execute(
                f"CREATE OR REPLACE TABLE docs (doc_id VARCHAR PRIMARY KEY, kind VARCHAR, "
                f"title VARCHAR, text VARCHAR, meta VARCHAR, embedding FLOAT[{self._embedder.dim}])"
            )
            if documents and vectors is not None:
                import pyarrow as pa

                table = pa.table(
                    {
                        "doc_id": [d.id for d in documents],
                        "kind": [d.kind for d in documents],
                        "title": [d.title for d in documents],
                        "text": [d.text for d in documents],
                        "meta": [json.dumps(d.meta) for d in documents],
                        "embedding": pa.FixedSizeListArray.from_arrays(
                            pa.array(vectors.ravel(), type=pa.float32()), self._embedder.dim
                        ),
                    }
                )
                conn.register("incoming_docs", table)
                conn.execute("INSERT INTO docs SELECT * FROM incoming_docs")
                conn.unregister("incoming_docs")
            conn.execute("DELETE FROM meta")
            conn.execute("INSERT INTO meta VALUES (?)", [wanted])
        self._known = wanted
        return True

    def search(self, query: str, *, k: int = 3, kinds: Sequence[str] = ()) -> list[Hit]:
        if not self._path.exists():
            return []
        vector = self._embedder.embed([query])[0].tolist()
        with self._lock, self._connect(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT doc_id, kind, title, text, meta, "
                f"array_cosine_similarity(embedding, ?::FLOAT[{self._embedder.dim}]) AS score "
                "FROM docs WHERE (len(?::VARCHAR[]) = 0 OR list_contains(?::VARCHAR[], kind)) "
                "ORDER BY score DESC NULLS LAST, doc_id LIMIT ?",
                [vector, list(kinds), list(kinds), k],
            ).fetchall()
        return [
            Hit(
                document=Document(id=r[0], kind=r[1], title=r[2], text=r[3], meta=json.loads(r[4])),
                score=r[5] or 0.0,
            )
            for r in rows
        ]


class VertexEmbedder:
    """Vertex AI text embeddings through google-genai (the client is injected, so tests can fake it)."""

    def __init__(self, client: Any, model: str = "text-embedding-005", dim: int = 768) -> None:
        self._client = client
        self._model = model
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), 100):  # the API takes a bounded batch per call
            response = self._client.models.embed_content(
                model=self._model, contents=list(texts[start : start + 100])
            )
            vectors.extend(list(e.values) for e in response.embeddings)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


# The columns of `chat_documents` as Terraform creates the table (infra/terraform bigquery.tf; a
# test compares the two). The load passes them explicitly: autodetect on WRITE_TRUNCATE would
# replace the reviewed schema with whatever it guesses from the rows.
DOCUMENT_SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("doc_id", "STRING", "NULLABLE"),
    ("kind", "STRING", "NULLABLE"),
    ("title", "STRING", "NULLABLE"),
    ("text", "STRING", "NULLABLE"),
    ("meta", "STRING", "NULLABLE"),
    ("fingerprint", "STRING", "NULLABLE"),
    ("embedding", "FLOAT64", "REPEATED"),
)


class BigQueryVectorIndex:
    """Documents in `<analytics_dataset>.chat_documents`, searched with VECTOR_SEARCH (cosine)."""

    def __init__(self, client: Any, table: str, embedder: Embedder) -> None:
        self._client = client
        self._table = table
        self._embedder = embedder
        self._known: str | None = None

    def sync(self, documents: Sequence[Document]) -> bool:
        from google.cloud import bigquery

        wanted = fingerprint(documents)
        if wanted == self._known:
            return False
        rows = list(self._client.query(f"SELECT MAX(fingerprint) AS f FROM `{self._table}`").result())
        if rows and rows[0]["f"] == wanted:
            self._known = wanted
            return False
        vectors = self._embedder.embed([_embedding_text(d) for d in documents])
        payload = [
            {
                "doc_id": d.id,
                "kind": d.kind,
                "title": d.title,
                "text": d.text,
                "meta": json.dumps(d.meta),
                "fingerprint": wanted,
                "embedding": vectors[i].tolist(),
            }
            for i, d in enumerate(documents)
        ]
        config = bigquery.LoadJobConfig(
            write_disposition="WRITE_TRUNCATE",
            create_disposition="CREATE_NEVER",  # Terraform owns the table; chat may only write it
            schema=[bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in DOCUMENT_SCHEMA],
            autodetect=False,
        )
        self._client.load_table_from_json(payload, self._table, job_config=config).result()
        self._known = wanted
        return True

    def search(self, query: str, *, k: int = 3, kinds: Sequence[str] = ()) -> list[Hit]:
        from google.cloud import bigquery

        vector = self._embedder.embed([query])[0].tolist()
        sql = (
            f"SELECT base.doc_id, base.kind, base.title, base.text, base.meta, 1 - distance AS score "
            f"FROM VECTOR_SEARCH((SELECT * FROM `{self._table}` WHERE ARRAY_LENGTH(@kinds) = 0 OR kind IN "
            f"UNNEST(@kinds)), 'embedding', (SELECT @query AS embedding), top_k => @k, "
            f"distance_type => 'COSINE') "
            f"ORDER BY score DESC"
        )
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ArrayQueryParameter("query", "FLOAT64", vector),
                bigquery.ArrayQueryParameter("kinds", "STRING", list(kinds)),
                bigquery.ScalarQueryParameter("k", "INT64", k),
            ]
        )
        return [
            Hit(
                document=Document(
                    id=r["doc_id"],
                    kind=r["kind"],
                    title=r["title"],
                    text=r["text"],
                    meta=json.loads(r["meta"] or "{}"),
                ),
                score=float(r["score"]),
            )
            for r in self._client.query(sql, job_config=config).result()
        ]


def open_index(settings: Settings, *, genai_client: Any = None, bigquery_client: Any = None) -> VectorIndex:
    """The configured index; cloud clients are built here unless injected."""
    if settings.embedding_backend == "vertex":
        if genai_client is None:
            from google import genai

            genai_client = genai.Client(
                vertexai=True, project=settings.gcp_project, location=settings.gcp_region
            )
        if bigquery_client is None:
            from google.cloud import bigquery

            bigquery_client = bigquery.Client(project=settings.gcp_project, location=settings.bq_location)
        table = f"{settings.gcp_project}.{settings.analytics_dataset}.chat_documents"
        return BigQueryVectorIndex(bigquery_client, table, VertexEmbedder(genai_client))
    # the file is named by its vectors' size, so an index written by another embedder is never read
    embedder = _cached_embedder()
    return LocalVectorIndex(settings.home / "chat" / f"index-{embedder.dim}.duckdb", embedder)


@cache
def _cached_embedder() -> Embedder:
    """One embedder per process: loading the learned model takes about a second."""
    return local_embedder("hybrid")
