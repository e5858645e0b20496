"""The whole product in a real browser: open the app in Vietnamese and in English, change the number of
checkout lanes (--max-num-seqs) on the factory floor, press Apply, watch the real vLLM server being
rebuilt phase by phase, then ask it the Pika question in the playground and read the streamed answer
and its timings. The server must really run with the new value.

The two languages run in order on one app (one vLLM server): vi starts the server with 8 lanes, en
restarts it with 12. Each also works alone (-k en): it starts the server when none is running.
"""

from __future__ import annotations

import re
import time

import httpx
import psutil
import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from dashboard.engine import flag_texts, models, presets
from dashboard.engine.config import SERVER_MODULE
from dashboard.i18n import translator

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.timeout(900)]

PAGE_TIMEOUT_MS = 60_000  # one Streamlit rerun on a busy 2-core machine
READY_TIMEOUT_S = 300.0  # the CPU server alone starts in ~35 s; 173 s seen while others ran theirs
REPLY_TIMEOUT_MS = 180_000
LANES = {"vi": 8, "en": 12}
OTHER_LANGUAGE = {"vi": "en", "en": "vi"}
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null && app.dataset.testScriptState === "notRunning"
        && app.dataset.testConnectionState === "CONNECTED"
        && !document.querySelector('[data-testid="stStatusWidget"]')
        && !document.querySelector('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]');
}"""


# ------------------------------------------------------------------------------------------ helpers


def wait_until_idle(page: Page, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """The script is not running, Streamlit shows no "Running..." widget and every element is drawn
    (no loading skeleton left)."""
    page.wait_for_function(IDLE_JS, polling=100, timeout=timeout_ms)


def prefix(message: str) -> str:
    """The fixed words of a message before its first {placeholder}."""
    return message.split("{")[0].strip()


def main_area(page: Page) -> Locator:
    return page.get_by_test_id("stMain")


def open_factory(page: Page, url: str, lang: str) -> None:
    _ = translator(lang)
    page.goto(f"{url}/?lang={lang}")
    expect(main_area(page).get_by_role("heading", name=_("Factory floor"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    wait_until_idle(page)


def choose_group(page: Page, lang: str, group: str) -> None:
    title = translator(lang)(flag_texts.group_texts(group).title)
    page.get_by_role("radio", name=re.compile(re.escape(title))).click()
    expect(page.get_by_role("radio", name=re.compile(re.escape(title)))).to_be_checked(
        timeout=PAGE_TIMEOUT_MS
    )
    wait_until_idle(page)


def pick_option(page: Page, combobox: Locator, name: str | re.Pattern[str]) -> None:
    """Open a select box and click one of its options. A live fragment's rerun can close the list
    between the two clicks, so open it again (three tries) before giving up."""
    option = page.get_by_role("option", name=name).first
    for attempt in range(3):
        combobox.click()
        try:
            option.click(timeout=10_000)
            return
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            wait_until_idle(page)


def flag_label(lang: str, name: str) -> str:
    return translator(lang)(flag_texts.texts_for(name).label)


def set_port(page: Page, lang: str, port: int) -> None:
    """Point the factory's door at this test's vLLM port (the app's default port may be someone else's)."""
    choose_group(page, lang, "doors")
    field = page.get_by_label(flag_label(lang, "port"), exact=True)
    if field.input_value() != str(port):
        field.fill(str(port))
        field.press("Enter")
    expect(field).to_have_value(str(port), timeout=PAGE_TIMEOUT_MS)
    expect_pending(page, lang, "port", port)


def expect_pending(page: Page, lang: str, name: str, value: int) -> None:
    """The app has the new value: the flag's card says "changed: old → value", or, when the value is
    the one the server already runs with, no longer says changed."""
    _ = translator(lang)
    card = page.locator(f".st-key-card_{name}")
    changed = prefix(_("changed: {old} → {new}"))
    arrow = re.escape(_("changed: {old} → {new}").split("{old}")[1].split("{new}")[0])
    running = _("Server now: {value}").format(value=value)
    expect(card).to_contain_text(
        re.compile(rf"{re.escape(changed)}.*{arrow}{value}(?!\d)|{re.escape(running)}"),
        timeout=PAGE_TIMEOUT_MS,
    )
    wait_until_idle(page)


def shown_number(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))  # "1.024" (vi) and "1,024" (en) are both 1024


def set_lanes(page: Page, lang: str, lanes: int) -> None:
    """Move the checkout-lanes slider with the keyboard until it shows `lanes`."""
    choose_group(page, lang, "lanes")
    card = page.locator(".st-key-card_max_num_seqs")
    expect(card).to_contain_text(flag_label(lang, "max_num_seqs"))
    slider = card.get_by_role("slider")
    for _ in range(40):  # each step reruns the page, which draws the slider anew
        shown = shown_number(slider.get_attribute("aria-valuetext") or "0")
        if shown == lanes:
            break
        slider.press("ArrowLeft" if shown > lanes else "ArrowRight")
        wait_until_idle(page)
    expect(slider).to_have_attribute("aria-valuetext", str(lanes), timeout=PAGE_TIMEOUT_MS)
    expect_pending(page, lang, "max_num_seqs", lanes)


# During a rerun Streamlit keeps the old copy of an element (inside a data-stale="true" box) beside the
# new one. Tests read the copy now shown: `shown()` for locators, and in page scripts the same test,
# `!el.closest('[data-stale="true"]')`.
STALE = '[data-stale="true"]'


def shown(page: Page, selector: str) -> Locator:
    """The elements matching `selector` now shown, leaving out stale copies and what is inside them."""
    return page.locator(f"{selector}:not({STALE}):not({STALE} *)")


def page_text(page: Page) -> str:
    return main_area(page).inner_text()


STARTUP_STATE_JS = """([after, takingOrders, serverNow, failed, seen]) => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return null;
    const text = main.innerText;
    const lines = main.querySelectorAll(
        '[data-testid="stExpanderDetails"] [data-testid="stMarkdownContainer"]');
    const phases = [...lines].filter(
        el => el.innerText.includes(' · ' + after) && !el.closest('[data-stale="true"]')).length;
    const lanesShown = !!main.querySelector('.st-key-card_max_num_seqs');
    const state = {phases, ready: text.includes(takingOrders) && text.includes(serverNow),
                   failed: text.includes(failed),
                   lanesHidden: text.includes(takingOrders) && !lanesShown};
    return state.ready || state.failed || state.lanesHidden || phases !== seen ? state : null;
}"""


def rebuild_box(page: Page, lang: str) -> Locator:
    """The box that lists the startup phases while the factory is rebuilt."""
    line = " · " + prefix(translator(lang)("after {seconds}"))
    return main_area(page).get_by_test_id("stExpander").filter(has_text=line)


def show_rebuild_box(page: Page, lang: str) -> None:
    box = rebuild_box(page, lang)
    if box.count():
        box.first.evaluate("el => el.scrollIntoView({block: 'center'})")


def wait_for_ready(page: Page, lang: str, lanes: int, shots, app) -> float:
    """Wait until the status card says the factory takes orders and the lanes card says the server runs
    with `lanes`; a screenshot each time the list of startup phases changes. Returns the seconds waited."""
    _ = translator(lang)
    args = [
        prefix(_("after {seconds}")),
        prefix(_("Taking orders at {url}")),
        _("Server now: {value}").format(value=lanes),
        _("The last start failed: read why below."),
    ]
    started = time.monotonic()
    seen_phases = 0
    while (left_s := READY_TIMEOUT_S - (time.monotonic() - started)) > 0:
        try:
            handle = page.wait_for_function(
                STARTUP_STATE_JS, arg=[*args, seen_phases], polling=250, timeout=left_s * 1000
            )
        except PlaywrightTimeoutError:
            break
        state = handle.json_value()
        if state["failed"]:
            shots.take(page, "start-failed", lang, full_page=True)
            pytest.fail("the server did not start:\n" + page_text(page) + "\n" + app.log_tail())
        if state["ready"]:
            return time.monotonic() - started
        if state["lanesHidden"]:  # another part of the factory is shown: open the lanes to read them
            choose_group(page, lang, "lanes")
            continue
        wait_until_idle(page)  # a redraw briefly changes the count: count again once it is complete
        phases = page.evaluate(STARTUP_STATE_JS, [*args, -1])["phases"]
        if phases and phases != seen_phases:
            show_rebuild_box(page, lang)
            shots.take(page, f"startup-phase-{phases}", lang)
        seen_phases = phases
    shots.take(page, "start-timeout", lang, full_page=True)
    pytest.fail(f"the factory was not ready after {READY_TIMEOUT_S:.0f} s:\n{page_text(page)}")


def duration_pattern(lang: str) -> re.Pattern[str]:
    """A duration as the page writes it in `lang`: "120 ms", "1,25 giây"."""
    _ = translator(lang)
    units = [
        re.escape(_(text)).replace(re.escape("{value}"), r"[\d.,]+") for text in ("{value} ms", "{value} s")
    ]
    return re.compile("|".join(units))


def server_command_line(vllm_port: int, runs_dir) -> list[str]:
    """The command line of the vLLM API server the app started on this port."""
    for process in psutil.process_iter(["cmdline", "cwd"]):
        # A server forked from the prepared starter shows its command line as one string (setproctitle)
        words = " ".join(process.info["cmdline"] or []).split()
        if (
            SERVER_MODULE in words
            and "--port" in words
            and words[words.index("--port") + 1] == str(vllm_port)
        ):
            assert str(process.info["cwd"]).startswith(str(runs_dir)), "a vLLM server not started by the app"
            return words
    return []


def serving_port(page: Page, lang: str) -> int:
    """The port of the server in use, as the status card shows it ("Taking orders at http://…:PORT")."""
    text = main_area(page).get_by_text(prefix(translator(lang)("Taking orders at {url}"))).first.inner_text()
    match = re.search(r"127\.0\.0\.1:(\d+)", text)
    assert match, text
    return int(match.group(1))


def flag_value(words: list[str], option: str) -> str | None:
    return words[words.index(option) + 1] if option in words else None


# ------------------------------------------------------------------------------------------ the tour


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_learner_rebuilds_the_factory_and_gets_a_streamed_answer(lang, lego_app, browser_page, shots):
    page = browser_page
    _ = translator(lang)
    other = translator(OTHER_LANGUAGE[lang])
    lanes = LANES[lang]

    # 1. The factory floor speaks the chosen language.
    if lang != "en":
        assert _("Factory floor") != "Factory floor", f"no {lang} translation of the page title"
    open_factory(page, lego_app.url, lang)
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_text(_("Prompt playground"), exact=True)).to_be_visible()
    assert other("Factory floor") not in page_text(page)
    shots.take(page, "factory", lang)

    # 2. Door number and checkout lanes, then the changes wait for Apply.
    set_port(page, lang, lego_app.vllm_port)
    set_lanes(page, lang, lanes)
    control_room = page.locator(".st-key-control_room")
    expect(control_room).to_contain_text(
        re.compile(rf"--max-num-seqs: \S+ → {lanes}(?!\d)"), timeout=PAGE_TIMEOUT_MS
    )
    shots.take(page, "lanes-changed", lang)

    # 3. Apply: the real server is rebuilt, phase by phase.
    apply = page.locator(".st-key-factory-apply").get_by_role("button")
    expect(apply).to_be_enabled()
    apply.click()
    expect(main_area(page).get_by_text(_("The factory is being rebuilt with your settings."))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    expect(rebuild_box(page, lang).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    waited = wait_for_ready(page, lang, lanes, shots, lego_app)
    print(f"[{lang}] ready {waited:.1f} s after Apply")
    wait_until_idle(page)
    expect(main_area(page).get_by_text(prefix(_("Taking orders at {url}")))).to_be_visible()
    shots.take(page, "ready", lang, full_page=True)

    # 4. The server really runs with the new value: its own command line, the page's record of it, its API.
    #    (The carousel keeps the server of an earlier test warm on the chosen port, so a new one may take
    #    the next free port: the status card says which.)
    port = serving_port(page, lang)
    words = server_command_line(port, lego_app.runs_dir)
    assert flag_value(words, "--max-num-seqs") == str(lanes), words
    command = (
        main_area(page).get_by_test_id("stExpander").filter(has_text=_("The exact command of this start"))
    )
    command.get_by_text(_("The exact command of this start")).click()
    expect(command.get_by_test_id("stCode")).to_contain_text(f"--max-num-seqs {lanes}")
    expect(command.get_by_test_id("stCode")).to_contain_text(f"--port {port}")
    answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10, trust_env=False)
    assert answer.status_code == 200
    assert models.EMBEDDED_NAME in [entry["id"] for entry in answer.json()["data"]], answer.text

    # 5. The playground: the Pika request, a streamed answer and its timings.
    page.get_by_test_id("stSidebarNav").get_by_text(_("Prompt playground"), exact=True).click()
    expect(main_area(page).get_by_role("heading", name=_("Prompt playground"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    wait_until_idle(page)
    preset = page.locator(".st-key-playground-preset").get_by_role("combobox", name=_("Preset request"))
    expect(preset).to_have_value(_(presets.get("pika").title))
    send = page.locator(".st-key-playground-send").get_by_role("button")
    expect(send).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    shots.take(page, "playground", lang)
    send.click()
    reply = page.get_by_test_id("stChatMessageContent")
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stChatMessageContent"]')]
                   .some(el => el.innerText.includes('\u258c'))""",
        polling="raf",
        timeout=REPLY_TIMEOUT_MS,
    )  # the typing cursor: the answer is arriving piece by piece
    shots.take(page, "reply-streaming", lang)
    ttft = page.get_by_test_id("stMetric").filter(has_text=_("First token after"))
    expect(ttft).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    wait_until_idle(page)
    answer = reply.inner_text().replace("\u258c", "").strip()
    assert answer and answer != "…", "the reply is empty"
    assert "\u258c" not in reply.inner_text(), "the typing cursor stayed after the answer ended"
    ttft_value = ttft.get_by_test_id("stMetricValue").inner_text()
    assert duration_pattern(lang).fullmatch(ttft_value), ttft_value
    for label in ("Time per next token", "Tokens per second", "Question tokens", "Answer tokens"):
        metric = page.get_by_test_id("stMetric").filter(has_text=_(label))
        expect(metric).to_be_visible()
        assert metric.get_by_test_id("stMetricValue").inner_text().strip() not in ("", "–"), label
    print(f"[{lang}] answer: {answer[:120]!r}; first token after {ttft_value}")
    shots.take(page, "reply", lang, full_page=True)

    # 6. The wide screen of a classroom projector.
    if lang == "en":
        page.set_viewport_size({"width": 1920, "height": 1080})
        wait_until_idle(page)
        shots.take(page, "playground-1920", lang, full_page=True)
        page.get_by_test_id("stSidebarNav").get_by_text(_("Factory floor"), exact=True).click()
        expect(main_area(page).get_by_role("heading", name=_("Factory floor"))).to_be_visible(
            timeout=PAGE_TIMEOUT_MS
        )
        wait_until_idle(page)
        shots.take(page, "factory-1920", lang, full_page=True)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_carousel_strip_flips_back_to_a_warm_setting_without_a_start(lang, lego_app, browser_page, shots):
    """After the two tours, both servers are warm: the strip flips between them in seconds."""
    page = browser_page
    _ = translator(lang)
    open_factory(page, lego_app.url, lang)
    strip = page.locator(".st-key-carousel_strip")
    expect(strip).to_contain_text(_("The carousel of warm servers"), timeout=PAGE_TIMEOUT_MS)
    waiting = strip.get_by_text(_("Paused, ready in a second"))
    if not waiting.count():
        pytest.skip("one warm server only: this test follows the tour tests of this module")
    strip.evaluate("el => el.scrollIntoView({block: 'center'})")
    shots.take(page, "carousel-strip", lang)
    before = serving_port(page, lang)
    started = time.monotonic()
    strip.get_by_role("button", name=_("Flip to this one")).first.click()
    expect(main_area(page).get_by_text(prefix(_("Taking orders at {url}")))).not_to_contain_text(
        f":{before}", timeout=PAGE_TIMEOUT_MS
    )
    flipped_s = time.monotonic() - started
    after = serving_port(page, lang)
    assert after != before
    answer = httpx.get(f"http://127.0.0.1:{after}/v1/models", timeout=10, trust_env=False)
    assert answer.status_code == 200
    expect(strip.get_by_text(_("In use"))).to_have_count(1)
    expect(strip.get_by_text(_("Paused, ready in a second"))).to_have_count(1)
    print(f"[{lang}] flipped from port {before} to {after}; the page showed it after {flipped_s:.1f} s")
    strip.evaluate("el => el.scrollIntoView({block: 'center'})")
    shots.take(page, "carousel-flipped", lang)


def test_closing_the_app_stops_its_vllm_server(lego_app):
    """Stopping Streamlit (SIGTERM to its process group) must take the vLLM server it started with it."""
    started = lego_app.vllm_processes()
    if not started:
        pytest.skip("no server is running: this test follows the tour tests of this module")
    leftovers = lego_app.stop()
    assert lego_app.proc.returncode is not None
    assert leftovers == [], "vLLM processes survived the app:\n" + "\n".join(leftovers)
    assert not lego_app.vllm_processes()
    print(f"the app stopped with {len(started)} server processes running; none survived")
