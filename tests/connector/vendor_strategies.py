"""Hypothesis strategies for what a vendor API (buggy or hostile) can put in a reading record:
extreme floats, huge integers, NaN/inf, text, nulls, wrong types, unicode (lone surrogates too),
ancient and far-future times, and duplicates (timestamps drawn from a small pool)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

CLOCK = datetime(2026, 3, 1, 12, tzinfo=UTC)
DEVICES = ("dev-1", "dev-3")

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=12),  # any unicode, surrogates included
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([1e300, 1e308, -1e308, 5e-324, 0.0, -0.0]),
    st.integers(min_value=300, max_value=1200).map(lambda n: f"HUGE{n}"),  # an n-digit integer
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# near the clock (mostly valid), or anywhere from year 1 to 9999, or not a time at all
plausible_times = st.integers(min_value=-24 * 90, max_value=2).map(lambda h: CLOCK + timedelta(hours=h))
any_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.replace(tzinfo=UTC)
)
times = st.one_of(
    plausible_times.map(_iso),
    plausible_times.map(_iso),
    any_times.map(_iso),
    st.sampled_from(
        [
            "1970-01-01T00:00:00Z",
            "2099-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "2026-03-01T12:00:00",
            "yesterday",
            "",
        ]
    ),
    junk,
)


def _field(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a good value (so valid readings, cursors and duplicates happen), sometimes anything."""
    return st.one_of(good, good, good, bad)


@st.composite
def vendor_record(draw: st.DrawFn, device: str) -> Any:
    if draw(st.integers(0, 40)) == 0:
        return draw(st.one_of(junk, st.lists(st.integers(), max_size=3)))  # not an object at all
    ts = draw(st.integers(min_value=-24 * 20, max_value=0)) * 15  # minutes: a small pool, duplicates
    stamp = CLOCK + timedelta(minutes=ts)
    record = {
        "device_id": draw(_field(st.just(device), st.one_of(st.sampled_from(DEVICES), junk))),
        "timestamp": draw(_field(st.just(_iso(stamp)), times)),
        "power_w": draw(_field(st.floats(0, 20_000), numbers)),
        "energy_wh": draw(_field(st.floats(0, 1e9), numbers)),
        "voltage": draw(_field(st.floats(200, 250), st.one_of(numbers, st.none()))),
        "temp_c": draw(_field(st.floats(-20, 40), st.one_of(numbers, st.none()))),
        "occupancy": draw(_field(st.booleans(), junk)),
        "received_at": draw(_field(st.just(_iso(stamp + timedelta(minutes=7))), times)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(record)), max_size=2, unique=True)):
        del record[key]  # missing fields
    if draw(st.integers(0, 20)) == 0:
        record[draw(st.text(max_size=5))] = draw(junk)  # unexpected extra keys, unicode names
    return record


feeds = st.fixed_dictionaries({d: st.lists(vendor_record(d), max_size=60) for d in DEVICES})
