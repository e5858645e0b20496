"""The classroom on the pages (AppTest, stand-in manager): a visitor's disabled controls say why, and a
widget message sent anyway is refused by the handler; the key never reaches a session's widget; the
model box never tells what is on this computer; dangerous switches need an explicit yes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.classroom import roles
from dashboard.engine.config import default_config
from dashboard.engine.problems import Problem
from dashboard.engine.report import ServerSnapshot
from dashboard.ui import widgets
from tests.app.conftest import (
    APP,
    BURST_TIMEOUT_S,
    TIMEOUT_S,
    StandInManager,
    open_app,
    ready_snapshot,
    texts,
)

VISITOR_LINE = "You are watching as a visitor: only the presenter can change the factory."


def forced(widget):
    """The widget as a crafted websocket message sees it: enabled, whatever the page drew."""
    widget.proto.disabled = False
    return widget


@pytest.fixture
def visitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared app and a session without a browser peer or key: a visitor."""
    monkeypatch.setenv(roles.SHARE_ENV, "1")


def test_a_visitor_sees_the_factory_with_its_controls_locked_and_why(
    manager: StandInManager, visitor
) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en")
    assert at.button(key="factory.apply").disabled
    assert at.button(key="factory.stop").disabled
    assert at.text_input(key="factory.model").disabled
    assert VISITOR_LINE in texts(at)


def test_a_visitor_who_sends_the_apply_message_anyway_is_refused(manager: StandInManager, visitor) -> None:
    at = open_app("en")
    forced(at.button(key="factory.apply")).click().run()  # what a crafted websocket message does
    assert manager.applied == []


def test_a_visitor_pressing_an_enabled_fix_button_is_refused_by_its_handler(
    manager: StandInManager, visitor
) -> None:
    problem = Problem("port_busy", "Port {port} is busy.", "port", {"port": 8449}, suggestion=8450)
    manager.snap = ServerSnapshot(status="failed", config=default_config("cpu"), problem=problem)
    at = open_app("en")
    fix = next(button for button in at.button if button.key and button.key.startswith("factory.fix."))
    fix.click().run()
    assert manager.applied == []
    assert "Only the presenter can rebuild the factory" in texts(at)


def test_a_visitor_who_sends_the_stop_message_anyway_is_refused(manager: StandInManager, visitor) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en")
    forced(at.button(key="factory.stop")).click().run()
    assert manager.stops == 0


def test_a_visitor_cannot_change_the_model_even_by_a_widget_message(manager: StandInManager, visitor) -> None:
    at = open_app("en")
    forced(at.text_input(key="factory.model")).set_value("/etc").run()
    assert at.session_state[widgets.PENDING_KEY].model == "embedded"


def test_the_presenter_applies(manager: StandInManager) -> None:
    at = open_app("en")
    at.button(key="factory.apply").click().run()
    assert len(manager.applied) == 1
    assert VISITOR_LINE not in texts(at)


