"""The protocol's tables (rich) and JSON, shared by `gridsight forecast backtest --protocol` and the
bench, so both print the same figures with the same definitions spelled out."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from services.forecast.metrics import ModelScore
from services.forecast.protocol import WINDOW_KINDS, ProtocolResult

__all__ = ["DEFINITIONS", "protocol_json", "summary_table", "windows_table"]

DEFINITIONS = (
    "x MSTL: MASE / MSTL's MASE on the same units. "
    "MASE: MAE / in-sample 24 h seasonal-naive MAE of the 8 weeks before each origin, mean over "
    "meter-origins. CV(RMSE) %: per building RMSE / mean actual x 100 over the window, median over "
    "buildings (pooled rows: over building-windows). Pinball p10/p50/p90: mean loss / the same MASE "
    "scale. Seasonal-naive p10/p90: point + 10th/90th percentile of the rule's own in-sample errors "
    "over the 8 weeks; MSTL: its point stands in for all three quantiles, no coverage. "
    "gridsight_no_closure: the same model trained and run without the closure calendar. A meter counts "
    "in a window with >= 90 % of the 8 weeks before it observed."
)


def _cells(s: ModelScore, mstl: ModelScore | None) -> list[str]:
    pin = "/".join(f"{p:.3f}" for p in s.pinball) if s.pinball else "—"
    cov = f"{s.coverage:.1%}" if s.coverage is not None else "—"
    cv = f"{s.cv_rmse:.1f}" if s.cv_rmse is not None else "—"
    rel = f"{s.mase / mstl.mase:.2f}" if mstl is not None and s.model != "mstl" and mstl.mase > 0 else ""
    return [s.model, f"{s.mase:.3f}", rel, cv, pin, cov]


def _mstl(scores: list[ModelScore]) -> ModelScore | None:
    return next((s for s in scores if s.model == "mstl"), None)


_SCORE_COLUMNS = ("model", "MASE", "x MSTL", "CV(RMSE) %", "pinball p10/p50/p90", "p10–p90 cov.")
_NUMERIC = {"meters", *_SCORE_COLUMNS[1:]}


def _origins_note(result: ProtocolResult) -> str:
    counts = sorted({w.window.origins for w in result.windows})
    notes = {14: "14 daily origins", 7: "7 origins (every other day of 14, one per weekday)"}
    return " / ".join(notes[c] for c in counts) + " at 00:00 UTC, 24 h ahead"


def windows_table(result: ProtocolResult) -> Table:
    kinds = sorted({w.window.kind for w in result.windows}, key=list(WINDOW_KINDS).index)
    table = Table(
        title="Forecast validation protocol: a model per window, trained only on data before the date shown; "
        + _origins_note(result),
        caption="windows: " + "; ".join(f"{k} = {WINDOW_KINDS[k][0]}" for k in kinds),
    )
    for col in ("year", "window", "split", "meters", "trained before", *_SCORE_COLUMNS):
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    for w in result.windows:
        head = [str(w.window.year), w.window.kind, w.window.split, str(w.meters)]
        if w.skipped:
            table.add_row(*head, "skipped", w.skipped, end_section=True)
            continue
        trained = f"{w.trained_before:%Y-%m-%d}"
        for i, s in enumerate(w.scores):
            table.add_row(
                *([*head, trained] if i == 0 else [""] * 5),
                *_cells(s, _mstl(w.scores)),
                end_section=i == len(w.scores) - 1,
            )
    return table


def summary_table(result: ProtocolResult) -> Table:
    table = Table(
        title="Pooled: per split (development = tune here; held-out = never tuned on), per year, all"
    )
    for col in ("group", *_SCORE_COLUMNS):
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    for group, scores in result.summary().items():
        for i, s in enumerate(scores):
            table.add_row(
                group if i == 0 else "", *_cells(s, _mstl(scores)), end_section=i == len(scores) - 1
            )
    return table


def protocol_json(result: ProtocolResult) -> dict[str, Any]:
    windows = []
    for w in result.windows:
        windows.append(
            {
                "year": w.window.year,
                "window": w.window.kind,
                "label": w.window.label,
                "split": w.window.split,
                "origins": [d.isoformat() for d in w.window.origin_days],
                "meters": w.meters,
                "skipped": w.skipped,
                "trained_on": None
                if w.train_from is None
                else {"from": str(w.train_from), "before": str(w.trained_before)},
                "seconds": w.seconds,
                "scores": [s.model_dump() for s in w.scores],
            }
        )
    return {
        "definitions": DEFINITIONS,
        "windows": windows,
        "summary": {k: [s.model_dump() for s in v] for k, v in result.summary().items()},
    }
