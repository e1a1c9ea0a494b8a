"""The check that an answer states no number it cannot show: every figure must be in a cited row.

Text copied verbatim from a cited row or document (a device name like "Elm Street 12", an anomaly
explanation) is data, so it is removed before counting; what is left must be numbers that a numeric
cell, a bound query parameter or the question itself contains, at the precision written. Dates and
clock times ("2026-11-20", "18:00") are the question's window, not measurements, and are skipped.
An answer that fails is never sent: the caller falls back to the local composer or says "no data".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = ["GroundingResult", "check_grounding", "numbers_in"]

# identifiers (dev-017, lgbm-2026), dates and clock times: not quantities
_NOT_QUANTITY = re.compile(
    r"\b[A-Za-z][\w]*(?:[-_][\w]+)+\b|"
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[+-]\d{2}:\d{2}|Z)?)?\b|"
    r"\b\d{1,2}:\d{2}(?::\d{2})?\b|"
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)\s+\d{4}\b"
)
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_MIN_QUOTE = 4


class GroundingResult(BaseModel):
    ok: bool
    ungrounded: list[str]


def numbers_in(text: str) -> list[str]:
    """Numeric tokens of `text` outside dates and times, as written (thousands separators kept)."""
    return _NUMBER.findall(_NOT_QUANTITY.sub(" ", text))


def check_grounding(
    answer: str,
    rows: Iterable[dict[str, Any]],
    *,
    params: Iterable[Any] = (),
    documents: Iterable[str] = (),
    question: str = "",
) -> GroundingResult:
    rows = list(rows)
    numeric: list[float] = []
    quotes: list[str] = [d for d in documents if len(d) >= _MIN_QUOTE]
    for row in rows:
        for value in row.values():
            _collect(value, numeric, quotes)
    for value in params:
        _collect(value, numeric, [])
    for token in numbers_in(question):
        numeric.append(float(token.replace(",", "")))
    remaining = answer
    for quote in sorted(set(quotes), key=len, reverse=True):
        remaining = remaining.replace(quote, " ")
    ungrounded = [t for t in numbers_in(remaining) if not _matches(t, numeric)]
    return GroundingResult(ok=not ungrounded, ungrounded=ungrounded)


def _collect(value: Any, numeric: list[float], quotes: list[str]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        numeric.append(float(value))
    elif isinstance(value, str):
        if len(value) >= _MIN_QUOTE:
            quotes.append(value)
        elif re.fullmatch(r"-?\d+(\.\d+)?", value):
            numeric.append(float(value))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, numeric, quotes)


def _matches(token: str, numeric: list[float]) -> bool:
    """`token` is some cell's value at the precision it is written with (12.35 for 12.345)."""
    value = float(token.replace(",", ""))
    decimals = len(token.split(".")[1]) if "." in token else 0
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(v - value) <= tolerance for v in numeric)
