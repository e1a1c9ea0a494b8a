"""Dates and ranges in questions ("yesterday", "last week", "in March", "between 5 and 7 pm").

A period is kept as local calendar dates (start inclusive, end exclusive) plus an optional local
hour-of-day window, so a follow-up ("and the day before?") can shift it, and it is turned into UTC
bounds only at query time, in the site's timezone. "Today" is the data clock's day, not the wall
clock's: a replayed or simulated fleet lives in its own time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

__all__ = [
    "HourWindow",
    "ImpossibleDate",
    "Period",
    "parse_hours",
    "parse_period",
    "shift_period",
    "utc_bounds",
]

MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
_UNITS = {"hour": "hour", "hours": "hour", "day": "day", "days": "day", "week": "week", "weeks": "week"}
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10}


# Words that name a period: when one is present and no period was read, the chat asks instead of
# answering for its default period ("since the 3rd", "in Q3", "last spring", "a fortnight").
DATE_WORDS = re.compile(
    r"\b(ago|since|until|till|season|spring|summer|autumn|winter|quarter|q[1-4]|fortnight|decade|years?|"
    r"christmas|easter|\d{1,2}(st|nd|rd|th)|january|february|march|april|june|july|august|september|"
    r"october|november|december|\d{4})\b"
)


class ImpossibleDate(ValueError):
    """A date that cannot exist or could mean two days; its message is the clarifying question."""


def _date(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        if not 1 <= month <= 12:
            raise ImpossibleDate(
                f"There is no month {month}. Which date did you mean? Write it as YYYY-MM-DD, "
                "e.g. 2026-11-12."
            ) from None
        name = date(2000, month, 1).strftime("%B")
        raise ImpossibleDate(
            f"There is no {day} {name} {year}. Which day did you mean?"
            if day > 28
            else f"{year}-{month:02d}-{day:02d} is not a date I can read. Which day did you mean?"
        ) from None


class Period(BaseModel):
    """Local calendar dates [start, end) and how to say them."""

    start: date
    end: date
    label: str
    unit: str = Field(default="day", description="day | week | month | range: what a follow-up shifts by.")
    rolling_hours: int | None = Field(
        default=None, description="'last/next N hours': N hours back (<0) or ahead (>0) of the data clock."
    )


class HourWindow(BaseModel):
    """Local hours of the day [start, end); end 24 means midnight."""

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=1, le=24)

    @property
    def label(self) -> str:
        return f"{self.start:02d}:00-{self.end % 24:02d}:00"


def _month_period(year: int, month: int) -> Period:
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return Period(start=start, end=end, label=f"in {start.strftime('%B %Y')}", unit="month")


def _day(d: date, label: str | None = None) -> Period:
    return Period(start=d, end=d + timedelta(days=1), label=label or f"on {d.isoformat()}", unit="day")


def _week_of(d: date) -> date:
    return d - timedelta(days=d.weekday())


def parse_period(text: str, today: date, *, future: bool = False) -> Period | None:
    """The first date or range named in `text` (lower-case), relative to the data clock's `today`.

    `future`: a bare weekday ("on Monday") means the next one (for forecasts), else the last one.
    "since <day>" runs from that day to today.
    """
    t = text.lower()
    if m := re.search(r"\bsince\b(.*)", t):
        since = parse_period(m[1], today)
        if since is not None and since.start <= today:
            return Period(
                start=since.start,
                end=today + timedelta(days=1),
                label=f"from {since.start} to {today}",
                unit="range",
            )
    if m := re.search(r"\b(last|previous|this)\s+year\b", t):
        year = today.year - (m[1] != "this")
        return Period(start=date(year, 1, 1), end=date(year + 1, 1, 1), label=f"in {year}", unit="range")
    if m := re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", t):
        n1, n2 = int(m[1]), int(m[2])
        if n1 <= 12 and n2 <= 12 and n1 != n2:
            month1, month2 = (date(2000, n2, 1).strftime("%B"), date(2000, n1, 1).strftime("%B"))
            raise ImpossibleDate(
                f"{m[0]} could be {n1} {month1} or {n2} {month2}. Which did you mean? Write it as YYYY-MM-DD."
            )
        day, month = (n1, n2) if n2 <= 12 else (n2, n1)
        said_year = int(m[3]) + (2000 if len(m[3]) == 2 else 0) if m[3] else None
        return _day(_resolve_day(day, month, str(said_year) if said_year else None, today))
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\s*(?:to|until|and|-)\s*(\d{4})-(\d{2})-(\d{2})\b", t):
        a = _date(int(m[1]), int(m[2]), int(m[3]))
        b = _date(int(m[4]), int(m[5]), int(m[6]))
        return Period(start=a, end=b + timedelta(days=1), label=f"{a} to {b}", unit="range")
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", t):
        return _day(_date(int(m[1]), int(m[2]), int(m[3])))
    if m := re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\b(?:\s+(\d{{4}}))?", t):
        return _day(_resolve_day(int(m[1]), MONTHS[m[2]], m[3], today))
    if m := re.search(rf"\b({_MONTH_RE})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?", t):
        return _day(_resolve_day(int(m[2]), MONTHS[m[1]], m[3], today))
    if "day before yesterday" in t:
        return _day(today - timedelta(days=2), "the day before yesterday")
    if "day after tomorrow" in t:
        return _day(today + timedelta(days=2), "the day after tomorrow")
    for word, offset in (("yesterday", -1), ("today", 0), ("tonight", 0), ("tomorrow", 1)):
        if re.search(rf"\b{word}\b", t):
            return _day(today + timedelta(days=offset), "today" if word == "tonight" else word)
    if m := re.search(
        r"\b(last|past|previous|next|coming)\s+(\d+|one|two|three|four|five|six|seven|ten)\s+"
        r"(hours?|days?|weeks?)\b",
        t,
    ):
        n = int(m[2]) if m[2].isdigit() else _NUMBER_WORDS[m[2]]
        days = n * (7 if _UNITS[m[3]] == "week" else 1)
        if _UNITS[m[3]] == "hour":
            ahead = m[1] in ("next", "coming")
            return Period(
                start=today,
                end=today + timedelta(days=1),
                label=f"the {m[1]} {n} hours",
                unit="range",
                rolling_hours=n if ahead else -n,
            )
        if m[1] in ("next", "coming"):
            return Period(
                start=today + timedelta(days=1),
                end=today + timedelta(days=1 + days),
                label=f"the next {n} {m[3]}",
                unit="range",
            )
        return Period(
            start=today - timedelta(days=days - 1),
            end=today + timedelta(days=1),
            label=f"the last {n} {m[3]}",
            unit="range",
        )
    if m := re.search(r"\b(\d+|a|an|one|two|three|four|five|six|seven|ten)\s+(days?|weeks?)\s+ago\b", t):
        n = int(m[1]) if m[1].isdigit() else _NUMBER_WORDS.get(m[1], 1)
        if m[2].startswith("day"):
            ago = today - timedelta(days=n)
            return _day(ago, f"{n} day{'s' if n != 1 else ''} ago ({ago})")
        start = _week_of(today) - timedelta(weeks=n)
        return Period(
            start=start,
            end=start + timedelta(days=7),
            label=f"the week {n} week{'s' if n != 1 else ''} ago ({start} to {start + timedelta(days=6)})",
            unit="week",
        )
    for phrase, offset in (("last week", -1), ("previous week", -1), ("this week", 0), ("next week", 1)):
        if phrase in t:
            start = _week_of(today) + timedelta(weeks=offset)
            return Period(
                start=start,
                end=start + timedelta(days=7),
                label=f"{phrase} ({start} to {start + timedelta(days=6)})",
                unit="week",
            )
    if "last month" in t or "previous month" in t:
        first = today.replace(day=1) - timedelta(days=1)
        return _month_period(first.year, first.month)
    if "this month" in t:
        return _month_period(today.year, today.month)
    if m := re.search(rf"\b(?:in|during|for|of|throughout)\s+({_MONTH_RE})\b(?:\s+(\d{{4}}))?", t):
        month = MONTHS[m[1]]
        year = int(m[2]) if m[2] else (today.year if month <= today.month else today.year - 1)
        return _month_period(year, month)
    if m := re.search(r"\b(?:in|during|for|of|throughout)\s+((?:19|20)\d{2})\b(?!-)", t):
        year = int(m[1])
        return Period(start=date(year, 1, 1), end=date(year + 1, 1, 1), label=f"in {year}", unit="range")
    if m := re.search(r"\b(last|on|this|next)?\s*(" + "|".join(WEEKDAYS) + r")\b", t):
        wd = WEEKDAYS.index(m[2])
        if m[1] == "next" or (future and m[1] != "last"):
            delta = (wd - today.weekday()) % 7 or 7
            return _day(today + timedelta(days=delta), f"next {m[2].title()}")
        delta = (today.weekday() - wd) % 7 or 7
        return _day(today - timedelta(days=delta), f"last {m[2].title()}")
    return None


def _resolve_day(day: int, month: int, year: str | None, today: date) -> date:
    if year:
        return _date(int(year), month, day)
    candidate = _date(today.year, month, day)
    return candidate if candidate <= today + timedelta(days=2) else _date(today.year - 1, month, day)


def shift_period(text: str, period: Period) -> Period | None:
    """Follow-ups that move the previous turn's period: "the day before", "the week after", ..."""
    t = text.lower()
    m = re.search(r"\b(?:the\s+)?(day|week|month)\s+(before|after|earlier|later)\b", t) or re.search(
        r"\b(?:the\s+)?(previous|next|following)\s+(day|week|month)\b", t
    )
    if not m:
        return None
    unit, direction = (m[1], m[2]) if m[1] in ("day", "week", "month") else (m[2], m[1])
    sign = -1 if direction in ("before", "earlier", "previous") else 1
    if unit == "month":
        anchor = period.start if sign < 0 else period.end
        if sign < 0:
            prev = anchor - timedelta(days=1)
            return _month_period(prev.year, prev.month)
        return _month_period(anchor.year, anchor.month)
    days = 1 if unit == "day" else 7
    span = (period.end - period.start).days
    step = max(days, span) if period.unit in ("week", "range") or unit == "week" else days
    start = period.start + timedelta(days=sign * step)
    end = start + timedelta(days=span)
    label = f"on {start.isoformat()}" if span == 1 else f"from {start} to {end - timedelta(days=1)}"
    return Period(start=start, end=end, label=label, unit=period.unit)


