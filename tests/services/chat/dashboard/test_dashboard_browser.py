"""The dashboard in a real browser: Playwright driving Debian's Chromium against the chat app on loopback.

`make browser` installs /usr/bin/chromium (never `playwright install`, which downloads a browser
build). Screenshots land in artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                "/usr/bin/chromium is missing: `make browser` installs it (a prerequisite of `make test`)"
            )
        pytest.skip("no /usr/bin/chromium: run `make browser`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


@pytest.fixture
def open_page(browser, demo_chat_server, page_errors):
    """A new page at `viewport`, signed in through the `#key=` link that `gridsight up` prints."""
    contexts = []

    def _open(
        hash_path: str = "#/", viewport: dict[str, int] = LAPTOP, *, key: str | None = "local-dev-chat-key"
    ):
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(f"{demo_chat_server}/dashboard" + (f"#key={key}" if key else ""))
        if key and hash_path != "#/":
            page.wait_for_selector("body[data-view]")
            page.evaluate("h => { location.hash = h; }", hash_path)
        return page

    yield _open
    for context in contexts:
        context.close()


def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_overview_lists_the_demo_devices(open_page, page_errors):
    page = open_page()
    rows = page.locator("#devices-table tbody tr[data-device]")
    rows.first.wait_for()
    assert rows.count() == 3
    assert [rows.nth(i).get_attribute("data-device") for i in range(3)] == ["dev-001", "dev-002", "dev-003"]
    assert "Main incomer" in rows.nth(0).inner_text()
    assert "Harbour Office" in rows.nth(0).inner_text()
    assert page.locator("#open-incidents [data-incident]").count() == 1
    assert "6.2 sigma" in page.locator("#open-incidents").inner_text()
    page.get_by_label("Filter devices by name, id, site or meter").fill("hvac")
    assert page.locator("#devices-table tbody tr[data-device]:visible").count() == 1
    assert page.locator("#device-filter-count").inner_text() == "1 of 3 devices"
    page.get_by_label("Filter devices by name, id, site or meter").fill("")
    assert page.locator("#devices-table tbody tr[data-device]:visible").count() == 3
    # the key came in the fragment and was taken out of the address bar
    assert page.evaluate("location.hash") == "#/"
    _shot(page, "dashboard-fleet-laptop.png")
    assert page_errors == []


def test_device_page_draws_the_forecast_band_and_the_anomalies(open_page, page_errors):
    page = open_page("#/devices/dev-001")
    page.wait_for_selector("body[data-view=device] #load-chart canvas")
    drawn = page.evaluate(
        """() => {
          const option = echarts.getInstanceByDom(document.getElementById('load-chart')).getOption();
          const series = Object.fromEntries(option.series.map(s => [s.name, s]));
          const band = series['Forecast p10–p90'];
          return {
            names: option.series.map(s => s.name),
            band: band.data.filter(p => p[1] !== null && p[1] > 0).length,
            bandStack: band.stack, bandArea: !!band.areaStyle,
            actual: series['Actual'].data.length,
            areas: series['Actual'].markArea.data.map(a => [a[0].xAxis, a[1].xAxis]),
          };
        }"""
    )
    canvas = page.locator("#load-chart canvas").first.bounding_box()
    assert {"Actual", "Forecast p50", "Forecast p10–p90", "Forecast p10"} <= set(drawn["names"])
    assert drawn["band"] == 72  # every forecast hour in the window has a non-empty p10–p90 band
    assert drawn["bandStack"] == "band"
    assert drawn["bandArea"]
    assert drawn["actual"] == 7 * 24
    assert len(drawn["areas"]) == 2  # both incidents of the last week are shaded
    assert canvas["width"] > 300
    assert canvas["height"] > 200
    anomalies = page.locator("#device-anomalies [data-incident]")
    assert anomalies.count() == 2
    assert "register did not move" in page.locator("#device-anomalies").inner_text()
    assert "anomalies shaded" in page.locator("#load-chart").get_attribute("aria-label")
    _shot(page, "dashboard-device-laptop.png")
    assert page_errors == []


def test_the_time_window_form_redraws_the_chart(open_page):
    page = open_page("#/devices/dev-001")
    page.wait_for_selector("body[data-view=device] #load-chart canvas")
    page.get_by_label("Time window").select_option(label="Last 3 days")
    page.get_by_role("button", name="Show").click()
    page.wait_for_function("location.hash.endsWith('?hours=72')")
    page.wait_for_function(
        "() => { const c = echarts.getInstanceByDom(document.getElementById('load-chart'));"
        " return c && c.getOption().series.find(s => s.name === 'Actual').data.length === 72; }"
    )
    assert page.get_by_label("Time window").input_value() == "72"
    assert (
        page.locator("#device-anomalies [data-incident]").count() == 1
    )  # the older incident is out of range


def test_unknown_device_page_says_so(open_page):
    page = open_page("#/devices/no-such-meter")
    page.wait_for_selector("#alert:not([hidden])")
    assert "unknown device 'no-such-meter'" in page.locator("#alert").inner_text()


def test_the_page_is_usable_on_a_phone(open_page, page_errors):
    page = open_page(viewport=PHONE)
    page.locator("#devices-table tbody tr[data-device]").first.wait_for()
    # nothing wider than the screen: the devices table scrolls inside its own region
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    chat_box = page.locator("#chat").bounding_box()
    main_box = page.locator("main").bounding_box()
    assert chat_box["y"] > main_box["y"]  # chat stacks below the content on a narrow screen
    _shot(page, "dashboard-fleet-phone.png")
    page.evaluate("location.hash = '#/devices/dev-001'")
    page.wait_for_selector("body[data-view=device] #load-chart canvas")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _shot(page, "dashboard-device-phone.png")
    assert page_errors == []


def test_keyboard_alone_reaches_a_device_page(open_page):
    page = open_page()
    page.locator("#devices-table tbody tr[data-device]").first.wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("location.hash") == "#/"  # skipping to the content does not navigate
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == "#/devices/dev-002":
            break
    else:
        pytest.fail("the device link was never reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-view=device]")
    assert page.locator("#view-title").inner_text() == "HVAC plant"
    assert page.evaluate("document.activeElement.id") == "view-title"  # focus moves to the new view


def test_sign_in_rejects_a_wrong_key_and_accepts_the_right_one(open_page):
    page = open_page(key=None)
    page.wait_for_selector("#signin:not([hidden])")
    page.get_by_label("API key").fill("wrong-key")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#alert:not([hidden])")
    assert "invalid API key" in page.locator("#alert").inner_text()
    page.get_by_label("API key").fill("local-dev-chat-key")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#devices-table tbody tr[data-device]").first.wait_for()
    assert page.locator("#devices-table tbody tr[data-device]").count() == 3


def test_a_chat_question_shows_the_answer_with_its_citation(open_page, page_errors):
    page = open_page()
    page.locator("#devices-table tbody tr[data-device]").first.wait_for()
    page.get_by_role("link", name="Ask").click()
    assert page.evaluate("document.activeElement.id") == "chat-question"
    page.get_by_label("Your question").fill("Which meter used the most energy yesterday?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator("#chat-log .turn .answer-text")
    answer.wait_for()
    text = answer.inner_text()
    assert "Home meter" in text
    number = re.search(r"(\d+(?:\.\d+)?) kWh", text)
    assert number, text
    citation = page.locator("#chat-log .citation-sql").first
    citation.locator("summary").click()  # the SQL and rows are one click (or Enter) away
    sql = citation.locator("pre code").inner_text()
    rows = citation.locator("table.rows").inner_text()
    assert "energy_analytics.hourly_consumption" in sql
    assert "@start" in sql  # parameterised, values bound separately
    assert "dev-003" in rows
    assert number.group(1) in rows  # the number in the answer is in the cited rows
    citation.locator("table.rows").scroll_into_view_if_needed()
    _shot(page, "dashboard-chat-laptop.png")
    assert page_errors == []


_AUDIT_JS = (Path(__file__).with_name("a11y_audit.js")).read_text()


@pytest.mark.parametrize(
    ("hash_path", "ready"), [("#/", "#devices-table"), ("#/devices/dev-001", "#load-chart canvas")]
)
def test_text_has_enough_contrast_and_every_control_a_name(open_page, hash_path, ready):
    page = open_page(hash_path)
    page.wait_for_selector(ready)
    audit = page.evaluate(_AUDIT_JS)
    assert audit["lang"] == "en"
    assert audit["low"] == []
    assert audit["unnamed"] == []
