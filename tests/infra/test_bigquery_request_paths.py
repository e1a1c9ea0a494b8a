"""No request path creates or alters a BigQuery dataset or table (#20): Terraform owns them.

The services run in BigQuery mode against bqemulator with the official client. The emulator cannot
enforce IAM (in a project the runtime accounts have no `bigquery.datasets.create` and chat may only
write `chat_documents`), so the test records the calls instead: every `bigquery.Client` method that
creates, updates or deletes a dataset or table, every DDL statement sent as a query, and every load
job allowed to create its table. The calls still reach the emulator unchanged.

Driven, in the order of a first sync: ingest's push (refresh on BigQuery) and its redelivery,
forecast's push (no model server: 503, which records a failed run), anomaly's push, a chat
question and the dashboard's fleet data.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import functions_framework
import pytest
from google.cloud import bigquery

from services.chat.answer import build_deps
from services.chat.dashboard import handle_dashboard
from services.chat.main import handle_chat
from services.chat.ratelimit import RateLimiter
from shared.bus.local import QueueStore
from shared.events import FeaturesRefreshed, SyncCompleted
from shared.settings import REPO_ROOT, Settings
from shared.warehouse import open_warehouse
from tests.emulator import PROJECT, provision_bigquery
from tests.pushing import authorized, push_envelope
from tests.sql.landing import START, land_fleet, mirror_raw_to_bigquery

pytestmark = pytest.mark.emulator

DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE)\b", re.IGNORECASE)
CHANGING_METHODS = (
    "create_dataset",
    "update_dataset",
    "delete_dataset",
    "create_table",
    "update_table",
    "delete_table",
    "create_routine",
)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Start recording schema-changing calls on every bigquery.Client; returns a starter."""
    calls: list[str] = []

    def start() -> list[str]:
        for name in CHANGING_METHODS:
            original = getattr(bigquery.Client, name)

            def spy(
                self: bigquery.Client, *args: Any, _name: str = name, _orig: Any = original, **kw: Any
            ) -> Any:
                calls.append(f"{_name}({args[0] if args else ''})")
                return _orig(self, *args, **kw)

            monkeypatch.setattr(bigquery.Client, name, spy)
        query = bigquery.Client.query

        def query_spy(self: bigquery.Client, sql: str, *args: Any, **kw: Any) -> Any:
            if DDL.match(sql):
                calls.append(f"query({sql[:80]})")
            return query(self, sql, *args, **kw)

        monkeypatch.setattr(bigquery.Client, "query", query_spy)
        load = bigquery.Client.load_table_from_json

        def load_spy(self: bigquery.Client, rows: Any, destination: Any, *args: Any, **kw: Any) -> Any:
            config = kw.get("job_config")
            if config is None or config.create_disposition != "CREATE_NEVER":
                calls.append(f"load_table_from_json({destination}) may create the table")
            return load(self, rows, destination, *args, **kw)

        monkeypatch.setattr(bigquery.Client, "load_table_from_json", load_spy)
        return calls

    return start  # type: ignore[return-value]


@pytest.fixture
def cloud(
    settings: Settings, tmp_path: Path, bqemu_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A fleet landed in the emulator's raw dataset, the tables Terraform would create, and the
    services' environment pointed at BigQuery (the bus stays local: its queue is the witness)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "GRIDSIGHT_HOME": str(tmp_path / "cloud-home"),
        "GRIDSIGHT_WAREHOUSE_BACKEND": "bigquery",
        "GRIDSIGHT_BIGQUERY_API_ENDPOINT": bqemu_endpoint,
        "GRIDSIGHT_GCP_PROJECT": PROJECT,
        "GRIDSIGHT_RAW_DATASET": f"raw_{tag}",
        "GRIDSIGHT_ANALYTICS_DATASET": f"energy_analytics_{tag}",
        "GRIDSIGHT_FORECAST_ENDPOINT_ATTEMPTS": "1",
        "GRIDSIGHT_MODEL_SERVER_PORT": "9",  # nothing listens: the forecast push fails transiently
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bq = Settings()
    land_fleet(settings, days=2, devices=3)
    mirror_raw_to_bigquery(settings, bq)
    return provision_bigquery(bq)


def _client(service: str) -> Any:
    app = functions_framework.create_app(target="app", source=str(REPO_ROOT / f"services/{service}/main.py"))
    return authorized(app.test_client())


def _published_features(settings: Settings) -> FeaturesRefreshed:
    store = QueueStore.open(settings)
    try:
        rows = store._conn.execute("SELECT data FROM messages WHERE topic = 'features-refreshed'").fetchall()
    finally:
        store.close()
    [(data,)] = rows
    return FeaturesRefreshed.model_validate_json(data)


def test_no_request_path_creates_or_alters_a_dataset_or_table(
    cloud: Settings, recorded: Callable[[], list[str]]
) -> None:
    calls = recorded()
    sync = SyncCompleted(connection_id=cloud.fivetran_connection_id, sync_id="sync-1", sync_ended_at=START)
    envelope = push_envelope(sync, subscription="ingest-refresh", correlation_id="sync-1")
    ingest = _client("ingest")
    first = ingest.post("/pubsub/sync-completed", json=envelope)
    assert first.status_code == 204, first.get_data(as_text=True)
    assert ingest.post("/pubsub/sync-completed", json=envelope).status_code == 204  # redelivery

    features = _published_features(cloud)
    assert features.device_ids == ["dev-00000", "dev-00001", "dev-00002"]
    pushed = push_envelope(features, subscription="forecast-features", message_id="m2")
    forecast = _client("forecast").post("/pubsub/features-refreshed", json=pushed)
    assert forecast.status_code == 503, forecast.get_data(as_text=True)
    pushed = push_envelope(features, subscription="anomaly-features", message_id="m3")
    anomaly = _client("anomaly").post("/pubsub/features-refreshed", json=pushed)
    assert anomaly.status_code == 204, anomaly.get_data(as_text=True)

    deps = build_deps(cloud)
    app = flask.Flask("chat")
    key = cloud.chat_api_keys.get_secret_value()
    with app.test_request_context(
        "/v1/chat",
        method="POST",
        data=json.dumps({"question": "How much energy did dev-00001 use on 2026-03-01?"}),
        headers={"X-API-Key": key},
    ):
        chat = handle_chat(flask.request, deps, RateLimiter(60))
    assert chat.status_code == 200, chat.get_data(as_text=True)
    with app.test_request_context("/api/dashboard/fleet", headers={"X-API-Key": key}):
        dashboard = handle_dashboard(flask.request, cloud)
    assert dashboard is not None
    assert dashboard.status_code == 200, dashboard.get_data(as_text=True)

    assert calls == [], "request paths changed the BigQuery schema:\n" + "\n".join(calls)
    with open_warehouse(cloud) as wh:  # the paths above really worked on BigQuery
        hours = wh.query("SELECT COUNT(*) AS n FROM energy_analytics.hourly_consumption").to_pylist()
        runs = wh.query(
            "SELECT handler, status FROM energy_analytics.pipeline_runs ORDER BY handler"
        ).to_pylist()
    assert hours == [{"n": 3 * 48}]
    assert {(r["handler"], r["status"]) for r in runs} >= {("forecast", "failed"), ("anomaly", "succeeded")}