def parse_hours(text: str) -> HourWindow | None:
    """ "between 5 and 7 pm", "from 17:00 to 19:00", "at 6 pm", "at 18:00" as local hours."""
    t = text.lower()
    if m := re.search(
        r"\b(?:between|from)\s+(\d{1,2})(?::00)?\s*(am|pm)?\s*(?:and|to|-)\s*(\d{1,2})(?::00)?\s*"
        r"(am|pm)?",
        t,
    ):
        end_meridiem = m[4]
        start_meridiem = m[2] or end_meridiem
        start = _to_24h(int(m[1]), start_meridiem)
        end = _to_24h(int(m[3]), end_meridiem)
        if start_meridiem and not m[2] and start > end:  # "between 11 and 1 pm" -> 11 am
            start = _to_24h(int(m[1]), "am")
        end = 24 if end == 0 else end
        if 0 <= start < end <= 24:
            return HourWindow(start=start, end=end)
    if m := re.search(r"\bat\s+(\d{1,2})(?::00)?\s*(am|pm)\b", t) or re.search(r"\bat\s+(\d{1,2}):00\b", t):
        hour = _to_24h(int(m[1]), m[2] if m.lastindex and m.lastindex >= 2 else None)
        if 0 <= hour <= 23:
            return HourWindow(start=hour, end=hour + 1)
    if "noon" in t:
        return HourWindow(start=12, end=13)
    return None


def _to_24h(hour: int, meridiem: str | None) -> int:
    if meridiem == "pm" and hour < 12:
        return hour + 12
    if meridiem == "am" and hour == 12:
        return 0
    return hour


def utc_bounds(period: Period, tz: str, clock: datetime) -> tuple[datetime, datetime]:
    """Local midnight of the first day to local midnight after the last, as UTC instants.

    `clock` is the data clock (end of the newest hour with data), the anchor of rolling hour windows.
    """
    if period.rolling_hours is not None:
        other = clock + timedelta(hours=period.rolling_hours)
        return (min(clock, other), max(clock, other))
    zone = ZoneInfo(tz)
    start = datetime.combine(period.start, time(0), zone).astimezone(UTC)
    end = datetime.combine(period.end, time(0), zone).astimezone(UTC)
    return start, end
