"""A class in real browsers: the app started the way `./run.sh --share` starts it, a presenter and a
visitor in two Chromium contexts reaching it over the network address, the real CPU vLLM server.

- the presenter link carries a fresh key, which leaves the address bar at once and never appears on a
  command line or in an environment;
- the visitor watches the factory live, cannot start, stop, change the model or turn on
  trust_remote_code, also when the widget message is sent directly (the button's own click handler
  called through React, past the disabled attribute); the presenter can;
- a visitor cannot start a sweep; a short sweep started by the presenter owns the server: another
  presenter session's Apply and Stop are refused with what runs, who started it and about when it
  ends, and each saved row names the server that answered it, which ran the row's value;
- the app killed with SIGKILL leaves its servers behind, and the next app reaps them before any page
  is opened; the app that gets SIGHUP stops its server.

Real server starts: 3 (one for the roles, one more for the sweep's new value, one for the SIGHUP).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect

from dashboard.classroom import roles
from dashboard.engine.config import SERVER_MODULE
from tests.e2e.conftest import (
    REPO_ROOT,
    STREAMLIT_PORTS,
    VIEWPORT,
    VLLM_PORTS,
    alive,
    claim_free_port,
    link_embedded_model,
    wait_gone,
)
from tests.e2e.test_browser import (
    PAGE_TIMEOUT_MS,
    choose_group,
    main_area,
    set_lanes,
    set_port,
    wait_until_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.server, pytest.mark.timeout(1200)]

READY_TIMEOUT_MS = 300_000
LINK = re.compile(r"http://(\S+):(\d+)/\?presenter=(\S+)")
VISITOR_LINE = "You are watching as a visitor: only the presenter can change the factory."


# ------------------------------------------------------------------------------------------ the app


@dataclass
class ClassApp:
    proc: subprocess.Popen
    port: int
    home: Path
    log_path: Path
    key: str | None

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def all_processes(self) -> list[psutil.Process]:
        """Every process running inside this home but the app: vLLM servers (each inherits its runs/
        folder) and the carousel's prepared starter (it has vLLM imported, waiting to fork servers)."""
        found = []
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if process.pid != self.proc.pid and str(Path(process.cwd())).startswith(str(self.home)):
                    found.append(process)
        return alive(found)

    def vllm_processes(self) -> list[psutil.Process]:
        """The vLLM servers only: processes in a server's folder (the starter waits in runs/app)."""
        starter_folder = self.home / "runs" / "app"
        return [p for p in self.all_processes() if _cwd(p) != starter_folder]


def _described(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]} in {process.cwd()}"
    except (psutil.Error, OSError):
        return str(process.pid)


def _cwd(process: psutil.Process) -> Path | None:
    try:
        return Path(process.cwd())
    except (psutil.Error, OSError):
        return None


def network_address() -> str:
    from dashboard.ui.launch import network_addresses

    addresses = network_addresses()
    if not addresses:
        pytest.skip("this machine has no network address besides loopback")
    return addresses[0]


def launch(home: Path, port: int, log_path: Path, share: bool = True) -> ClassApp:
    """The app as ./run.sh starts it (without the install step)."""
    command = [sys.executable, "-m", "dashboard.ui.launch", "--server.port", str(port)]
    command += ["--global.developmentMode", "false", "--browser.gatherUsageStats", "false"]
    if share:
        command.insert(3, "--share")
    env = dict(os.environ, LEGO_FACTORY_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop(roles.KEY_ENV, None)
    log_path.unlink(missing_ok=True)  # only this start's output counts
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = ClassApp(proc, port, home, log_path, None)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{app.log()}")
        text = app.log()
        if "Local URL" in text or "Network URL" in text or "You can now view" in text:
            break
        time.sleep(0.3)
    found = LINK.findall(app.log())
    app.key = found[-1][2] if found else None
    return app


def stop(app: ClassApp) -> None:
    if app.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.proc.pid, signal.SIGTERM)
        try:
            app.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(app.proc.pid, signal.SIGKILL)
            app.proc.wait(timeout=10)
    for process in wait_gone(app.all_processes(), 10):
        with contextlib.suppress(psutil.Error):
            process.kill()


