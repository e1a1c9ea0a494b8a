"""Each failure reported in issue #13, asked of the demo-named fleet, with the expected reply.

Expected figures are computed here with pandas from the rows the fixture wrote (never by the chat's
SQL). Data clock: newest hour 2026-11-20 23:00 UTC; London (Office 5, Meter 5) is UTC in November,
Berlin (Office 3, Office 10) UTC+1, Helsinki (Office 0) UTC+2.
"""

from __future__ import annotations

import json

import flask
import pandas as pd
import pytest

from services.chat.answer import ChatDeps, answer_question
from services.chat.api import ChatRequest, ChatResponse
from services.chat.main import handle_chat
from services.chat.ratelimit import RateLimiter
from shared.settings import Settings
from tests.services.chat.fleet import Fleet


@pytest.fixture
def fleet(demo_home: tuple[Settings, Fleet]) -> Fleet:
    return demo_home[1]


def ask(deps: ChatDeps, question: str, conversation: str | None = None) -> ChatResponse:
    return answer_question(ChatRequest(question=question, conversation_id=conversation), "issue-13", deps)


def _kwh(fleet: Fleet, start: str, end: str, **where: object) -> float:
    h = fleet.hourly
    mask = (h["hour"] >= pd.Timestamp(start, tz="UTC")) & (h["hour"] < pd.Timestamp(end, tz="UTC"))
    for column, value in where.items():
        mask &= h[column].isin(value) if isinstance(value, list) else h[column] == value
    return round(float(h.loc[mask, "energy_kwh"].sum()), 3)


def _value(response: ChatResponse, label: str) -> float:
    return next(float(v.value) for v in response.values if v.label == label)  # type: ignore[arg-type]


def test_an_unknown_meter_is_named_and_never_becomes_the_fleet(
    demo_deps: ChatDeps,
) -> None:
    response = ask(demo_deps, "How much energy did meter ZZ-NOPE-404 use on 2026-11-12?")
    assert "I don't know a meter called 'zz-nope-404'" in response.answer
    assert "fleet" not in response.answer
    assert response.values == []
    assert response.citations == []


def test_office_55_is_not_office_5(demo_deps: ChatDeps) -> None:
    response = ask(demo_deps, "How much did Office 55 use yesterday?")
    assert "I don't know a site called 'office 55'" in response.answer
    assert response.values == []
    assert any(s.startswith("Office 5 (site-00005)") for s in response.suggestions)


def test_questions_with_drop_or_change_in_them_are_answered_not_refused(
    demo_deps: ChatDeps, fleet: Fleet
) -> None:
    dropped = ask(demo_deps, "Did consumption drop last week?")
    assert not dropped.refused
    assert dropped.intent == "trend"
    assert _value(dropped, "energy_kwh") == pytest.approx(_kwh(fleet, "2026-11-09", "2026-11-16"), abs=0.0015)
    assert _value(dropped, "previous_energy_kwh") == pytest.approx(
        _kwh(fleet, "2026-11-02", "2026-11-09"), abs=0.0015
    )
    voltage = ask(demo_deps, "What was the voltage drop at Office 5?")
    assert not voltage.refused
    assert "voltage measurements" in voltage.answer
    assert voltage.values == []
    change = ask(demo_deps, "How does the load change from 5 to 7 pm?")
    assert not change.refused
    assert change.intent == "load_profile"
    assert [v.label for v in change.values] == ["hour_17", "hour_18"]


def test_31_february_gets_a_clarification_with_status_200(demo_deps: ChatDeps) -> None:
    body = json.dumps({"question": "How much did Meter 1 use on 31 February?"})
    headers = {"Authorization": "Bearer local-dev-chat-key", "Content-Type": "application/json"}
    with flask.Flask("t").test_request_context("/v1/chat", method="POST", data=body, headers=headers):
        response = handle_chat(flask.request, demo_deps, RateLimiter(100))
    assert response.status_code == 200
    reply = response.get_json()
    assert "There is no 31 February" in reply["answer"]
    assert reply["answer"].endswith("?")
    assert reply["values"] == []


def test_how_many_meters_counts_dim_device(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "How many meters are there?")
    assert _value(response, "devices") == len(fleet.devices)


def test_average_power_on_weekday_working_hours_applies_both_filters(
    demo_deps: ChatDeps, fleet: Fleet
) -> None:
    response = ask(
        demo_deps, "What's the average power of dev-00005 between 9am and 5pm on weekdays last week?"
    )
    h = fleet.hourly
    rows = h[
        (h["device_id"] == "dev-00005")
        & (h["hour"] >= pd.Timestamp("2026-11-09", tz="UTC"))
        & (h["hour"] < pd.Timestamp("2026-11-14", tz="UTC"))  # Monday to Friday
        & (h["hour"].dt.hour >= 9)
        & (h["hour"].dt.hour < 17)
    ]
    assert len(rows) == 5 * 8
    assert _value(response, "avg_power_w") == pytest.approx(round(rows["avg_power_w"].mean(), 1), abs=0.051)
    assert "weekdays" in response.answer
    assert "09:00-17:00" in response.answer


