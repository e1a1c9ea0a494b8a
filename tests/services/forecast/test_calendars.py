"""Site calendars: public holidays per country/subdivision, local time, closures that can be switched off.

Expected dates are written out by hand from gov.uk's bank-holiday lists, not derived from the code.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.forecast.calendars import (
    PUBLIC_DATA_CALENDAR,
    SiteCalendar,
    calendar_for,
    country_of_timezone,
)
from services.forecast.features import HISTORY_HOURS, window_features

ENGLAND_2019 = [
    date(2019, 1, 1),
    date(2019, 4, 19),
    date(2019, 4, 22),
    date(2019, 5, 6),
    date(2019, 5, 27),
    date(2019, 8, 26),
    date(2019, 12, 25),
    date(2019, 12, 26),
]


def _epoch_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _flags(calendar: SiteCalendar, first: date, last: date) -> dict[date, tuple[bool, bool]]:
    hol, clo = calendar.day_flags(_epoch_day(first), _epoch_day(last))
    days = pd.date_range(first, last, freq="D").date
    return {d: (bool(h), bool(c)) for d, h, c in zip(days, hol, clo, strict=True)}


def test_england_2019_bank_holidays_and_nothing_else() -> None:
    england = SiteCalendar("Europe/London", "GB", "ENG")
    flags = _flags(england, date(2019, 1, 1), date(2019, 12, 31))
    assert sorted(d for d, (hol, _) in flags.items() if hol) == ENGLAND_2019
    assert not any(clo for _, clo in flags.values())


def test_scotland_has_its_own_holidays() -> None:
    scotland = _flags(SiteCalendar("Europe/London", "GB", "SCT"), date(2019, 1, 1), date(2019, 12, 31))
    assert scotland[date(2019, 1, 2)][0]  # 2 January: Scotland only
    assert not scotland[date(2019, 8, 26)][0]  # England's late-summer bank holiday
    assert scotland[date(2019, 8, 5)][0]  # Scotland's summer bank holiday


def test_university_closure_spans_new_year_and_can_be_dropped() -> None:
    flags = _flags(PUBLIC_DATA_CALENDAR, date(2019, 12, 22), date(2020, 1, 3))
    closed = [d for d, (_, clo) in flags.items() if clo]
    assert closed == [date(2019, 12, 24) + pd.Timedelta(days=i) for i in range(9)]  # 24 Dec – 1 Jan
    assert all(flags[d][0] for d in closed)  # a closure day is a day off
    assert not flags[date(2020, 1, 2)][0]
    bare = _flags(PUBLIC_DATA_CALENDAR.without_closures(), date(2019, 12, 22), date(2020, 1, 3))
    assert [d for d, (hol, _) in bare.items() if hol] == [
        date(2019, 12, 25),
        date(2019, 12, 26),
        date(2020, 1, 1),
    ]


def test_country_comes_from_the_time_zone() -> None:
    assert country_of_timezone("Europe/London") == "GB"
    assert country_of_timezone("America/New_York") == "US"
    assert country_of_timezone("UTC") is None
    assert calendar_for("Europe/Berlin").country == "DE"
    assert calendar_for(None) == PUBLIC_DATA_CALENDAR


def test_unknown_zone_or_country_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        calendar_for("Mars/Olympus")
    with pytest.raises(ValueError, match="no public holidays known for country 'XX'"):
        calendar_for("Europe/London", "XX")


def _features(origin: str, calendar: SiteCalendar = PUBLIC_DATA_CALENDAR, **kw) -> pd.DataFrame:
    kwh = np.ones((1, HISTORY_HOURS))
    return window_features(kwh, None, pd.DatetimeIndex([pd.Timestamp(origin)]), calendar, **kw)[0]


def test_hour_weekday_and_holiday_are_in_local_time() -> None:
    # 21 Apr 2019 23:00 UTC is 00:00 BST on Easter Monday (22 Apr, a bank holiday).
    summer = _features("2019-04-21 23:00")
    assert summer.loc[0, "target_hour"] == 0
    assert summer.loc[0, "target_dow"] == 0  # Monday
    assert summer.loc[0, "target_holiday"] == 1
    assert summer.loc[0, "lag24_holiday"] == 0  # Easter Sunday is not a bank holiday
    # From 22 Apr 00:00 UTC: h = 22 is 23:00 BST on the holiday, h = 23 already Tuesday 23 Apr.
    monday = _features("2019-04-22 00:00")
    assert monday.loc[22, ["target_hour", "target_dow", "target_holiday"]].tolist() == [23, 0, 1]
    assert monday.loc[23, ["target_hour", "target_dow", "target_holiday"]].tolist() == [0, 1, 0]
    assert monday.loc[23, "lag24_holiday"] == 1
    # In winter, UTC is local time.
    winter = _features("2019-12-01 23:00")
    assert winter.loc[0, "target_hour"] == 23
    assert winter.loc[0, "target_dow"] == 6  # Sunday
    # The same UTC hour in a UTC calendar keeps the UTC day.
    utc = _features("2019-04-21 23:00", SiteCalendar("UTC"))
    assert utc.loc[0, "target_hour"] == 23
    assert utc.loc[0, "target_holiday"] == 0


def test_closure_flag_follows_the_switch() -> None:
    # Friday 27 Dec 2019: closed at the university, an ordinary weekday in the bank-holiday list.
    on = _features("2019-12-27 00:00")
    off = _features("2019-12-27 00:00", closure_calendar=False)
    assert (on["target_closure"] == 1).all()
    assert (on["target_holiday"] == 1).all()
    assert (off["target_closure"] == 0).all()
    assert (off["target_holiday"] == 0).all()


def test_holiday_flags_on_utc_timestamps_use_the_local_day() -> None:
    from services.forecast.features import holiday_flags

    # 25 Aug 2019 23:30 UTC is 00:30 BST on the late-summer bank holiday (26 Aug).
    days = pd.DatetimeIndex(["2019-08-25 22:00", "2019-08-25 23:30", "2019-12-27 12:00"])
    hol, clo = holiday_flags(days)
    assert hol.tolist() == [False, True, True]
    assert clo.tolist() == [False, False, True]
    hol, clo = holiday_flags(days, closure_calendar=False)
    assert hol.tolist() == [False, True, False]
    assert clo.tolist() == [False, False, False]
