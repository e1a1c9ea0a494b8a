from datetime import UTC, date, datetime

from services.chat.periods import parse_hours, parse_period, shift_period, utc_bounds

TODAY = date(2026, 11, 20)  # a Friday
CLOCK = datetime(2026, 11, 21, tzinfo=UTC)


def test_relative_days_are_read_from_the_data_clocks_today() -> None:
    assert parse_period("usage yesterday", TODAY).start == date(2026, 11, 19)
    assert parse_period("the day before yesterday", TODAY).start == date(2026, 11, 18)
    assert parse_period("what will it draw tomorrow", TODAY).start == date(2026, 11, 21)


def test_last_week_is_the_previous_monday_to_sunday() -> None:
    period = parse_period("which meter used the most last week", TODAY)
    assert (period.start, period.end) == (date(2026, 11, 9), date(2026, 11, 16))


def test_a_month_name_means_its_latest_occurrence_not_in_the_future() -> None:
    assert parse_period("in march", TODAY).start == date(2026, 3, 1)
    assert parse_period("in december", TODAY).start == date(2025, 12, 1)
    assert parse_period("in march 2025", TODAY).end == date(2025, 4, 1)


def test_explicit_dates_in_iso_and_words() -> None:
    assert parse_period("on 2026-11-12", TODAY).start == date(2026, 11, 12)
    assert parse_period("on 3 november", TODAY).start == date(2026, 11, 3)
    assert parse_period("on monday", TODAY).start == date(2026, 11, 16)


def test_hour_windows_in_12_and_24_hour_forms() -> None:
    assert (parse_hours("between 5 and 7 pm").start, parse_hours("between 5 and 7 pm").end) == (17, 19)
    assert parse_hours("from 17:00 to 19:00").end == 19
    assert parse_hours("tomorrow at 6 pm").start == 18


def test_follow_up_shifts_keep_the_span() -> None:
    day = parse_period("yesterday", TODAY)
    assert shift_period("and the day before?", day).start == date(2026, 11, 18)
    week = parse_period("last week", TODAY)
    assert shift_period("and the week before?", week).start == date(2026, 11, 2)


def test_utc_bounds_follow_the_sites_timezone_and_dst() -> None:
    nov = parse_period("in november", TODAY)
    start, end = utc_bounds(nov, "America/New_York", CLOCK)
    assert start == datetime(2026, 11, 1, 4, tzinfo=UTC)  # still EDT at local midnight on 1 November
    assert end == datetime(2026, 12, 1, 5, tzinfo=UTC)


def test_rolling_hours_are_anchored_on_the_data_clock() -> None:
    period = parse_period("in the next 24 hours", TODAY)
    assert utc_bounds(period, "Europe/Dublin", CLOCK) == (CLOCK, datetime(2026, 11, 22, tzinfo=UTC))


def test_days_and_weeks_ago_are_read_against_the_data_clock() -> None:
    from services.chat.periods import parse_period

    today = date(2026, 11, 20)  # a Friday
    three = parse_period("how much 3 days ago", today)
    assert three is not None
    assert (three.start, three.end) == (date(2026, 11, 17), date(2026, 11, 18))
    weeks = parse_period("two weeks ago", today)
    assert weeks is not None
    assert (weeks.start, weeks.end) == (date(2026, 11, 2), date(2026, 11, 9))


def test_impossible_and_ambiguous_dates_raise_a_clarifying_question() -> None:
    import pytest

    from services.chat.periods import ImpossibleDate, parse_period

    for text, said in (("on 31 february", "There is no 31 February"), ("2026-13-01", "no month 13"),
                       ("on 04/05", "4 May or 5 April")):  # fmt: skip
        with pytest.raises(ImpossibleDate, match=said):
            parse_period(text, date(2026, 11, 20))