@pytest.fixture(scope="module")
def class_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("class-home")
    link_embedded_model(home)
    return home


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    streamlit_claim, vllm_claim = claim_free_port(STREAMLIT_PORTS), claim_free_port(VLLM_PORTS)
    yield streamlit_claim.port, vllm_claim.port
    streamlit_claim.release()
    vllm_claim.release()


@pytest.fixture(scope="module")
def class_app(class_home, ports, artifacts_dir) -> Iterator[ClassApp]:
    app = launch(class_home, ports[0], artifacts_dir / f"class-{ports[0]}.log")
    try:
        yield app
    finally:
        stop(app)


def new_page(browser, url: str) -> Page:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    page = context.new_page()
    page.goto(url)
    expect(main_area(page).get_by_role("heading", name="Factory floor")).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    wait_until_idle(page)
    return page


def call_click_handler(page: Page, selector: str) -> None:
    """Send the button's widget message the way the page's own code does, past the disabled attribute:
    React's props of the element hold the click handler that talks to the websocket."""
    sent = page.evaluate(
        """(selector) => {
            const fake = (el) => ({preventDefault() {}, stopPropagation() {}, currentTarget: el, target: el});
            for (let el = document.querySelector(selector); el; el = el.parentElement) {
                const key = Object.keys(el).find(k => k.startsWith('__reactProps'));
                if (key && typeof el[key].onClick === 'function') {
                    el[key].onClick(fake(el));
                    return 'react-handler';
                }
            }
            const button = document.querySelector(selector);
            button.disabled = false;
            button.click();
            return 'dom-click';
        }""",
        selector,
    )
    print(f"forged click on {selector}: {sent}")


def wait_ready(page: Page) -> None:
    expect(main_area(page).get_by_text(re.compile("Taking orders at"))).to_be_visible(
        timeout=READY_TIMEOUT_MS
    )
    wait_until_idle(page)


# ------------------------------------------------------------------------------------------ tests


def test_share_prints_a_fresh_presenter_link_that_no_command_line_or_environment_holds(class_app):
    assert class_app.key, "no presenter link in the output:\n" + class_app.log()
    assert len(class_app.key) >= 32
    assert f":{class_app.port}/?presenter={class_app.key}" in class_app.log()
    for process in [psutil.Process(class_app.proc.pid), *psutil.Process(class_app.proc.pid).children(True)]:
        assert class_app.key not in " ".join(process.cmdline())
        assert class_app.key not in Path(f"/proc/{process.pid}/environ").read_bytes().decode(errors="replace")


