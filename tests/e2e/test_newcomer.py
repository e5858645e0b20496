"""What a newcomer meets, in a real browser against the real CPU vLLM (one app, two real starts):

1. a model that cannot be found is refused before anything stops, named in Vietnamese, and stays pending;
2. an Apply measures the same short order before and after the switch, on the factory page and in the
   history, with no red for noise;
3. one check everywhere: 131,072 tokens gets one fix (8,192), and the impact page refuses 20,000;
7. the playground counts the prompt before sending, labels the answer with its server, keeps the preset;
and every page in Vietnamese is free of English errors and raw keys, with screenshots at 1366x768 and
1920x1080 in both languages (test-artifacts/e2e/<time>/).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from test_browser import (
    PAGE_TIMEOUT_MS,
    REPLY_TIMEOUT_MS,
    choose_group,
    main_area,
    open_factory,
    page_text,
    pick_option,
    prefix,
    set_lanes,
    set_port,
    wait_for_ready,
    wait_until_idle,
)

from dashboard.engine import presets
from dashboard.i18n import translator

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.timeout(900)]

SIZES = {"1366": {"width": 1366, "height": 768}, "1920": {"width": 1920, "height": 1080}}
PAGES = {  # every page of the sidebar: (its name there, its heading)
    "factory": ("Factory floor", "Factory floor"),
    "playground": ("Prompt playground", "Prompt playground"),
    "memory": ("Memory warehouse", "Warehouse & memory, live"),
    "impact": ("Impact on response time", "What does each flag do to response time?"),
    "tune": ("Tune for me", "Tune for me"),
    "lesson": ("Lesson", "Lesson"),
    "history": ("History", "History"),
}
RAW_KEYS = re.compile(r"\b(ready_s|kv_cache_tokens|max_concurrency|e2e_p50_ms|ttft_p50_ms|e2e_ms|ttft_ms)\b")
ENGLISH_ERRORS = (
    "couldn't connect",
    "OSError",
    "HTTP 400",
    "maximum context length",
    "Traceback",
    "The request failed",
    "Error:",
    "is not a model name",
    "No clear change",
    "Before and after",
)
FIRST_ORDER_HINT = translator("vi")(
    "This was the first order since the factory was rebuilt: the machines were still warming up, so it took "
    "longer. Send it again to see the usual time."
)
LONG_WORDS = 2600  # with the Pika system prompt, far beyond the CPU default of 2,048 tokens


WATCH_STATES_JS = """() => {
    // Every (status badge, Apply clickable) pair the factory page shows from now on, stale copies left out.
    window.__legoStates = [];
    const note = () => {
        const card = [...document.querySelectorAll('.st-key-factory-status')]
            .find(el => !el.closest('[data-stale="true"]'));
        const button = document.querySelector('.st-key-factory-apply button');
        if (!card || !button || button.closest('[data-stale="true"]')) return;
        const pair = [card.innerText, !button.disabled];
        const last = window.__legoStates[window.__legoStates.length - 1];
        if (!last || last[0] !== pair[0] || last[1] !== pair[1]) window.__legoStates.push(pair);
    };
    new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       characterData: true});
    note();
}"""


def go_to(page: Page, lang: str, name: str) -> None:
    _ = translator(lang)
    nav, heading = PAGES[name]
    page.get_by_test_id("stSidebarNav").get_by_text(_(nav), exact=True).click()
    expect(main_area(page).get_by_role("heading", name=_(heading))).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page)


def visible_text(page: Page) -> str:
    """The main area's visible words, without code blocks (commands and vLLM's own words live there)."""
    return page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]').cloneNode(true);
            main.querySelectorAll('[data-testid="stCode"], pre, code').forEach(el => el.remove());
            return main.innerText;
        }"""
    )


def assert_speaks_vietnamese(page: Page, where: str) -> None:
    text = visible_text(page)
    raw = RAW_KEYS.findall(text)
    assert not raw, f"raw keys on the Vietnamese {where} page: {raw}"
    english = [phrase for phrase in ENGLISH_ERRORS if phrase in text]
    assert not english, f"English on the Vietnamese {where} page: {english}"


def status_is_ready(page: Page, lang: str) -> None:
    _ = translator(lang)
    expect(main_area(page).get_by_text(prefix(_("Taking orders at {url}")))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )


@pytest.fixture(scope="module")
def started(lego_app, browser):
    """The factory started once for this module (real start 1), in Vietnamese, on this test's port."""
    context = browser.new_context(viewport=SIZES["1366"], locale="vi-VN")
    page = context.new_page()
    try:
        open_factory(page, lego_app.url, "vi")
        set_port(page, "vi", lego_app.vllm_port)
        set_lanes(page, "vi", 8)
        page.locator(".st-key-factory-apply").get_by_role("button").click()
        wait_for_ready(page, "vi", 8, _NoShots(), lego_app)
    finally:
        context.close()
    return lego_app