def test_a_new_session_never_gets_the_running_servers_key(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu").with_values({"api_key": "sk-class-secret"}))
    at = open_app("en")
    at.segmented_control(key="factory.group").set_value("doors").run()
    assert at.text_input(key=widgets.widget_key("api_key")).value == "***"
    assert all("sk-class-secret" not in repr(at.session_state[key]) for key in at.session_state)


def test_apply_with_the_hidden_key_keeps_the_servers_key(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu").with_values({"api_key": "sk-class-secret"}))
    at = open_app("en")
    at.segmented_control(key="factory.group").set_value("lanes").run()
    at.select_slider(key=widgets.widget_key("max_num_seqs")).set_value(64).run()
    at.button(key="factory.apply").click().run()
    assert manager.applied and manager.applied[0].get("api_key") == "sk-class-secret"


@pytest.mark.parametrize("path", ["/etc", "/no/such/place"])
def test_the_model_box_never_says_whether_a_path_exists(manager: StandInManager, path: str) -> None:
    at = open_app("en")
    at.text_input(key="factory.model").set_value(path).run()
    page = texts(at)
    assert "Local model folders are turned off" in page
    assert "does not exist" not in page and "config.json" not in page
    assert at.session_state[widgets.PENDING_KEY].model == "embedded"


def test_another_model_needs_an_explicit_yes(manager: StandInManager) -> None:
    at = open_app("en")
    at.text_input(key="factory.model").set_value("Qwen/Qwen3-0.6B").run()
    assert at.button(key="factory.apply").disabled
    assert "A model that is not the built-in one" in texts(at)
    box = at.checkbox(key="classroom.confirm.outside_model")
    assert "download this model from the internet" in texts(at)
    box.check().run()
    assert at.checkbox(key="classroom.confirm.outside_model").value


def test_trust_remote_code_needs_an_explicit_yes(manager: StandInManager) -> None:
    at = open_app("en")
    at.segmented_control(key="factory.group").set_value("doors").run()
    at.toggle(key=widgets.widget_key("trust_remote_code")).set_value(True).run()
    assert at.button(key="factory.apply").disabled
    assert manager.applied == []
    at.checkbox(key="classroom.confirm.remote_code").check().run()
    at.button(key="factory.apply").click().run()
    assert len(manager.applied) == 1 and manager.applied[0].get("trust_remote_code") is True


# ------------------------------------------------------------------------------------------ nothing lost


class LockedStore:
    """A history whose database is locked: every write fails."""

    def create_run(self, *args, **kwargs):
        import sqlite3

        raise sqlite3.OperationalError("database is locked")

    def __getattr__(self, name):
        return lambda *args, **kwargs: []


class KeepingStore:
    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []

    def create_run(self, kind, config, **kwargs):
        self.runs.append((kind, ""))
        return len(self.runs)

    def set_startup(self, run_id, report):
        pass

    def finish_run(self, run_id, summary, status="done"):
        kind, _ = self.runs[run_id - 1]
        self.runs[run_id - 1] = (kind, status)

    def __getattr__(self, name):
        return lambda *args, **kwargs: []


def test_a_history_write_that_fails_is_shown_not_swallowed(manager: StandInManager, monkeypatch) -> None:
    from dashboard.ui import state

    state._history_health.clear()
    monkeypatch.setattr(state, "get_store", lambda: LockedStore())
    snap = ready_snapshot(default_config("cpu"))
    manager.snap = snap
    at = open_app("en")
    errors = " ".join(str(element.value) for element in at.sidebar.error)
    assert "The history could not be saved" in errors and "database is locked" in errors
    state._history_health.clear()


def test_a_crashed_server_is_shown_as_crashed_with_its_log_and_kept_in_history(
    manager: StandInManager, monkeypatch
) -> None:
    from dataclasses import replace

    from dashboard.ui import state

    store = KeepingStore()
    monkeypatch.setattr(state, "get_store", lambda: store)
    state._finished_starts.clear()
    ready = ready_snapshot(default_config("cpu"))
    manager.snap = ready
    at = open_app("en")
    crash = Problem(
        "server_crashed", "The server stopped on its own (exit code {exit_code}).", None, {"exit_code": -9}
    )
    report = replace(ready.report, error=crash, log_tail=["... engine core died: out of memory"])
    manager.snap = replace(ready, status="failed", problem=crash, report=report)
    at.run()
    page = texts(at)
    assert "Crashed" in page
    assert any("engine core died" in str(code.value) for code in at.code)  # the last log lines
    assert "stopped on its own" in page
    assert [status for _kind, status in store.runs] == ["done", "failed"]


# ------------------------------------------------------------------------------ a measurement owns the server


@dataclass
class HeldClaim:
    owner: str = "sweep-job"
    what: str = "--max-num-seqs"
    who: str = "presenter"
    started_at: float = 0.0
    until: float | None = None


class ClaimedManager(StandInManager):
    claim: HeldClaim | None = None

    def claimed(self):
        return self.claim


@pytest.fixture
def claimed_manager(monkeypatch: pytest.MonkeyPatch) -> ClaimedManager:
    import time

    from dashboard.ui import state

    stand_in = ClaimedManager()
    stand_in.claim = HeldClaim(started_at=time.time() - 120, until=time.time() + 300)
    stand_in.snap = ready_snapshot(default_config("cpu"))
    monkeypatch.setattr(state, "get_manager", lambda: stand_in)
    monkeypatch.setattr(state, "get_store", lambda: None)
    monkeypatch.setattr(state, "get_sampler", lambda: None)
    return stand_in


def test_during_a_measurement_apply_and_stop_are_refused_with_what_who_and_when(claimed_manager) -> None:
    at = open_app("en")
    page = texts(at)
    owner = "A measurement owns the factory: a sweep of --max-num-seqs, started by the presenter 2 min ago"
    assert owner in page
    assert "about 5 min" in page
    assert at.button(key="factory.apply").disabled
    at.button(key="factory.stop").click().run()
    assert claimed_manager.stops == 0
    assert "A measurement owns the factory" in texts(at)


def test_a_tuning_that_owns_the_server_is_named_in_the_readers_language(claimed_manager) -> None:
    claimed_manager.claim = HeldClaim(owner="tune", what="Tune for me", who="presenter")
    page = texts(open_app("vi"))
    assert "Một phép đo đang giữ nhà máy: Dò giúp tôi, do người dẫn lớp bắt đầu" in page


class ClaimingManager(ClaimedManager):
    """Claims like the carousel: held while the `with` block runs, recorded for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[HeldClaim | None] = []

    def claim(self, owner, what, who="", until=None):
        import contextlib
        import time

        @contextlib.contextmanager
        def held():
            self.claim_held = HeldClaim(owner=owner, what=what, who=who, started_at=time.time(), until=until)
            try:
                yield self
            finally:
                self.claim_held = None

        return held()

    claim_held: HeldClaim | None = None

    def claimed(self):
        return self.claim_held


def test_a_playground_load_test_owns_the_server_while_its_orders_run(monkeypatch) -> None:
    from dashboard.measure import loadgen
    from dashboard.ui import state

    stand_in = ClaimingManager()
    stand_in.snap = ready_snapshot(default_config("cpu"))
    monkeypatch.setattr(state, "get_manager", lambda: stand_in)
    monkeypatch.setattr(state, "get_store", lambda: None)
    monkeypatch.setattr(state, "get_sampler", lambda: None)

    def measured_while_held(*args, **kwargs):
        stand_in.seen.append(stand_in.claimed())
        raise RuntimeError("the test stops the load test here")

    monkeypatch.setattr(loadgen, "run_load_isolated", measured_while_held)
    at = open_app("en", "app_pages/playground.py")
    at.button(key="playground.burst_button").click().run(timeout=BURST_TIMEOUT_S)
    assert len(stand_in.seen) == 1, "the load test did not run"
    held = stand_in.seen[0]
    assert held is not None, "the load test ran without owning the server"
    assert held.who == "presenter" and held.what == "Send it N times at once" and held.until is not None
    assert stand_in.claimed() is None  # given back when it ended, even by an error


def test_during_a_measurement_a_playground_order_is_refused_with_the_reason(
    claimed_manager, monkeypatch
) -> None:
    from dashboard.measure import client

    sent: list[str] = []
    monkeypatch.setattr(client, "chat_once", lambda *args, **kwargs: sent.append("order"))
    at = open_app("en", "app_pages/playground.py")
    at.button(key="playground.send").click().run()
    assert sent == []
    warnings = " ".join(str(element.value) for element in at.warning)
    assert "A measurement owns the factory: a sweep of --max-num-seqs, started by the presenter" in warnings


# ------------------------------------------------------------------------------ error details


def break_the_factory_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.ui import checks

    def broken(*args, **kwargs):
        raise RuntimeError("inner detail: /srv/secret/path")

    monkeypatch.setattr(checks, "check", broken)


def test_a_visitor_gets_one_plain_line_for_an_error_and_no_details(
    manager: StandInManager, visitor, monkeypatch
) -> None:
    break_the_factory_page(monkeypatch)
    at = open_app("en")
    assert "Something went wrong on this page. The presenter can see the details." in texts(at)
    assert not at.exception
    assert "/srv/secret/path" not in texts(at)


def test_the_presenter_sees_the_details_of_an_error(manager: StandInManager, monkeypatch) -> None:
    break_the_factory_page(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.query_params["lang"] = "en"
    at.run()
    assert any("/srv/secret/path" in str(element.value) for element in at.exception)
    assert "Something went wrong on this page" not in texts(at)


def test_a_server_open_to_the_network_says_which_paths_its_key_does_not_guard(
    manager: StandInManager, monkeypatch
) -> None:
    from dashboard.classroom import doors

    served = ["/v1/chat/completions", "/v1/models", "/tokenize", "/version"]
    monkeypatch.setattr(doors, "served_paths", lambda base_url, timeout=15.0: list(served))
    config = default_config("cpu").with_values({"host": "0.0.0.0", "api_key": "sk-class"})
    manager.snap = ready_snapshot(config)
    warnings = " ".join(str(element.value) for element in open_app("en").warning)
    assert "Its API key guards only the /v1 paths" in warnings
    for path in ("/tokenize", "/metrics", "/docs"):
        assert f"`{path}`" in warnings
    assert "`/v1/models`" not in warnings