def test_private_by_default_the_app_listens_on_loopback_only(class_home, artifacts_dir):
    claim = claim_free_port(STREAMLIT_PORTS)
    app = launch(class_home, claim.port, artifacts_dir / f"private-{claim.port}.log", share=False)
    try:
        listening = {
            c.laddr.ip
            for c in psutil.Process(app.proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == claim.port
        }
        assert listening == {"127.0.0.1"}, listening
        assert "?presenter=" not in app.log()
    finally:
        stop(app)
        claim.release()


def test_visitor_watches_and_cannot_change_the_factory_the_presenter_can(class_app, browser, ports, shots):
    address = network_address()
    presenter = new_page(browser, f"{class_app.url(address)}/?presenter={class_app.key}&lang=en")
    visitor = new_page(browser, f"{class_app.url(address)}/?lang=en")

    # Roles: the key left the presenter's address bar; the visitor is told why controls are locked.
    assert "presenter=" not in presenter.url
    expect(presenter.get_by_test_id("stSidebar").get_by_text("Presenter")).to_be_visible()
    expect(visitor.get_by_test_id("stSidebar").get_by_text("Visitor")).to_be_visible()
    expect(main_area(visitor).get_by_text(VISITOR_LINE)).to_be_visible()
    expect(main_area(presenter).get_by_text(VISITOR_LINE)).to_have_count(0)
    # A re-run briefly leaves the old button beside the new one: both are the visitor's, both locked.
    visitor_apply = visitor.locator(".st-key-factory-apply button").first
    expect(visitor_apply).to_be_disabled()
    expect(visitor.locator(".st-key-factory-model input")).to_be_disabled()
    shots.take(visitor, "class-visitor-stopped", "en")

    # The visitor sends the Start message directly: nothing starts.
    call_click_handler(visitor, ".st-key-factory-apply button")
    visitor.wait_for_timeout(3000)
    wait_until_idle(visitor)
    assert class_app.vllm_processes() == [], "a visitor's forged Apply started a server"
    expect(main_area(visitor).get_by_text("Nothing is running.", exact=False)).to_be_visible()

    # trust_remote_code: a visitor's confirmation box is locked, so Apply stays locked.
    choose_group(visitor, "en", "doors")
    visitor.locator(".st-key-card_trust_remote_code").get_by_text("off", exact=True).click()
    wait_until_idle(visitor)
    expect(visitor.locator(".st-key-classroom-confirm-remote_code input")).to_be_disabled()
    expect(visitor_apply).to_be_disabled()
    call_click_handler(visitor, ".st-key-factory-apply button")
    visitor.wait_for_timeout(2000)
    assert class_app.vllm_processes() == []

    # The presenter starts the real server; the visitor sees it live without touching anything.
    set_port(presenter, "en", ports[1])
    presenter_apply = presenter.locator(".st-key-factory-apply button")
    expect(presenter_apply).to_be_enabled()
    presenter_apply.click()
    wait_ready(presenter)
    shots.take(presenter, "class-presenter-ready", "en")
    expect(main_area(visitor).get_by_text(re.compile("Taking orders at"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    shots.take(visitor, "class-visitor-ready", "en")
    running = class_app.vllm_processes()
    assert running, "the presenter's Start did not start a server"

    # The visitor's Stop is locked, and the forged Stop message changes nothing.
    expect(visitor.locator(".st-key-factory-stop button")).to_be_disabled()
    call_click_handler(visitor, ".st-key-factory-stop button")
    visitor.wait_for_timeout(3000)
    assert alive(running) == running, "a visitor's forged Stop stopped the server"
    expect(main_area(presenter).get_by_text(re.compile("Taking orders at"))).to_be_visible()

    # The visitor may send a playground order (within the rate limit).
    visitor.get_by_test_id("stSidebarNav").get_by_text("Prompt playground", exact=True).click()
    wait_until_idle(visitor)
    send = visitor.locator(".st-key-playground-send button")
    expect(send).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    send.click()
    expect(visitor.get_by_test_id("stMetric").filter(has_text="First token after")).to_be_visible(
        timeout=180_000
    )
    shots.take(visitor, "class-visitor-order", "en")

    # Exports are the presenter's: no file is prepared for the visitor.
    visitor.get_by_test_id("stSidebarNav").get_by_text("History", exact=True).click()
    wait_until_idle(visitor)
    expect(visitor.get_by_test_id("stDownloadButton")).to_have_count(0)


HELD = re.compile(
    r"A measurement owns the factory: a sweep of --max-num-seqs, started by the presenter \d+ min ago\. "
    r"It should end in about \d+ min"
)
SWEPT, REFUSED_LANES = (64, 128), 32


def fill_number(page: Page, label: str, value: int) -> None:
    field = main_area(page).get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    expect(field).to_have_value(str(value), timeout=PAGE_TIMEOUT_MS)
    wait_until_idle(page)


def start_short_sweep(page: Page) -> None:
    """On the impact page: --max-num-seqs 64 then 128 (the server in use), one order per value, one at
    a time, and the factory left on the last value (no restore: one start fewer)."""
    page.get_by_test_id("stSidebarNav").get_by_text("Impact on response time", exact=True).click()
    wait_until_idle(page)
    area = main_area(page)
    flag = area.get_by_role("combobox", name="Flag")
    expect(flag).to_have_value(re.compile("^--max-num-seqs "), timeout=PAGE_TIMEOUT_MS)
    values = area.get_by_label("Values to try, separated by commas", exact=True)
    values.fill(",".join(str(v) for v in SWEPT))
    values.press("Enter")
    expect(values).to_have_value(",".join(str(v) for v in SWEPT))
    wait_until_idle(page)
    fill_number(page, "Orders per value", 1)
    fill_number(page, "Orders at the same time", 1)
    restore = page.locator(".st-key-impact-restore")
    if restore.count() and restore.locator("input").is_checked():
        restore.get_by_text("Put the factory back as it was afterwards").click()
        wait_until_idle(page)
        expect(restore.locator("input")).not_to_be_checked()
    measure = page.locator(".st-key-impact-run-one button")
    expect(measure).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    measure.click()
    expect(area.get_by_text("Measuring now")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def server_words(port: str) -> list[str] | None:
    """The command line of the live vLLM server on this port, word by word, or None."""
    for process in psutil.process_iter(["cmdline"]):
        words = " ".join(process.info["cmdline"] or []).split()  # forked servers: one string
        if SERVER_MODULE in words and "--port" in words and words[words.index("--port") + 1] == port:
            return words
    return None


def option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def test_a_sweep_owns_the_server_and_another_presenter_session_pressing_apply_is_refused(
    class_app, class_home, browser, shots
):
    if not class_app.vllm_processes():
        pytest.skip("no server is running: this test follows the roles test of this module")
    address = network_address()
    presenter_url = f"{class_app.url(address)}/?presenter={class_app.key}&lang=en"

    # A visitor cannot sweep: the Measure button is locked, and its message sent anyway starts nothing
    # (Streamlit drops a locked widget's message; the page's handler would refuse a visitor as well).
    visitor = new_page(browser, f"{class_app.url(address)}/?lang=en")
    visitor.get_by_test_id("stSidebarNav").get_by_text("Impact on response time", exact=True).click()
    wait_until_idle(visitor)
    expect(visitor.locator(".st-key-impact-run-one button")).to_be_disabled(timeout=PAGE_TIMEOUT_MS)
    call_click_handler(visitor, ".st-key-impact-run-one button")
    visitor.wait_for_timeout(3000)
    wait_until_idle(visitor)
    expect(main_area(visitor).get_by_text("Measuring now")).to_have_count(0)
    assert sweep_runs(class_home) == [], "a visitor's forged Measure started a sweep"
    visitor.context.close()

    sweeping = new_page(browser, presenter_url)
    start_short_sweep(sweeping)
    shots.take(sweeping, "class-sweep-running", "en")

    # A second presenter session (another browser, the same link) opens the factory floor meanwhile.
    other = new_page(browser, presenter_url)
    expect(main_area(other).get_by_text(HELD)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    apply = other.locator(".st-key-factory-apply button")
    expect(apply).to_be_disabled()
    set_lanes(other, "en", REFUSED_LANES)
    expect(apply).to_be_disabled()
    # Apply pressed anyway (its widget message sent past the locked button): nothing starts, and the
    # page still says what runs, who started it and about when it ends.
    call_click_handler(other, ".st-key-factory-apply button")
    other.wait_for_timeout(3000)
    wait_until_idle(other)
    expect(main_area(other).get_by_text(HELD)).to_be_visible()
    expect(apply).to_be_disabled()
    shots.take(other, "class-apply-refused-during-sweep", "en")
    # Stop is a presenter's button: pressed for real, it is refused too and the server keeps running.
    other.locator(".st-key-factory-stop button").click()
    wait_until_idle(other)
    expect(main_area(other).get_by_test_id("stAlertContentError").filter(has_text=HELD)).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    assert class_app.vllm_processes(), "a Stop pressed during the sweep stopped the server"

    # The sweep ends on its own, the factory left on the last value it measured.
    expect(
        main_area(sweeping).get_by_text("The factory was left running with the last value tried")
    ).to_be_visible(timeout=900_000)
    shots.take(sweeping, "class-sweep-done", "en")

    runs = sweep_runs(class_home)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run.status == "done", run
    rows = [dict(row.data) for row in run.rows]
    measured = [row for row in rows if row["ok"] and row["e2e_p50_ms"] is not None]
    assert {row["value"] for row in measured} == set(SWEPT), rows
    for row in measured:  # each row names the server that answered it, and that server ran its value
        words = row["command"].split()
        assert option(words, "--max-num-seqs") == str(row["value"]), row["command"]
        live = server_words(option(words, "--port"))
        if live is not None:  # a warm server still holds that port: it runs the row's value
            assert option(live, "--max-num-seqs") == str(row["value"]), (row["command"], live)
    running = [server_words(option(row["command"].split(), "--port")) for row in measured]
    assert any(words is not None for words in running), "no server of the sweep's rows is running"
    # The refused Apply left no trace: no server and no row with its value.
    assert str(REFUSED_LANES) not in {option(w, "--max-num-seqs") for w in _vllm_command_lines(class_app)}
    assert REFUSED_LANES not in {row["value"] for row in rows}

    # Once the sweep is over, the presenter may again: the model box is open, and trust_remote_code
    # unlocks Apply after its explicit yes (not pressed: no start needed to show it).
    choose_group(other, "en", "doors")
    expect(main_area(other).get_by_text(HELD)).to_have_count(0)
    expect(other.locator(".st-key-factory-model input")).to_be_enabled()
    other.locator(".st-key-card_trust_remote_code").get_by_text("off", exact=True).click()
    wait_until_idle(other)
    confirm = other.locator(".st-key-classroom-confirm-remote_code")
    expect(confirm.locator("input")).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    expect(apply).to_be_disabled()  # not before the yes
    confirm.get_by_text("Yes, allow it").click()
    wait_until_idle(other)
    expect(apply).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    shots.take(other, "class-presenter-confirms-remote-code", "en")


def sweep_runs(home: Path) -> list:
    """The sweeps in the app's history, each with its rows."""
    from dashboard.history.store import HistoryStore

    store = HistoryStore(home / "history.sqlite3")
    try:
        return [store.get_run(run.id) for run in store.list_runs(kind="sweep")]
    finally:
        store.close()


def _vllm_command_lines(app: ClassApp) -> list[list[str]]:
    lines = []
    for process in app.vllm_processes():
        with contextlib.suppress(psutil.Error):
            words = " ".join(process.cmdline()).split()
            if SERVER_MODULE in words:
                lines.append(words)
    return lines


def test_an_app_killed_with_sigkill_leaves_its_server_and_the_next_app_reaps_it(
    class_app, class_home, artifacts_dir
):
    if not class_app.vllm_processes():
        pytest.skip("no server is running: this test follows the roles test of this module")
    running = class_app.all_processes()  # the server and the carousel's starter
    class_app.proc.kill()  # SIGKILL to the app alone: no handler can run
    class_app.proc.wait(timeout=10)
    time.sleep(2)
    assert alive(running), "SIGKILL leaves no chance to stop the server: it should still run here"
    claim = claim_free_port(STREAMLIT_PORTS)
    again = launch(class_home, claim.port, artifacts_dir / f"again-{claim.port}.log")
    try:
        left = wait_gone(running, 30)  # no page opened: the launcher reaps before the web server starts
        assert left == [], "the next app did not reap the server the killed app left"
        assert "Stopped" in again.log() and "earlier app" in again.log()
    finally:
        stop(again)
        claim.release()


def test_an_app_that_gets_sighup_stops_its_server(class_home, ports, browser, artifacts_dir):
    claim = claim_free_port(STREAMLIT_PORTS)
    app = launch(class_home, claim.port, artifacts_dir / f"hangup-{claim.port}.log", share=False)
    try:
        page = new_page(browser, f"{app.url('127.0.0.1')}/?lang=en")  # the person at the machine
        set_port(page, "en", ports[1])
        page.locator(".st-key-factory-apply button").click()
        wait_ready(page)
        assert app.vllm_processes()
        running = app.all_processes()
        app.proc.send_signal(signal.SIGHUP)
        app.proc.wait(timeout=90)
        left = wait_gone(running, 30)  # a loaded machine takes a while to end a server's last process
        assert left == [], "vLLM processes survived SIGHUP: " + "; ".join(_described(p) for p in left)
    finally:
        stop(app)
        claim.release()
