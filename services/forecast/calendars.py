"""Each site's calendar: its time zone, public holidays and closures, as day flags on local days.

A building follows the clock on its wall, not UTC: the working day starts an hour earlier in UTC
in summer, and a bank holiday runs midnight to midnight local time. Public holidays come from the
maintained `holidays` package for the site's country (and subdivision: England's bank holidays
are not Scotland's); the country is taken from the IANA time zone when not given.

Closures are an organisation's own calendar on top (the public buildings are a university that
closes over Christmas). They are per site and can be switched off, so the backtest can report
how the forecaster does with and without being told about them.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import numpy as np
import pandas as pd

__all__ = [
    "PUBLIC_DATA_CALENDAR",
    "UNIVERSITY_CHRISTMAS",
    "Closure",
    "SiteCalendar",
    "calendar_for",
    "country_of_timezone",
]

_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class Closure:
    """A closure every year from month/day `start` for `days` days (may run into the next year)."""

    month: int
    day: int
    days: int

    def dates(self, year: int) -> list[date]:
        first = date(year, self.month, self.day)
        return [first + timedelta(days=i) for i in range(self.days)]


# The university closes 24 Dec – 1 Jan (nine days); the archive's buildings show it every year.
UNIVERSITY_CHRISTMAS = Closure(12, 24, 9)


@cache
def _zone_countries() -> dict[str, str]:
    """IANA zone → ISO country code, from tzdata's zone.tab (the system copy as a fallback)."""
    try:
        text = (importlib.resources.files("tzdata.zoneinfo") / "zone.tab").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        text = Path("/usr/share/zoneinfo/zone.tab").read_text()
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            out[parts[2]] = parts[0]
    return out


def country_of_timezone(timezone: str) -> str | None:
    """ISO 3166 country of an IANA zone (`Europe/London` → `GB`), None for zones like `UTC`."""
    return _zone_countries().get(timezone)


@dataclass(frozen=True)
class SiteCalendar:
    """Where a site is (time zone, holiday country/subdivision) and which closures it keeps."""

    timezone: str = "UTC"
    country: str | None = None
    subdiv: str | None = None
    closures: tuple[Closure, ...] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}; expected an IANA name") from exc
        if self.country is not None:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdiv, years=2020)
            except NotImplementedError as exc:
                raise ValueError(f"no public holidays known for country {self.country!r}") from exc

    @classmethod
    def of(
        cls,
        timezone: str | None,
        country: str | None = None,
        subdiv: str | None = None,
        closures: tuple[Closure, ...] = (),
    ) -> SiteCalendar:
        """A site's calendar from what the warehouse knows (its time zone); country from the zone."""
        tz = timezone or "UTC"
        return _calendar_of(tz, country or country_of_timezone(tz), subdiv, closures)

    def without_closures(self) -> SiteCalendar:
        return replace(self, closures=()) if self.closures else self

    def local_days(self, utc: pd.DatetimeIndex) -> np.ndarray:
        """Local calendar day of each UTC timestamp, as days since 1970-01-01 (int64)."""
        idx = utc.tz_localize("UTC") if utc.tz is None else utc.tz_convert("UTC")
        if self.timezone != "UTC":
            idx = idx.tz_convert(self.timezone)
        local = idx.tz_localize(None).to_numpy().astype("datetime64[D]")
        return (local - _EPOCH).astype(np.int64)

    def day_flags(self, first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
        """(public holiday or closure, closure) for local days `first_day..last_day` (epoch days)."""
        return _day_flags(self, first_day, last_day)


@cache
def _calendar_of(
    timezone: str, country: str | None, subdiv: str | None, closures: tuple[Closure, ...]
) -> SiteCalendar:
    return SiteCalendar(timezone, country, subdiv, closures)


@cache
def _year_days(calendar: SiteCalendar, year: int) -> tuple[frozenset[int], frozenset[int]]:
    def num(d: date) -> int:
        return int((np.datetime64(d, "D") - _EPOCH).astype(np.int64))

    public: set[int] = set()
    if calendar.country is not None:
        public = {
            num(d) for d in holidays.country_holidays(calendar.country, subdiv=calendar.subdiv, years=year)
        }
    closed = {
        num(d) for c in calendar.closures for y in (year - 1, year) for d in c.dates(y) if d.year == year
    }
    return frozenset(public | closed), frozenset(closed)


def _day_flags(calendar: SiteCalendar, first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
    days = np.arange(first_day, last_day + 1)
    years = (_EPOCH + days).astype("datetime64[Y]").astype(int) + 1970
    off, closed = np.zeros(len(days), bool), np.zeros(len(days), bool)
    for year in np.unique(years):
        off_days, closed_days = _year_days(calendar, int(year))
        in_year = years == year
        off[in_year] = np.isin(days[in_year], list(off_days))
        closed[in_year] = np.isin(days[in_year], list(closed_days))
    return off, closed


# The public buildings (Cambridge University Estates): England, and the university's closure.
PUBLIC_DATA_CALENDAR = SiteCalendar("Europe/London", "GB", "ENG", (UNIVERSITY_CHRISTMAS,))


def calendar_for(timezone: str | None, country: str | None = None, subdiv: str | None = None) -> SiteCalendar:
    """The calendar of a device as the warehouse and the endpoint describe it (one code path).

    No time zone means a device of the public data set (and what every model was served with
    before sites carried one): England with the university closure. A time zone gives that zone,
    its country's public holidays and no closures (a home does not close for Christmas).
    """
    if timezone is None:
        return PUBLIC_DATA_CALENDAR
    return SiteCalendar.of(timezone, country, subdiv)
