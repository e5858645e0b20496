"""How long the factory page takes to redraw after a control moves, without touching the vLLM server.

Two figures, printed (never asserted):
- script: the page's Python run alone, through Streamlit's AppTest (no browser, no network);
- browser: a real `streamlit run` driven by Chromium: flip the prefix-caching switch and wait until
  the "changed" badge appears (or disappears), i.e. what a person at the screen waits for.
Target: under 300 ms. Usage:
    .venv/bin/python benchmarks/ui_rerender.py [--rounds 15] [--port 8552] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
BADGE = "changed: on → off"


def summary(name: str, samples_ms: list[float]) -> None:
    ordered = sorted(samples_ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    print(
        f"{name:<8} n={len(ordered):<3} median {statistics.median(ordered):7.1f} ms   "
        f"p90 {p90:7.1f} ms   min {ordered[0]:7.1f} ms   max {ordered[-1]:7.1f} ms"
    )


def script_runs(rounds: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    from dashboard.ui import widgets

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.query_params["lang"] = "en"
    at.run()
    at.segmented_control(key="factory.group").set_value("shortcuts").run()
    key = widgets.widget_key("enable_prefix_caching")
    samples = []
    for index in range(rounds):
        at.toggle(key=key).set_value(index % 2 == 1)
        start = time.perf_counter()
        at.run()
        samples.append((time.perf_counter() - start) * 1000)
        if at.exception:
            raise RuntimeError(at.exception)
    return samples


def _wait_healthy(port: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer on port {port}")


def browser_runs(rounds: int, port: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)]
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_healthy(port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM if Path(CHROMIUM).exists() else None,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/?lang=en")
            page.locator(".st-key-factory-group button", has_text="Shortcuts").click()
            switch = page.locator(".st-key-card_enable_prefix_caching [data-testid='stCheckbox'] label").first
            switch.wait_for(timeout=60_000)
            badge = page.get_by_text(BADGE).first
            samples = []
            for _ in range(rounds):
                was_shown = badge.is_visible()
                start = time.perf_counter()
                switch.click()
                badge.wait_for(state="hidden" if was_shown else "visible", timeout=10_000)
                samples.append((time.perf_counter() - start) * 1000)
                time.sleep(0.3)
            browser.close()
        return samples
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--port", type=int, default=8552)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    print("Factory floor: flip one switch, wait for the page to show it (server untouched)")
    summary("script", script_runs(args.rounds))
    if not args.no_browser:
        summary("browser", browser_runs(args.rounds, args.port))
    print("target: under 300 ms")


if __name__ == "__main__":
    main()