class _NoShots:
    def take(self, *args, **kwargs) -> None:
        return None


def test_a_model_that_cannot_be_found_is_refused_before_anything_stops(started, browser_page, shots):
    page, _ = browser_page, translator("vi")
    open_factory(page, started.url, "vi")
    status_is_ready(page, "vi")
    box = page.locator(".st-key-factory-model input")
    box.fill("nonexistent/model")
    box.press("Enter")
    wait_until_idle(page)
    error = main_area(page).get_by_test_id("stAlertContentError").filter(has_text="nonexistent/model")
    expect(error.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    text = error.first.inner_text()
    assert "huggingface.co" not in text and "couldn't connect" not in text, text
    assert _("The model {model} is not on this computer").split("{")[0] in text or "Hugging Face" in text
    expect(page.locator(".st-key-factory-apply").get_by_role("button")).to_be_disabled()
    expect(page.locator(".st-key-control_room")).to_contain_text("nonexistent/model")  # still pending
    status_is_ready(page, "vi")  # the working server was never stopped
    assert_speaks_vietnamese(page, "factory")
    shots.take(page, "model-refused", "vi")
    box.fill("embedded")
    box.press("Enter")
    wait_until_idle(page)


def test_one_rule_one_fix_for_a_length_the_model_cannot_read(started, browser_page, shots):
    page, _ = browser_page, translator("vi")
    open_factory(page, started.url, "vi")
    choose_group(page, "vi", "conveyor")
    slider = page.locator(".st-key-card_max_model_len").get_by_role("slider")
    slider.focus()
    slider.press("End")
    wait_until_idle(page)
    expect(slider).to_have_attribute("aria-valuetext", re.compile(r"131[.,]072"), timeout=PAGE_TIMEOUT_MS)
    fixes = page.locator(".st-key-control_room").get_by_role("button").filter(has_text="--max-model-len")
    expect(fixes).to_have_count(1, timeout=PAGE_TIMEOUT_MS)
    assert "8.192" in fixes.first.inner_text(), fixes.first.inner_text()
    shots.take(page, "one-fix", "vi")
    fixes.first.click()
    wait_until_idle(page)
    expect(slider).to_have_attribute("aria-valuetext", re.compile(r"8[.,]192"), timeout=PAGE_TIMEOUT_MS)

    go_to(page, "vi", "impact")
    flag_box = page.locator(".st-key-impact-flag")
    pick_option(page, flag_box.get_by_role("combobox"), re.compile("--max-model-len"))
    wait_until_idle(page)
    values = page.locator(".st-key-impact-values-max_model_len input")
    values.fill("2048, 20000")
    values.press("Enter")
    wait_until_idle(page)
    refusal = main_area(page).get_by_test_id("stAlertContentError").filter(has_text="20.000")
    expect(refusal.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    assert "8.192" in refusal.first.inner_text()
    expect(page.locator(".st-key-impact-run-one").get_by_role("button")).to_be_disabled()
    assert_speaks_vietnamese(page, "impact")


def test_apply_shows_the_same_order_before_and_after_here_and_in_the_history(started, browser_page, shots):
    page, _ = browser_page, translator("vi")
    open_factory(page, started.url, "vi")
    set_lanes(page, "vi", 16)
    apply = page.locator(".st-key-factory-apply").get_by_role("button")
    page.evaluate(WATCH_STATES_JS)
    apply.click()
    expect(apply).to_be_disabled(timeout=PAGE_TIMEOUT_MS)  # no second click while this one is measured
    wait_for_ready(page, "vi", 16, shots, started)  # real start 2
    # 8. Each state shows what is true at that moment: never "stopped" (the old server serves on), and
    #    the button never looks clickable while the factory shows a start.
    seen = page.evaluate("() => window.__legoStates")
    names = ("Ready for orders", "Starting…", "Stopping…", "Stopped", "Start failed")
    shown = [([n for n in names if _(n) in card], enabled) for card, enabled in seen]
    assert all(len(found) == 1 for found, _enabled in shown), seen  # one status at a time, always one
    statuses = {found[0] for found, _enabled in shown}
    assert "Stopped" not in statuses and "Start failed" not in statuses, seen
    busy = ("Starting…", "Stopping…")
    assert not [s for s in shown if s[0][0] in busy and s[1]], f"Apply clickable during a start: {seen}"
    assert statuses & set(busy), f"the start was never shown: {seen}"
    nothing_waits = _("No changes waiting: every control matches the server.")
    expect(page.locator(".st-key-control_room")).to_contain_text(nothing_waits)  # no port change left over
    card = page.locator(".st-key-factory-compare-card").first  # a redraw briefly keeps the old copy too
    expect(card).to_contain_text(_("Before and after this Apply"), timeout=PAGE_TIMEOUT_MS)
    verdicts = [
        prefix(_(text)).split(":")[0]
        for text in (
            "Faster: the same order took {percent} less time.",
            "Slower: the same order took {percent} more time.",
            "No clear change: the gap is inside the spread of the measurements.",
        )
    ]
    expect(card).to_contain_text(re.compile("|".join(map(re.escape, verdicts))), timeout=120_000)
    metrics = card.get_by_test_id("stMetricValue").all_inner_texts()
    assert len(metrics) == 2 and all(re.search(r"\d", m) for m in metrics), metrics
    expect(card).to_contain_text("--max-num-seqs")
    card.scroll_into_view_if_needed()
    shots.take(page, "before-after", "vi")

    go_to(page, "vi", "history")
    history_card = page.locator("[class*='st-key-history-apply-'][class*='-card']").first
    expect(history_card).to_contain_text(_("Before and after this Apply"), timeout=PAGE_TIMEOUT_MS)
    expect(history_card).to_contain_text("--max-num-seqs")
    assert_speaks_vietnamese(page, "history")
    shots.take(page, "history-before-after", "vi", full_page=True)


def test_the_playground_refuses_a_prompt_too_long_and_labels_each_answer(started, browser_page, shots):
    page, _ = browser_page, translator("vi")
    open_factory(page, started.url, "vi")
    go_to(page, "vi", "playground")
    message = page.locator(".st-key-playground-user-pika textarea")
    message.fill("xin chào " * (LONG_WORDS // 2))
    message.press("Tab")
    wait_until_idle(page)
    page.locator(".st-key-playground-send").get_by_role("button").click()
    wait_until_idle(page)
    refusal = main_area(page).get_by_test_id("stAlertContentError")
    expect(refusal.first).to_contain_text("--max-model-len", timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_test_id("stChatMessageContent")).to_have_count(0)  # nothing was sent
    assert FIRST_ORDER_HINT[:40] not in page_text(page)  # no warm-up hint under an error
    assert_speaks_vietnamese(page, "playground")
    shots.take(page, "prompt-too-long", "vi")

    message.fill("Nghe vui quá!")
    message.press("Tab")
    wait_until_idle(page)
    page.locator(".st-key-playground-send").get_by_role("button").click()
    answered_by = prefix(_("Answered by the factory with: {settings}"))
    label = main_area(page).get_by_text(answered_by)
    expect(label).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(label).to_contain_text("--max-num-seqs 16")  # the server of the Apply test above
    wait_until_idle(page)
    assert_speaks_vietnamese(page, "playground")

    # The server changes (a flip of the carousel back to the 8-lane server): the answer of the other one goes.
    go_to(page, "vi", "factory")
    strip = page.locator(".st-key-carousel_strip")
    strip.get_by_role("button", name=_("Flip to this one")).first.click()
    wait_until_idle(page)
    choose_group(page, "vi", "lanes")
    expect(page.locator(".st-key-card_max_num_seqs")).to_contain_text(
        _("Server now: {value}").format(value=8), timeout=PAGE_TIMEOUT_MS
    )
    go_to(page, "vi", "playground")
    expect(page.get_by_test_id("stChatMessageContent")).to_have_count(0)
    expect(main_area(page).get_by_text(answered_by)).to_have_count(0)

    preset = page.locator(".st-key-playground-preset").get_by_role("combobox")
    pick_option(page, preset, _(presets.get("pika-json").title))
    wait_until_idle(page)
    expect(page).to_have_url(re.compile(r"[?&]preset=pika-json(&|$)"), timeout=PAGE_TIMEOUT_MS)
    page.reload()
    wait_until_idle(page)
    expect(page.locator(".st-key-playground-preset").get_by_role("combobox")).to_have_value(
        _(presets.get("pika-json").title), timeout=PAGE_TIMEOUT_MS
    )


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_in_both_sizes_and_languages(lang, size, started, browser_page, shots):
    page = browser_page
    page.set_viewport_size(SIZES[size])
    open_factory(page, started.url, lang)
    for name in PAGES:
        if name != "factory":
            go_to(page, lang, name)
        if lang == "vi":
            assert_speaks_vietnamese(page, name)
        assert "Traceback" not in page_text(page), name
        shots.take(page, f"{name}-{size}", lang, full_page=True)
