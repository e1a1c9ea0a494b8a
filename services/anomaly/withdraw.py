"""Late data and the incidents it disproves.

A missing hour becomes a `dropout` incident once the fleet is `dropout_grace_h` hours past it, but
some meters upload 6-hourly backlogs: the hours arrive later and the incident was false. When a
refresh brings those hours in, re-scoring them no longer finds a dropout there; the incident is
then *withdrawn* (status 'withdrawn', `withdrawn_at` set), never deleted, so the audit trail keeps
what was raised and when, and whoever was alerted gets a follow-up. A withdrawn row is never
matched again by later scoring, so no redelivery can reopen it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "OPEN",
    "WITHDRAWN",
    "WITHDRAWN_REASON",
    "Presence",
    "find_withdrawn",
    "is_withdrawn",
    "reissued_id",
]

OPEN = "open"
WITHDRAWN = "withdrawn"
WITHDRAWN_REASON = "late data arrived for every hour the dropout was raised on, and none of it is a dropout"


def is_withdrawn(status: pd.Series) -> pd.Series:
    return status.fillna(OPEN).astype(str) == WITHDRAWN


class Presence(NamedTuple):
    """Which hours of which devices have a row: all of a panel that withdrawing reads, so a chunk's
    ranking kept between sweeps (`combine.HourTable`) need not keep its whole panel too."""

    hours: pd.DatetimeIndex
    devices: list[str]
    present: np.ndarray  # hours x devices


def _all_present(presence: Presence, device_id: str, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    if device_id not in presence.devices:
        return False
    col = presence.devices.index(device_id)
    rows = (presence.hours >= start) & (presence.hours < end)
    return bool(rows.any()) and bool(np.all(presence.present[rows, col]))


def find_withdrawn(
    existing: pd.DataFrame, found: pd.DataFrame, presence: Presence, devices: set[str], now: datetime
) -> pd.DataFrame:
    """Existing open dropout incidents of `devices` that the data in `presence` now disproves: every
    hour of the incident has a row, and no dropout found by this scoring overlaps it (a zero
    reading is still a dropout, so it stays open). Returned as full rows ready to MERGE."""
    if existing.empty:
        return existing.iloc[0:0]
    candidates = existing[
        (existing["anomaly_type"] == "dropout")
        & ~is_withdrawn(existing["status"])
        & existing["device_id"].isin(devices)
    ]
    dropouts = found[found["anomaly_type"] == "dropout"] if not found.empty else found
    keep = []
    for inc in candidates.itertuples():
        if not _all_present(presence, inc.device_id, inc.start_hour, inc.end_hour):
            continue
        if not dropouts.empty and bool(
            (
                (dropouts["device_id"] == inc.device_id)
                & (dropouts["start_hour"] < inc.end_hour)
                & (dropouts["end_hour"] > inc.start_hour)
            ).any()
        ):
            continue
        keep.append(inc.Index)
    out = candidates.loc[keep].copy()
    out["status"] = WITHDRAWN
    out["withdrawn_at"] = pd.Timestamp(now)
    return out


def reissued_id(incident_id: str) -> str:
    """The id of a new incident that starts on the same hour as a withdrawn one (its id is taken:
    the withdrawn row stays), deterministic so re-scoring still finds the same id."""
    return hashlib.sha256(f"{incident_id}|after-withdrawal".encode()).hexdigest()[:20]
