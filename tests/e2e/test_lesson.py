"""A lesson end to end in real browsers: a shared app, the presenter and two visitors in three Chromium
contexts. The presenter starts the factory and the lanes lesson; everyone guesses; the measurement
starts (answers lock for everyone); the real factory measures max_num_seqs 2 and 16 under 16 orders at
once; the reveal shows the measured answer beside the guesses on every screen.

Real server starts: 4 (the factory, the two values of the step and the fresh start of the first value
again for the noise pair; the factory is put back by a flip). Every wait is bounded: a reveal that says
the step has no result, or a page that shows an error, fails at once with what it says.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import test_classroom as shared_class
from tests.e2e.test_browser import PAGE_TIMEOUT_MS, main_area, set_port, wait_until_idle
from tests.e2e.test_classroom import network_address, new_page, wait_ready

# The shared app of the classroom tests (`./run.sh --share`), one per module.
class_home, ports, class_app = shared_class.class_home, shared_class.ports, shared_class.class_app

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.server,
    pytest.mark.timeout(1200),
]

MEASURE_TIMEOUT_MS = 900_000  # three starts of the real server and 16 orders on each value
STEP = ".st-key-lesson-lanes-0"


def open_lesson_page(page: Page) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text("Lesson", exact=True).click()
    expect(main_area(page).get_by_role("heading", name="Lesson")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def guess(page: Page, direction: str, amount: str) -> None:
    expect(page.locator(f"{STEP}-direction")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.locator(f"{STEP}-direction").get_by_text(direction, exact=True).click()
    page.locator(f"{STEP}-amount").get_by_text(amount, exact=True).click()
    page.locator(f"{STEP}-send").get_by_role("button").click()
    expect(main_area(page).get_by_text(f"Your answer: {direction}")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def wait_for_reveal(page: Page) -> None:
    """The reveal, or fail at once when the step ended without a result or the page shows an error."""
    area = main_area(page)
    revealed = area.get_by_text(re.compile(r"\d of 3 guessed the direction right"))
    no_result = area.get_by_text(re.compile("No result for this step"))
    broken = area.get_by_test_id("stException").or_(area.get_by_text("Something went wrong on this page"))
    expect(revealed.or_(no_result).or_(broken).first).to_be_visible(timeout=MEASURE_TIMEOUT_MS)
    for problem in (no_result, broken):
        if problem.count():
            pytest.fail("the lesson step ended without a reveal: " + problem.first.inner_text())


def test_presenter_and_two_visitors_guess_measure_and_see_the_reveal(class_app, browser, ports, shots):
    assert class_app.key, "the shared app printed no presenter link"
    host = network_address()
    presenter = new_page(browser, class_app.url(host) + f"/?presenter={class_app.key}&lang=en")
    visitors = [new_page(browser, class_app.url(host) + "/?lang=en") for _ in range(2)]

    set_port(presenter, "en", ports[1])
    presenter.locator(".st-key-factory-apply").get_by_role("button").click()
    wait_ready(presenter)

    open_lesson_page(presenter)
    presenter.locator(".st-key-lesson-start-lanes").get_by_role("button").click()
    expect(main_area(presenter).get_by_text("16 customers arrive together").first).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    for visitor in visitors:
        open_lesson_page(visitor)
        expect(main_area(visitor).get_by_text("16 customers arrive together").first).to_be_visible(
            timeout=PAGE_TIMEOUT_MS
        )
        assert visitor.locator(f"{STEP}-measure").count() == 0, "a visitor must not see Start the measurement"

    guess(presenter, "faster", "clearly: 1.5 to 3 times")
    guess(visitors[0], "slower", "a little: up to 1.5 times")
    guess(visitors[1], "faster", "a lot: more than 3 times")
    expect(main_area(presenter).get_by_text("Answers so far: 3")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shots.take(visitors[0], "lesson-guess-visitor", "en")

    presenter.locator(f"{STEP}-measure").get_by_role("button").click()
    for page in (presenter, *visitors):  # the answers lock on every screen
        expect(main_area(page).get_by_text(re.compile("Answers are locked"))).to_be_visible(
            timeout=PAGE_TIMEOUT_MS
        )
        assert page.locator(f"{STEP}-send").count() == 0
    shots.take(visitors[1], "lesson-locked-visitor", "en")

    wait_for_reveal(presenter)
    wait_until_idle(presenter)
    shown = main_area(presenter).inner_text()
    assert "Measured answer" in shown and "14 customers wait at the door" in shown
    measured = main_area(presenter).get_by_test_id("stMetric").filter(has_text="Measured answer").inner_text()
    answered = {"slower": "slower" in measured, "faster": "faster" in measured}
    shots.take(presenter, "lesson-reveal-presenter", "en", full_page=True)
    for visitor, guessed in zip(visitors, ("slower", "faster"), strict=True):
        verdict = "You guessed right!" if answered[guessed] else "Not this time"
        visitor.bring_to_front()
        expect(main_area(visitor).get_by_text(re.compile(verdict))).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        shots.take(visitor, f"lesson-reveal-visitor-{guessed}", "en", full_page=True)
