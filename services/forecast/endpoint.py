"""Client of the prediction endpoint: the local model server over HTTP, or a Vertex AI Endpoint.

Calls go in bounded batches (`settings.forecast_batch_size` instances) and are retried with
backoff; when the endpoint stays down (connection refused, timeout, 5xx, no model yet) the caller
gets a TransientError, so handle_push answers 503 and Pub/Sub redelivers the event later. A 4xx
means our own instances are wrong, which no retry fixes: InvalidEvent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import requests
from pydantic import ValidationError
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.forecast.contract import Instance, Prediction, PredictRequest, PredictResponse
from shared.errors import InvalidEvent, TransientError
from shared.settings import Settings

__all__ = ["Endpoint", "HttpEndpoint", "VertexEndpoint", "open_endpoint", "predict_batched"]


class _Retryable(Exception):
    """A failure worth another attempt (network, timeout, 5xx)."""


class Endpoint(Protocol):
    def predict(self, instances: Sequence[Instance]) -> list[Prediction]: ...


def _instances_json(instances: Sequence[Instance]) -> list[dict[str, Any]]:
    return [inst.model_dump(mode="json", exclude_none=True) for inst in instances]


def _parse_predictions(body: Any, expected: int) -> list[Prediction]:
    try:
        if isinstance(body, bytes | str):
            predictions = PredictResponse.model_validate_json(body).predictions
        else:
            predictions = PredictResponse.model_validate(body).predictions
    except ValidationError as exc:
        raise TransientError(
            f"endpoint returned an unexpected response: {exc.error_count()} problems"
        ) from exc
    if len(predictions) != expected:
        raise TransientError(f"endpoint returned {len(predictions)} predictions for {expected} instances")
    return predictions


class HttpEndpoint:
    """The model server at `url` (the Vertex custom-container contract, run locally)."""

    def __init__(
        self, url: str, *, timeout_s: float = 30.0, attempts: int = 3, backoff_s: float = 0.5
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._session = requests.Session()

    def _post_once(self, payload: str) -> bytes:
        try:
            response = self._session.post(
                self.url, data=payload, headers={"Content-Type": "application/json"}, timeout=self.timeout_s
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"model server {self.url} unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise _Retryable(
                f"model server {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        if response.status_code >= 400:
            raise InvalidEvent(
                f"model server rejected the instances ({response.status_code}): {response.text[:500]}"
            )
        return response.content

    def predict(self, instances: Sequence[Instance]) -> list[Prediction]:
        payload = PredictRequest.model_construct(instances=list(instances), parameters=None).model_dump_json(
            exclude_none=True
        )
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=10 * self.backoff_s),
            retry=retry_if_exception_type(_Retryable),
            reraise=False,
        )
        try:
            body = retrying(self._post_once, payload)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise TransientError(f"{cause} (after {self.attempts} attempts)") from cause
        return _parse_predictions(body, len(instances))


class VertexEndpoint:
    """An `aiplatform.Endpoint` serving the model-server container."""

    def __init__(self, settings: Settings) -> None:
        if not settings.vertex_endpoint_id:
            raise ValueError("endpoint_backend=vertex needs GRIDSIGHT_VERTEX_ENDPOINT_ID")
        from google.cloud import aiplatform

        self._endpoint = aiplatform.Endpoint(
            endpoint_name=settings.vertex_endpoint_id,
            project=settings.gcp_project,
            location=settings.gcp_region,
        )
        self.attempts = settings.forecast_endpoint_attempts
        self.timeout_s = settings.forecast_endpoint_timeout_s

    def predict(self, instances: Sequence[Instance]) -> list[Prediction]:
        from google.api_core import exceptions as gexc

        retryable = (
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.TooManyRequests,
        )
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception_type(retryable),
            reraise=True,
        )
        try:
            response = retrying(
                self._endpoint.predict, instances=_instances_json(instances), timeout=self.timeout_s
            )
        except retryable as exc:
            raise TransientError(f"Vertex endpoint unavailable: {exc}") from exc
        except gexc.FailedPrecondition as exc:
            # An endpoint with no deployed model (before the first `deploy-model`, or between an
            # undeploy and a deploy) answers FAILED_PRECONDITION: temporary, so 503 and Pub/Sub
            # redelivers the event until a model serves (no in-process retry: that takes minutes).
            raise TransientError(f"Vertex endpoint has no deployed model ready yet: {exc}") from exc
        except gexc.InvalidArgument as exc:
            raise InvalidEvent(f"Vertex endpoint rejected the instances: {exc}") from exc
        return _parse_predictions({"predictions": list(response.predictions)}, len(instances))


def open_endpoint(settings: Settings) -> Endpoint:
    if settings.endpoint_backend == "vertex":
        return VertexEndpoint(settings)
    url = f"http://{settings.model_server_host}:{settings.model_server_port}/predict"
    return HttpEndpoint(
        url, timeout_s=settings.forecast_endpoint_timeout_s, attempts=settings.forecast_endpoint_attempts
    )


def predict_batched(endpoint: Endpoint, instances: Sequence[Instance], batch_size: int) -> list[Prediction]:
    """Predictions for all instances, `batch_size` per call, in order."""
    out: list[Prediction] = []
    for start in range(0, len(instances), batch_size):
        out.extend(endpoint.predict(instances[start : start + batch_size]))
    return out
