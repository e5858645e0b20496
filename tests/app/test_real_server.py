"""The pages against a real vLLM server: Start on the factory floor, then ask from the playground."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dashboard.engine.config import port_is_free
from dashboard.engine.server import ServerManager
from dashboard.ui import state, widgets
from tests.app.conftest import BURST_TIMEOUT_S, open_app, texts

pytestmark = pytest.mark.server

PORTS = range(8430, 8450)
READY_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def real_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerManager]:
    manager = ServerManager(tmp_path_factory.mktemp("runs"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state, "get_manager", lambda: manager)
        patch.setattr(state, "get_store", lambda: None)
        patch.setattr(state, "get_sampler", lambda: None)
        yield manager
    manager.stop()


def _free_port() -> int:
    return next(port for port in PORTS if port_is_free(port))


def _started_factory(real_manager: ServerManager):
    at = open_app("en")
    at.segmented_control(key="factory.group").set_value("doors").run()
    at.number_input(key=widgets.widget_key("port")).set_value(_free_port()).run()
    at.segmented_control(key="factory.group").set_value("conveyor").run()
    at.select_slider(key=widgets.widget_key("max_model_len")).set_value(1024).run()
    at.button(key="factory.apply").click().run()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while real_manager.is_busy() and time.monotonic() < deadline:
        time.sleep(2)
    at.run()
    return at


def test_start_on_the_factory_floor_reaches_ready(real_manager: ServerManager) -> None:
    at = _started_factory(real_manager)
    snap = real_manager.snapshot()
    assert snap.status == "ready", snap.problem
    page = texts(at)
    assert "Ready after" in page
    assert "The running server reported" in page
    assert snap.config.get("max_model_len") == 1024
    assert any("--max-model-len 1024" in c.value for c in at.code)


def test_playground_streams_an_answer_with_its_timings(real_manager: ServerManager) -> None:
    if real_manager.snapshot().status != "ready":
        _started_factory(real_manager)
    at = open_app("en", "app_pages/playground.py")
    at.toggle(key="playground.json.pika").set_value(True).run()
    at.button(key="playground.send").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["First token after"].endswith((" ms", " s"))
    assert int(metrics["Question tokens"].replace(",", "")) > 300
    assert int(metrics["Answer tokens"]) > 0
    assert "valid JSON" in texts(at)


def test_many_customers_at_once_are_measured_and_drawn(real_manager: ServerManager) -> None:
    if real_manager.snapshot().status != "ready":
        _started_factory(real_manager)
    at = open_app("en", "app_pages/playground.py")
    at.slider(key="playground.copies").set_value(4).run()
    at.button(key="playground.burst_button").click().run(timeout=BURST_TIMEOUT_S)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Whole group served in"].endswith(" s")
    assert "4 customers arrived together" in texts(at)
    for clock in ("Our clock: first byte", "Our clock: first word", "vLLM's own clock"):
        assert metrics[clock].endswith((" ms", " s")), (clock, metrics[clock])
    assert "role" in texts(at)  # the gap between the clocks is explained


def test_customers_arriving_evenly_are_measured_with_the_chosen_rate(real_manager: ServerManager) -> None:
    if real_manager.snapshot().status != "ready":
        _started_factory(real_manager)
    at = open_app("en", "app_pages/playground.py")
    at.slider(key="playground.copies").set_value(3).run()
    at.radio(key="load.shape").set_value("constant").run()
    at.number_input(key="load.shape.rate").set_value(5.0).run()
    at.button(key="playground.burst_button").click().run(timeout=BURST_TIMEOUT_S)
    assert not at.exception
    result = at.session_state["playground.burst"]
    assert (result.shape, result.rate, result.ok) == ("constant", 5.0, 3)
