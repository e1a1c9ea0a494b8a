"""Training-row thinning: the recent year whole, older rows at random, about `max_rows` in all."""

from __future__ import annotations

import numpy as np

from services.forecast.model import TrainParams, _thinned


def test_recent_rows_are_all_kept_and_old_ones_thinned_to_the_cap() -> None:
    age = np.concatenate([np.full(400, 10.0), np.full(600, 500.0)])  # 400 recent, 600 a year+ old
    known = np.ones(1000, bool)
    mask = _thinned(age, known, TrainParams(max_rows=700, recent_days=365))
    assert mask[:400].all()
    # 300 of the 600 old rows are wanted: a binomial(600, 0.5) draw, within 5 standard deviations.
    assert abs(int(mask[400:].sum()) - 300) < 5 * np.sqrt(600 * 0.25)


def test_under_the_cap_nothing_is_dropped_and_a_big_recent_set_is_thinned_evenly() -> None:
    age = np.full(1000, 10.0)
    known = np.ones(1000, bool)
    assert _thinned(age, known, TrainParams(max_rows=1000)).all()
    assert _thinned(age, known, TrainParams(max_rows=None)).all()
    mask = _thinned(age, known, TrainParams(max_rows=250))
    assert abs(int(mask.sum()) - 250) < 5 * np.sqrt(1000 * 0.25 * 0.75)


def test_thinning_is_repeatable() -> None:
    age = np.linspace(0, 1000, 5000)
    known = np.ones(5000, bool)
    params = TrainParams(max_rows=2000)
    np.testing.assert_array_equal(_thinned(age, known, params), _thinned(age, known, params))
