"""How the CLI prints: a console as wide as the tables when the output is not a terminal, and
numbers rounded for reading (`--json` keeps them exact)."""

from __future__ import annotations

import math
import os
import sys
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rich.console import Console

__all__ = ["format_value", "terminal"]

PIPE_WIDTH = 200  # piped or redirected output: rich would assume 80 columns and fold the tables


def terminal(*, stderr: bool = False) -> Console:
    """A terminal keeps its own width; a pipe or file gets PIPE_WIDTH unless COLUMNS says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH)


def format_value(value: Any) -> str:
    """A cell for a person: 13151.669359999994 → 13151.67, 0.000123456 → 0.0001235, None → empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):  # NUMERIC: exact, so round it exactly (half up, as people do)
        if value.is_finite() and (value == 0 or abs(value) >= 1):
            return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    # two decimals from 1 up (a column lines up), four significant digits below
    return f"{value:.2f}" if value == 0 or abs(value) >= 1 else f"{value:.4g}"
