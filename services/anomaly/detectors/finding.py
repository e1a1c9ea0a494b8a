"""What one detector says about every hour × device cell.

`ratio` is the detector's own statistic divided by its threshold, so 1.0 means "at threshold" for
every detector and they can be ranked against each other; 0 means nothing to report.
`template` is the one-sentence explanation, filled in only for the cells that are reported
(formatting 300,000 strings nobody reads would dominate the run time); `bare` says the same
without the expectation, for hours with no history to expect anything from. `run` (optional) is
how long the condition has lasted at each cell, where the detector knows better than the span of
flagged hours (a stuck meter is flagged only once its run is already unlikely).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Finding"]


@dataclass(frozen=True)
class Finding:
    anomaly_type: str
    ratio: np.ndarray
    expected: np.ndarray
    actual: np.ndarray
    unit: str
    template: str
    bare: str | None = None
    run: np.ndarray | None = None

    def explain(self, expected: float, actual: float, run_h: int = 0) -> str:
        known = math.isfinite(expected) and expected != 0
        pct = (actual - expected) / expected * 100 if known else float("nan")
        text = self.template if known or self.bare is None else self.bare
        return text.format(expected=expected, actual=actual, pct=pct, unit=self.unit, run_h=run_h)
