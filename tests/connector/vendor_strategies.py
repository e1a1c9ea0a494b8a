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


@st.composite
def vendor_record(draw: st.DrawFn, device: str) -> Any:
    """Six in ten a plausible reading (so cursors move, refreshes happen and duplicates conflict);
    otherwise one to three fields replaced by anything, a missing field, an extra key, or not an
    object at all."""
    if draw(st.integers(0, 40)) == 0:
        return draw(st.one_of(junk, st.lists(st.integers(), max_size=3)))
    minutes = draw(st.integers(min_value=-24 * 20, max_value=0)) * 15  # a small pool: duplicates
    stamp = CLOCK + timedelta(minutes=minutes)
    record = {
        "device_id": device,
        "timestamp": _iso(stamp),
        "power_w": draw(st.floats(0, 20_000)),
        "energy_wh": draw(st.floats(0, 1e9)),
        "voltage": draw(st.one_of(st.floats(200, 250), st.none())),
        "temp_c": draw(st.one_of(st.floats(-20, 40), st.none())),
        "occupancy": draw(st.one_of(st.booleans(), st.none())),
        "received_at": _iso(stamp + timedelta(minutes=draw(st.integers(0, 600)))),
    }
    if draw(st.integers(0, 9)) < 6:
        return record
    bad = {
        "device_id": st.one_of(st.sampled_from(DEVICES), junk),
        "timestamp": times,
        "power_w": numbers,
        "energy_wh": numbers,
        "voltage": st.one_of(numbers, st.none()),
        "temp_c": st.one_of(numbers, st.none()),
        "occupancy": junk,
        "received_at": times,
    }
    for key in draw(st.lists(st.sampled_from(sorted(bad)), min_size=1, max_size=3, unique=True)):
        record[key] = draw(bad[key])
    if draw(st.integers(0, 10)) == 0:
        del record[draw(st.sampled_from(sorted(record)))]  # a missing field
    if draw(st.integers(0, 10)) == 0:
        record[draw(st.text(max_size=5))] = draw(junk)  # an unexpected key, any unicode name
    return record


feeds = st.fixed_dictionaries({d: st.lists(vendor_record(d), min_size=1, max_size=40) for d in DEVICES})
