"""HTTP client for the smart-meter vendor API: auth, timeouts, one retry policy, keyset paging.

Kept apart from connector.py (as the SDK's timescale_db example does) so the sync logic reads as a
table of contents. Self-contained: `fivetran deploy` ships only this folder.
"""

# urllib (stdlib) rather than requests: `fivetran debug` runs pipreqs over this folder, and pipreqs
# maps `import requests` to "Requests", misses the installed package and goes to PyPI for it
# (three attempts with sleeps: about 20 s before every local sync, or a failure offline).
# tenacity: one declarative retry policy instead of hand-written loops.
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

_TIMEOUT_S = 30  # per blocking socket operation (connect, each read)
_MAX_ATTEMPTS = 8
_BACKOFF_INITIAL_S = 0.5
_BACKOFF_MAX_S = 30.0
_RETRY_AFTER_CAP_S = 120.0
_USER_AGENT = "gridsight-fivetran-connector/1.0"

TIMEOUT_S = _TIMEOUT_S
MAX_ATTEMPTS = _MAX_ATTEMPTS


class VendorApiError(RuntimeError):
    """The vendor API answered in a way retrying cannot fix (bad key, bad request, exhausted retries)."""


class RetryableError(RuntimeError):
    """A 429 or 5xx: worth another attempt, after `retry_after_s` if the server said so."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


_backoff = wait_exponential_jitter(initial=_BACKOFF_INITIAL_S, max=_BACKOFF_MAX_S, jitter=_BACKOFF_INITIAL_S)


def _wait(retry_state: RetryCallState) -> float:
    """Honour the server's Retry-After (capped); otherwise capped exponential backoff with jitter."""
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, RetryableError) and error.retry_after_s is not None:
        return min(error.retry_after_s, _RETRY_AFTER_CAP_S)
    return _backoff(retry_state)


def _give_up(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    raise VendorApiError(
        f"vendor API still failing after {retry_state.attempt_number} attempts: {error}"
    ) from error


class VendorClient:
    """Every call has a timeout and goes through the same retry policy."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": _USER_AGENT,
            "Accept": "application/json",
        }
        self.requests_made = 0

    def close(self) -> None:
        """Nothing pooled to release; kept so callers can treat every client alike."""

    @retry(
        retry=retry_if_exception_type((RetryableError, TimeoutError, socket.timeout, URLError)),
        wait=_wait,
        stop=stop_after_attempt(_MAX_ATTEMPTS),
        retry_error_callback=_give_up,
    )
    def get(self, path: str, params: dict) -> dict:
        self.requests_made += 1
        url = f"{self.base_url}{path}?{urlencode(params)}"
        if not url.startswith(("http://", "https://")):
            raise VendorApiError(f"refusing non-HTTP URL {url!r}")
        try:
            with urlopen(Request(url, headers=self._headers), timeout=_TIMEOUT_S) as response:  # noqa: S310
                raw = response.read()
        except HTTPError as exc:
            _raise_for_status(exc, path)
        try:
            return json.loads(raw, parse_int=_int_or_text)
        except ValueError as exc:
            raise RetryableError(f"response from {path} is not JSON (truncated?)") from exc

    def pages(self, path: str, params: dict) -> Iterator[list]:
        """Yield each page's `data`, following `next_page_token` until the server omits it."""
        for body in self.bodies(path, params):
            yield body.get("data") or []

    def bodies(self, path: str, params: dict) -> Iterator[dict]:
        """Yield each page's whole body (the fleet feed also reads its `as_of`), following
        `next_page_token` until the server omits it."""
        token = None
        while True:
            query = dict(params)
            if token:
                query["page_token"] = token
            body = self.get(path, query)
            yield body if isinstance(body, dict) else {}
            token = body.get("next_page_token") if isinstance(body, dict) else None
            if not token:
                return

    def readings_path(self, device_id: str) -> str:
        return f"/v1/devices/{quote(device_id, safe='')}/readings"


def _int_or_text(digits: str):
    """An integer literal as int, unless it has more digits than any float can hold: then its text,
    which validation quarantines as "not a finite number" (Python refuses ints of more than 4,300
    digits with ValueError, which would fail the whole page, and so the sync, every time)."""
    return int(digits) if len(digits) <= 310 else digits


def _raise_for_status(error: HTTPError, path: str):
    status = error.code
    body = error.read()[:300].decode("utf-8", "replace")
    error.close()
    if status == 429 or status >= 500:
        raise RetryableError(
            f"HTTP {status} from {path}", parse_retry_after(error.headers.get("Retry-After"))
        )
    if status in (401, 403):
        raise VendorApiError(f"the vendor API rejected the api_key (HTTP {status}); check configuration")
    try:
        message = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        message = body
    raise VendorApiError(f"HTTP {status} from {path}: {message}")
