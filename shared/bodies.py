"""Request bodies every service reads: bounded before they are read, parsed without a 500.

A body over the limit is a 413 (`PayloadTooLarge`) whether it announces its size or streams chunks
without one (the limit holds while reading). A body that is not JSON, deep nesting included (the C
parser's RecursionError, which Flask's own parsing lets through as an HTML 500), is an
InvalidEvent: 400 with a JSON message. Limits are settings (`*_max_body_bytes`, README).
"""

from __future__ import annotations

import json
from typing import Any

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from shared.errors import GridsightError, InvalidEvent

__all__ = ["PayloadTooLarge", "limit_request", "parse_json", "read_body"]


class PayloadTooLarge(GridsightError):
    status = 413


def limit_request(request: flask.Request, limit: int) -> None:
    """Bound whatever reads this request's body from now on, this service or functions-framework
    (which drains the body after every response, whatever the route): PayloadTooLarge (413) at once
    for an announced size over `limit`, and an unsized (chunked) body is cut at `limit` + 1 bytes."""
    if request.content_length is not None and request.content_length > limit:
        # hand the drain an empty body so an announced gigabyte is never read (the server then
        # closes the connection)
        request._cached_data = b""
        size = request.content_length
        raise PayloadTooLarge(f"request body of {size} bytes is over the {limit} bytes limit")
    # an unsized body is cut at max_content_length without an error, so allow one byte more than
    # the limit: getting it means the body is too large (read_body)
    request.max_content_length = limit + 1


def read_body(request: flask.Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes; PayloadTooLarge (413) beyond that, before reading it all."""
    limit_request(request, limit)
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body is over the {limit} bytes limit") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"request body is over the {limit} bytes limit")
    return body


def parse_json(body: bytes, what: str = "body") -> Any:
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise InvalidEvent(f"{what} is not JSON we accept: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidEvent(f"{what} is not JSON: {str(exc)[:200]}") from exc
