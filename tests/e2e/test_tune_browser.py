"""The "Tune for me" page in a real browser: the last tuning kept in the history is shown with its
`vllm serve` command, its figures and the verdict in Vietnamese, and a limit the tuner cannot read is
refused with how to write it. No vLLM server starts (the tuning itself is tested in
tests/integration/test_tune_real.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from dashboard.i18n import translator
from tests.app.test_tune_page import seed_tune_run
from tests.e2e.test_browser import PAGE_TIMEOUT_MS, main_area, wait_until_idle

pytestmark = [pytest.mark.e2e]


def test_the_page_shows_the_last_tuning_and_refuses_a_limit_it_cannot_read(
    lego_app, browser_page: Page, shots
):
    report = seed_tune_run(lego_app.home)
    _ = translator("vi")
    browser_page.goto(lego_app.url + "/tune?lang=vi")
    wait_until_idle(browser_page)
    main = main_area(browser_page)
    expect(main.get_by_text(_("Result"), exact=True)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(main.get_by_text("vllm serve", exact=False).first).to_be_visible()
    expect(main.get_by_text(report["verdict"]["vi"][:60], exact=False)).to_be_visible()
    expect(main.get_by_text(_("The best, measured again in turns"), exact=True)).to_be_visible()
    shots.take(browser_page, "tune-result", "vi", full_page=True)
    main.get_by_label(_("Limit (optional)")).fill("nhanh lắm")
    main.get_by_role("button", name=_("Start tuning")).click()
    wait_until_idle(browser_page)
    expect(main.get_by_text("p90-ttft=50ms", exact=False).last).to_be_visible()
    shots.take(browser_page, "tune-bad-limit", "vi")
    browser_page.goto(lego_app.url + "/tune?lang=en")
    wait_until_idle(browser_page)
    english = main_area(browser_page)
    expect(english.get_by_text("The best, measured again in turns", exact=True)).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    shots.take(browser_page, "tune-result", "en", full_page=True)