def test_most_energy_per_device_ranks_by_the_normalised_figure(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "Which site uses the most energy per device?")
    h = fleet.hourly
    week = h[
        (h["hour"] >= pd.Timestamp("2026-11-14", tz="UTC"))
        & (h["hour"] < pd.Timestamp("2026-11-21", tz="UTC"))
    ]
    per = week.groupby("site_id")["energy_kwh"].sum() / week.groupby("site_id")["device_id"].nunique()
    first = response.values[0]
    assert first.label == "energy_per_device_kwh"
    assert first.entity_id == per.idxmax()
    assert float(first.value) == pytest.approx(round(per.max(), 3), abs=0.0015)  # type: ignore[arg-type]


def test_weekday_vs_weekend_gives_both_daily_averages(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "Weekday vs weekend usage for Office 3")
    h = fleet.hourly[fleet.hourly["site_id"] == "site-00003"].copy()
    h["local_date"] = h["hour"].dt.tz_convert("Europe/Berlin").dt.date
    # the 28 full local days before Saturday 2026-11-21 (Berlin's today on the data clock)
    h = h[
        (h["local_date"] >= pd.Timestamp("2026-10-24").date())
        & (h["local_date"] < pd.Timestamp("2026-11-21").date())
    ]
    daily = h.groupby("local_date")["energy_kwh"].sum()
    weekend = pd.Series([d.weekday() >= 5 for d in daily.index], index=daily.index)
    assert _value(response, "weekday_avg_daily_kwh") == pytest.approx(
        round(daily[~weekend].mean(), 3), abs=0.0015
    )
    assert _value(response, "weekend_avg_daily_kwh") == pytest.approx(
        round(daily[weekend].mean(), 3), abs=0.0015
    )


def test_trending_compares_the_last_seven_full_days_with_the_seven_before(
    demo_deps: ChatDeps, fleet: Fleet
) -> None:
    response = ask(demo_deps, "Is Office 0's consumption trending up?")
    # Helsinki's today is 2026-11-21; full days 11-14..20 local = 2026-11-13 22:00 .. 2026-11-20 22:00 UTC
    now = _kwh(fleet, "2026-11-13 22:00", "2026-11-20 22:00", site_id="site-00000")
    before = _kwh(fleet, "2026-11-06 22:00", "2026-11-13 22:00", site_id="site-00000")
    assert _value(response, "energy_kwh") == pytest.approx(now, abs=0.0015)
    assert _value(response, "previous_energy_kwh") == pytest.approx(before, abs=0.0015)
    assert ("up" if now > before else "down") in response.answer


def test_misspelt_site_and_date_are_read_as_meant(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "how much did ofice 5 use yestrday")
    assert _value(response, "energy_kwh") == pytest.approx(
        _kwh(fleet, "2026-11-19", "2026-11-20", site_id="site-00005"), abs=0.0015
    )
    assert "yesterday" in response.answer


def test_tomorrow_is_a_whole_day_of_forecast(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "What will Office 10 use tomorrow?")
    f = fleet.forecasts
    devices = fleet.devices.loc[fleet.devices["site_id"] == "site-00010", "device_id"].tolist()
    day = f[
        f["device_id"].isin(devices)
        & (f["target_hour"] >= pd.Timestamp("2026-11-21 23:00", tz="UTC"))  # 2026-11-22 in Berlin
        & (f["target_hour"] < pd.Timestamp("2026-11-22 23:00", tz="UTC"))
    ]
    assert _value(response, "p50_kwh") == pytest.approx(round(day["p50"].sum(), 3), abs=0.0015)
    assert "24 forecast hours" in response.answer


def test_highest_peak_demand_names_a_meter_not_the_fleet_peak_hour(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "Which meter had the highest peak demand last week?")
    h = fleet.hourly
    week = h[
        (h["hour"] >= pd.Timestamp("2026-11-09", tz="UTC"))
        & (h["hour"] < pd.Timestamp("2026-11-16", tz="UTC"))
    ]
    peaks = week.groupby("device_id")["max_power_w"].max()
    assert response.values[0].entity_id == peaks.idxmax()
    assert float(response.values[0].value) == pytest.approx(peaks.max(), abs=0.051)  # type: ignore[arg-type]


def test_a_units_question_in_a_conversation_explains_units_instead_of_repeating(demo_deps: ChatDeps) -> None:
    first = ask(demo_deps, "How much did Office 5 use yesterday?")
    units = ask(demo_deps, "What units are these numbers in?", first.conversation_id)
    assert units.intent == "units"
    assert "kWh" in units.answer
    assert units.values == []
    assert units.answer != first.answer


def test_cited_site_rows_never_show_an_average_above_their_peak(demo_deps: ChatDeps) -> None:
    response = ask(demo_deps, "Compare Office 5 and Home 1 last week")
    rows = [r for c in response.citations for r in (c.rows or []) if "avg_power_w" in r]
    assert len(rows) == 2
    assert all(r["avg_power_w"] <= r["peak_hour_power_w"] for r in rows)


def test_fleet_wide_periods_are_utc_and_say_so(demo_deps: ChatDeps, fleet: Fleet) -> None:
    response = ask(demo_deps, "How much energy did the whole fleet use yesterday?")
    assert _value(response, "energy_kwh") == pytest.approx(
        _kwh(fleet, "2026-11-19", "2026-11-20"), abs=0.0015
    )
    assert "(UTC)" in response.answer
    assert "several time zones" in response.answer
