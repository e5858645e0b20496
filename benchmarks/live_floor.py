"""The live floor's targets, measured on this machine with a load test running on the CPU default.

One real vLLM server (the factory's CPU default config) takes load tests of Pika orders, several at a
time, in alternating rounds: floor closed (no browser, nothing scrapes /metrics), then floor open (a real
`streamlit run` of benchmarks/live_floor_page.py, which draws the product's floor fragment, opened in
headless Chromium, so the fragment re-runs on its own timer and the sampler scrapes the server).

Figures:
- refreshes/s: fragment re-runs per second that drew a new look at the server, while the load ran;
- page re-run: the fragment's own run time on the Streamlit server, median (ms);
- p50 change: median end-to-end time of the orders with the floor open against closed, rounds pooled.

Targets (issue 10): at least 2 refreshes/s, re-run under 300 ms, p50 change under 3%.
Usage: python benchmarks/live_floor.py [--rounds 3] [--orders 24] [--concurrency 8] [--port 8391]
The last line reads: live floor: N refreshes/s, page re-run X ms, p50 change Y%
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.engine import presets  # noqa: E402
from dashboard.engine.config import default_config  # noqa: E402
from dashboard.engine.server import ServerManager  # noqa: E402
from dashboard.measure import loadgen  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_page(base_url: str, config: dict, kv_tokens: int | None, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    settings = {"base_url": base_url, "config": config, "kv_cache_tokens": kv_tokens, "log": str(log)}
    env = dict(os.environ, LEGO_FLOOR_BENCH=json.dumps(settings))
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "benchmarks" / "live_floor_page.py"),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/_stcore/health", timeout=2, trust_env=False).status_code == 200:
                return proc, url
        time.sleep(0.3)
    raise SystemExit("the floor page did not start")


def stop_page(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def load_round(manager: ServerManager, orders: int, concurrency: int) -> tuple[list[float], float, float]:
    """One load test in a worker thread (Playwright's sync API owns this thread's event loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_load_round, manager, orders, concurrency).result()


def _load_round(manager: ServerManager, orders: int, concurrency: int) -> tuple[list[float], float, float]:
    """One load test; (e2e ms of each answered order, start, end)."""
    workload = loadgen.Workload.from_request(presets.get("pika").request, label="live-floor-bench")
    plan = loadgen.LoadPlan(concurrency=concurrency, requests=orders, timeout_s=300)
    started = time.time()
    result = loadgen.run_load(manager.base_url, manager.served_name, workload, plan, api_key=manager.api_key)
    ended = time.time()
    e2e = [t.e2e_ms for t in result.timings if t.ok and t.e2e_ms is not None]
    if result.errors:
        print(f"  {result.errors} orders failed", flush=True)
    return e2e, started, ended


def floor_figures(log: Path, windows: list[tuple[float, float]]) -> tuple[float, float, int]:
    """(new looks drawn per second, median re-run ms, re-runs) inside the load windows."""
    rows = []
    for line in log.read_text().splitlines():
        at, took, look = (float(x) for x in line.split())
        if any(start <= at <= end for start, end in windows):
            rows.append((at, took, look))
    if not rows:
        return 0.0, float("nan"), 0
    seconds = sum(end - start for start, end in windows)
    fresh, seen = 0, set()
    for _at, _took, look in rows:
        if look and look not in seen:
            seen.add(look)
            fresh += 1
    return fresh / seconds, statistics.median(t for _a, t, _l in rows), len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="live-floor-"))
    log = workdir / "fragment.log"
    log.touch()
    manager = ServerManager(workdir)
    config = default_config(manager.backend).with_values({"port": args.port or free_port()})
    print(f"starting the CPU default server ({manager.backend})…", flush=True)
    report = manager.start(config, timeout=600)
    if not report.ok:
        print("the server did not start:", report.error.text("en") if report.error else "")
        return 1
    page_proc = None
    closed: list[float] = []
    opened: list[float] = []
    windows: list[tuple[float, float]] = []
    try:
        page_proc, url = start_page(manager.base_url, config.to_dict(), report.kv_cache_tokens, log)
        load_round(manager, args.concurrency, args.concurrency)  # warm-up, not counted
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            for round_index in range(args.rounds):
                e2e, _s, _e = load_round(manager, args.orders, args.concurrency)
                closed += e2e
                print(f"round {round_index + 1} closed: p50 {statistics.median(e2e):.0f} ms", flush=True)
                page = browser.new_page(viewport={"width": 1366, "height": 900})
                page.goto(url + "/?lang=en")
                page.wait_for_selector(".lego-floor", timeout=60_000)
                e2e, start, end = load_round(manager, args.orders, args.concurrency)
                opened += e2e
                windows.append((start, end))
                print(f"round {round_index + 1} open:   p50 {statistics.median(e2e):.0f} ms", flush=True)
                page.close()
                time.sleep(10)  # the sampler stops after 8 s without a reader
            browser.close()
    finally:
        if page_proc is not None:
            stop_page(page_proc)
        manager.stop()
    refreshes, rerun_ms, reruns = floor_figures(log, windows)
    p50_closed, p50_open = statistics.median(closed), statistics.median(opened)
    change = (p50_open - p50_closed) / p50_closed * 100
    print(
        f"orders: {len(closed)} closed, {len(opened)} open; "
        f"p50 {p50_closed:.0f} ms closed, {p50_open:.0f} ms open"
    )
    print(f"fragment re-runs during the load: {reruns}")
    print(
        f"live floor: {refreshes:.1f} refreshes/s, page re-run {rerun_ms:.0f} ms, p50 change {change:+.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
