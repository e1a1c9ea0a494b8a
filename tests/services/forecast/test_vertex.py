"""The Vertex AI paths, with only the Google Cloud SDK objects replaced (aiplatform.Endpoint and
aiplatform.CustomJob): what we send them and how their failures map to our errors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform

from services.forecast.contract import Instance, Prediction
from services.forecast.endpoint import VertexEndpoint, open_endpoint
from services.forecast.training import submit_vertex_training
from shared.errors import InvalidEvent, TransientError
from shared.settings import Settings
from tests.services.forecast.conftest import ORIGIN


class FakeEndpoint:
    def __init__(self, endpoint_name: str, project: str, location: str) -> None:
        self.name, self.project, self.location = endpoint_name, project, location
        self.failures: list[Exception] = []
        self.calls: list[list[dict[str, Any]]] = []

    def predict(self, instances: list[dict[str, Any]], timeout: float | None = None) -> Any:
        self.calls.append(instances)
        if self.failures:
            raise self.failures.pop(0)
        predictions = [
            Prediction(
                device_id=i["device_id"],
                origin=ORIGIN,
                model_version="v1",
                target_hours=Prediction.hours_from(ORIGIN),
                p10=[1.0] * 24,
                p50=[2.0] * 24,
                p90=[3.0] * 24,
            ).model_dump(mode="json")
            for i in instances
        ]
        return SimpleNamespace(predictions=predictions)


@pytest.fixture
def vertex_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(aiplatform, "Endpoint", FakeEndpoint)
    return settings.model_copy(
        update={"endpoint_backend": "vertex", "vertex_endpoint_id": "123", "forecast_endpoint_attempts": 2}
    )


def _instances() -> list[Instance]:
    return [Instance(device_id="d1", origin=ORIGIN, kwh=[1.0] * 336)]


def test_vertex_endpoint_sends_instances_and_parses_predictions(vertex_settings: Settings) -> None:
    endpoint = open_endpoint(vertex_settings)
    assert isinstance(endpoint, VertexEndpoint)
    predictions = endpoint.predict(_instances())
    assert [p.device_id for p in predictions] == ["d1"]
    assert endpoint._endpoint.calls[0][0]["kwh"] == [1.0] * 336
    assert endpoint._endpoint.name == "123"


def test_vertex_unavailable_is_retried_then_transient(vertex_settings: Settings) -> None:
    endpoint = open_endpoint(vertex_settings)
    endpoint._endpoint.failures = [gexc.ServiceUnavailable("down"), gexc.ServiceUnavailable("down")]
    with pytest.raises(TransientError, match="Vertex endpoint unavailable"):
        endpoint.predict(_instances())
    assert len(endpoint._endpoint.calls) == 2


def test_vertex_endpoint_without_a_deployed_model_is_transient_and_not_retried_in_process(
    vertex_settings: Settings,
) -> None:
    """Before the first model is deployed the endpoint answers FAILED_PRECONDITION: 503, redelivered."""
    endpoint = open_endpoint(vertex_settings)
    endpoint._endpoint.failures = [gexc.FailedPrecondition("Endpoint does not have any deployed model")]
    with pytest.raises(TransientError, match="no deployed model") as raised:
        endpoint.predict(_instances())
    assert raised.value.status == 503
    assert len(endpoint._endpoint.calls) == 1


def test_vertex_rejecting_instances_is_an_invalid_event(vertex_settings: Settings) -> None:
    endpoint = open_endpoint(vertex_settings)
    endpoint._endpoint.failures = [gexc.InvalidArgument("bad")]
    with pytest.raises(InvalidEvent):
        endpoint.predict(_instances())


def test_vertex_training_job_runs_this_trainer_on_bigquery(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: dict[str, Any] = {}

    class FakeJob:
        resource_name = "projects/p/locations/l/customJobs/1"

        def __init__(self, display_name: str, worker_pool_specs: list[dict[str, Any]]) -> None:
            made["specs"] = worker_pool_specs

        def submit(self) -> None:
            made["submitted"] = True

    monkeypatch.setattr(aiplatform, "init", lambda **kw: made.setdefault("init", kw))
    monkeypatch.setattr(aiplatform, "CustomJob", FakeJob)
    with pytest.raises(ValueError, match="VERTEX_TRAINING_IMAGE"):
        submit_vertex_training(settings)
    cloud = settings.model_copy(update={"vertex_training_image": "img:1", "model_bucket": "b"})
    assert submit_vertex_training(cloud) == FakeJob.resource_name
    container = made["specs"][0]["container_spec"]
    assert container["command"] == ["python", "-m", "services.forecast.training"]
    assert {"name": "GRIDSIGHT_WAREHOUSE_BACKEND", "value": "bigquery"} in container["env"]
    assert made["init"]["staging_bucket"] == "gs://b"
    assert made["submitted"]
