"""What one detector says about every hour × device cell.

`ratio` is the detector's own statistic divided by its threshold, so 1.0 means "at threshold" for
every detector and they can be ranked against each other; 0 means nothing to report.
`template` is the one-sentence explanation, filled in only for the cells that are reported
(formatting 300,000 strings nobody reads would dominate the run time).
"""

from __future__ import annotations

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

    def explain(self, expected: float, actual: float, run_h: int = 0) -> str:
        pct = (actual - expected) / expected * 100 if expected else float("nan")
        return self.template.format(expected=expected, actual=actual, pct=pct, unit=self.unit, run_h=run_h)
