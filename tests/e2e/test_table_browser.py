"""The filled table in a real browser: a table run kept in the history is shown on the impact page with
its ratio, interval, orders and verdict in the chosen language, and the handout can be downloaded as
Markdown and drawn as a PNG. The table run is put in the app's history as a finished run, so no vLLM
server is started (the real table run is tests/integration/test_table_real.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard.history.store import HistoryStore
from dashboard.i18n import translator
from tests.e2e.test_browser import PAGE_TIMEOUT_MS, main_area, wait_until_idle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.server,
    pytest.mark.timeout(900),
]

ROW = {
    "flag": "enable_prefix_caching",
    "cli": "--enable-prefix-caching",
    "metric": "ttft_ms",
    "workload": "repeated_long_prompt",
    "values": [False, True],
    "effect": "faster",
    "ratio": 0.21,
    "interval": [0.17, 0.26],
    "n": 7,
    "verdict": {"vi": "Nhanh hơn: token đầu tiên.", "en": "Faster: the first token."},
    "start_time_s": [31.0, 33.0],
    "memory_gib": [3.1, 3.1],
}


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_filled_table_and_its_handout(lang, lego_app, browser_page) -> None:
    _ = translator(lang)
    with HistoryStore(lego_app.home / "history.sqlite3") as store:
        if not store.list_runs(kind="table"):
            run_id = store.create_run(
                "table", {"model": "embedded", "values": {}}, label="table", backend="cpu"
            )
            store.add_row(run_id, ROW)
            store.finish_run(
                run_id, {"vllm_version": "0.32.0", "machine": {"cpu_cores": 2, "memory_gib": 24}}
            )
    page = browser_page
    page.goto(f"{lego_app.url}/impact?lang={lang}")
    expect(
        main_area(page).get_by_role("heading", name=_("What does each flag do to response time?"))
    ).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page)
    # A single-choice st.segmented_control draws its options as radio buttons (role "radio").
    whole_table = page.locator(".st-key-impact-mode").get_by_role("radio", name=_("The whole table"))
    whole_table.click(timeout=PAGE_TIMEOUT_MS)
    expect(whole_table).to_be_checked(timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page)
    grid = main_area(page).get_by_test_id("stDataFrame")
    expect(grid).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(main_area(page).get_by_text("vLLM 0.32.0")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    download = main_area(page).get_by_role("button", name=_("Handout (Markdown)"), exact=True)
    expect(download).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as info:
        download.click()
    text = Path(info.value.path()).read_text(encoding="utf-8")
    assert ROW["verdict"][lang] in text and "0.21" in text.replace(",", ".")
    main_area(page).get_by_role("button", name=_("Prepare a printable handout (PNG)"), exact=True).click()
    wait_until_idle(page, 120_000)
    png = main_area(page).get_by_role("button", name=_("Handout (PNG)"), exact=True)
    expect(png).to_be_visible(timeout=120_000)
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as info:
        png.click()
    assert Path(info.value.path()).read_bytes().startswith(b"\x89PNG")
