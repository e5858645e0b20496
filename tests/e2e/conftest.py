"""End-to-end fixtures: a real `streamlit run dashboard/app.py`, the real vLLM server it starts, and a
real Chromium (Debian's /usr/bin/chromium) driven by Playwright.

    @pytest.mark.e2e
    @pytest.mark.server
    def test_something(lego_app, browser_page, shots):
        browser_page.goto(lego_app.url + "/?lang=en")
        ...  # wait for the page (see wait_until_idle in test_browser.py), click, check
        shots.take(browser_page, "factory", "en")            # 01-factory-en.png

`lego_app` is one app per test module, with its own LEGO_FACTORY_HOME (the converted embedded model is
linked in, so nothing is converted) and its own ports: Streamlit in 8700-8749, vLLM in 8750-8799.
Stopping it (`lego_app.stop()`, also done at the end of the module) terminates Streamlit's process group;
the app's exit hooks must then stop the vLLM server it started. Whatever survives is killed and reported.
Screenshots go to test-artifacts/e2e/<timestamp>/ under the repository root (git-ignored), with the
Streamlit log and, for a failed test, a full-page shot of where it stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

from dashboard.engine import models
from dashboard.engine.config import port_is_free

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
VIEWPORT = {"width": 1366, "height": 900}
STREAMLIT_PORTS = range(8700, 8750)
VLLM_PORTS = range(8750, 8800)
APP_START_TIMEOUT_S = 120.0
APP_STOP_TIMEOUT_S = 60.0  # Streamlit's own shutdown plus the app's hooks stopping vLLM (15 s grace)
FULL_PAGE_LIMIT_PX = 8000


# ------------------------------------------------------------------------------------------ processes


PORT_LOCKS = Path(tempfile.gettempdir()) / "lego-factory-e2e-ports"


@dataclass
class PortClaim:
    """A port this run holds: a lock file shared by every e2e run on the machine (a CI copy of the repo
    runs the same tests with the same port range), released when the run ends or dies."""

    port: int
    handle: IO[str]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def claim_free_port(ports: range) -> PortClaim:
    """The first port of `ports` that no other e2e run holds and no program listens on."""
    PORT_LOCKS.mkdir(parents=True, exist_ok=True)
    for port in ports:
        handle = open(PORT_LOCKS / f"{port}.lock", "w")  # noqa: SIM115 (held until release())
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        claim = PortClaim(port, handle)
        if port_is_free(port):
            return claim
        claim.release()
    pytest.skip(f"no free port in {ports.start}-{ports.stop - 1}")


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie waiting for its parent does not count)."""
    running = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


def processes_in(folder: Path) -> list[psutil.Process]:
    """Live processes working in `folder` or below it: the app's carousel starts each vLLM server in a
    folder of its own inside runs/, and every process of the server (API server, engine core) inherits
    it; the carousel's prepared starter works in runs/ itself."""
    target = folder.resolve()
    found = []
    for process in psutil.process_iter(["pid"]):
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if Path(process.cwd()).resolve().is_relative_to(target):
                found.append(process)
    return alive(found)


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = alive(processes)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = alive(left)
    return left


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
    return "\n".join(lines)


@dataclass
class LegoApp:
    """One running `streamlit run dashboard/app.py` and what it owns."""

    url: str
    port: int
    vllm_port: int
    home: Path
    log_path: Path
    proc: subprocess.Popen
    leftovers: list[str] = field(default_factory=list)  # vLLM processes that survived the app's stop

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def vllm_processes(self) -> list[psutil.Process]:
        return processes_in(self.runs_dir)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> list[str]:
        """SIGTERM Streamlit's process group and wait; kill what the app's exit hooks left behind.
        Returns descriptions of the vLLM processes that survived the app (empty when it cleaned up)."""
        started = self.vllm_processes()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=APP_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        survivors = wait_gone(started + self.vllm_processes(), 5.0)
        if survivors:
            self.leftovers = describe(survivors).splitlines()
            for process in survivors:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            wait_gone(survivors, 10.0)
        return self.leftovers


def link_embedded_model(home: Path) -> None:
    """Give the temporary home the already converted embedded model (converted once if it is not)."""
    source = models.prepare_embedded(log=lambda *_: None)
    target = home / "models" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=True)


def wait_for_health(app: LegoApp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if app.proc.poll() is not None:
                pytest.fail(f"streamlit exited with {app.proc.returncode}:\n{app.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(app.url + "/_stcore/health").status_code == 200:
                    return
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer /_stcore/health within {timeout:.0f} s:\n{app.log_tail()}")


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    folder = REPO_ROOT / "test-artifacts" / "e2e" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def lego_app(
    chromium_path: Path, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LegoApp]:
    home = tmp_path_factory.mktemp("lego-home")
    link_embedded_model(home)
    streamlit_claim = claim_free_port(STREAMLIT_PORTS)
    vllm_claim = claim_free_port(VLLM_PORTS)
    port, vllm_port = streamlit_claim.port, vllm_claim.port
    log_path = artifacts_dir / f"streamlit-{port}.log"
    env = dict(os.environ, LEGO_FACTORY_HOME=str(home), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "dashboard/app.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--global.developmentMode",
        "false",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    app = LegoApp(f"http://127.0.0.1:{port}", port, vllm_port, home, log_path, proc)
    try:
        wait_for_health(app, APP_START_TIMEOUT_S)
        yield app
    finally:
        leftovers = app.leftovers or app.stop()
        streamlit_claim.release()
        vllm_claim.release()
        assert not leftovers, "vLLM processes survived the app's stop:\n" + "\n".join(leftovers)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember each phase's outcome on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def browser_page(browser, request: pytest.FixtureRequest, artifacts_dir: Path) -> Iterator[object]:
    """A fresh browser session (its own Streamlit session) at 1366x900; on failure the whole page is
    kept as failed-<test>.png next to the screenshots."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            with contextlib.suppress(Exception):
                full_screenshot(page, artifacts_dir / f"failed-{name}.png")
        context.close()


@dataclass
class Shots:
    """Numbered screenshots named by step and language: 03-apply-vi.png."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, page, step: str, lang: str, full_page: bool = False) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}-{lang}.png"
        if full_page:
            full_screenshot(page, path)
        else:
            page.screenshot(path=str(path))
        self.taken.append(path)
        return path


def full_screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main area, so the window is made as tall as the
    content for the shot, then put back."""
    size = dict(page.viewport_size)
    height = page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]');
            const sidebar = document.querySelector('[data-testid="stSidebarContent"]');
            return Math.max(main ? main.scrollHeight : 0, sidebar ? sidebar.scrollHeight : 0,
                            document.documentElement.scrollHeight);
        }"""
    )
    page.set_viewport_size(
        {"width": size["width"], "height": min(max(height, size["height"]), FULL_PAGE_LIMIT_PX)}
    )
    try:
        page.wait_for_timeout(300)  # let charts take the new size before the shot
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)


@pytest.fixture(scope="session")
def shots(artifacts_dir: Path) -> Shots:
    return Shots(artifacts_dir)
