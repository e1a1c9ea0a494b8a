"""The error tree every service maps to an HTTP status in one place.

GridsightError
├── InvalidEvent     400: the message can never succeed; Pub/Sub dead-letters it
├── SignatureError   401: unsigned or wrongly signed webhook / push token
├── NotFound         404: an unknown device, site or route parameter
└── TransientError   503: a dependency is down; Pub/Sub redelivers with backoff
"""

from __future__ import annotations

__all__ = ["GridsightError", "InvalidEvent", "NotFound", "SignatureError", "TransientError", "status_for"]


class GridsightError(Exception):
    status = 500


class InvalidEvent(GridsightError):
    status = 400


class SignatureError(GridsightError):
    status = 401


class NotFound(GridsightError):
    status = 404


class TransientError(GridsightError):
    status = 503


def status_for(exc: BaseException) -> int:
    return exc.status if isinstance(exc, GridsightError) else 500
