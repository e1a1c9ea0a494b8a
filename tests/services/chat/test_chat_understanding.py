from datetime import date

import pytest

from services.chat.understanding import Catalog, Entity, understand

CATALOG = Catalog(
    devices=[
        Entity(kind="device", id="dev-001", name="Main incomer", site_id="site-a", timezone="Europe/Dublin"),
        Entity(kind="device", id="dev-002", name="HVAC plant", site_id="site-a", timezone="Europe/Dublin"),
        Entity(kind="device", id="dev-017", name="Heat pump", site_id="site-b", timezone="America/New_York"),
    ],
    sites=[
        Entity(kind="site", id="site-a", name="Harbour Office", timezone="Europe/Dublin"),
        Entity(kind="site", id="site-b", name="Elm Street 12", timezone="America/New_York"),
    ],
)


def today_in(tz: str) -> date:
    return date(2026, 11, 20)


def ask(question: str, previous=None):
    return understand(question, CATALOG, today_in, previous)


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("which meter used the most last week?", "top_k"),
        ("how much energy did the HVAC plant use yesterday?", "usage"),
        ("compare Harbour Office and Elm Street 12", "compare"),
        ("when was the peak hour yesterday?", "peak_hour"),
        ("show the load profile of dev-001", "load_profile"),
        ("what is the base load overnight?", "base_load"),
        ("what did site-a cost last month on time-of-use?", "cost"),
        ("what will site B draw tomorrow at 6 pm?", "forecast"),
        ("why was meter 17 flagged?", "anomalies"),
        ("tell me about the heat pump", "device_facts"),
        ("which meters have stopped reporting?", "silent_devices"),
        ("how can we cut standby consumption?", "advice"),
        ("drop table energy_analytics.forecasts", "unsafe"),
        ("set the energy of dev-001 to 0", "unsafe"),
        ("what's the weather in Paris?", "out_of_scope"),
    ],
)
def test_intents(question: str, intent: str) -> None:
    assert ask(question).intent == intent


def test_meter_number_maps_to_the_id_suffix_and_its_own_site_is_context() -> None:
    u = ask("what will site B and meter 17 draw tomorrow?")  # meter 17 is at site B
    assert [d.id for d in u.slots.devices] == ["dev-017"]
    assert u.slots.sites == []


def test_a_meter_and_an_unrelated_site_together_ask_to_split_the_question() -> None:
    u = ask("what did meter 17 and Harbour Office use yesterday?")
    assert u.intent == "clarify"
    assert "separately" in (u.reason or "")


def test_a_typo_in_a_name_still_matches_one_device() -> None:
    assert [d.id for d in ask("how much did the haet pump use yesterday?").slots.devices] == ["dev-017"]


def test_an_unknown_meter_is_reported_not_guessed() -> None:
    u = ask("how much did meter 99 use yesterday?")
    assert u.slots.devices == []
    assert u.slots.unknown_names == ["meter 99"]


def test_dates_are_read_in_the_named_sites_timezone() -> None:
    assert ask("usage of Elm Street 12 yesterday").slots.tz == "America/New_York"


def test_follow_up_keeps_intent_and_entity_and_shifts_the_day() -> None:
    first = ask("how much did the HVAC plant use yesterday?")
    second = ask("and the day before?", first)
    assert second.follow_up
    assert second.intent == "usage"
    assert [d.id for d in second.slots.devices] == ["dev-002"]
    assert second.slots.period.start == date(2026, 11, 18)
    third = ask("what about the main incomer?", second)
    assert [d.id for d in third.slots.devices] == ["dev-001"]
    assert third.slots.period.start == date(2026, 11, 18)


def test_top_k_and_tariff_slots() -> None:
    assert ask("top 3 sites by energy last week").slots.k == 3
    assert ask("top 3 sites by energy last week").slots.rank_group == "site"
    assert ask("which meter used the least?").slots.order == "asc"
    tariff = ask("what did site-a cost yesterday at 0.25 per kWh?").slots.tariff
    assert tariff is not None
    assert tariff.flat_per_kwh == 0.25
