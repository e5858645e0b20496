"""Prompt playground page logic: what it offers before and after the factory is ready."""

from __future__ import annotations

from dashboard.engine.config import default_config
from tests.app.conftest import StandInManager, open_app, ready_snapshot, texts

PLAYGROUND = "app_pages/playground.py"


def test_stopped_factory_says_so_and_offers_to_start_it(manager: StandInManager) -> None:
    at = open_app("en", PLAYGROUND)
    assert "The factory is not running" in texts(at)
    assert at.button(key="playground.send").disabled
    assert at.button(key="playground.burst_button").disabled
    at.button(key="playground.start").click().run()
    assert not at.exception
    assert len(manager.applied) == 1


def test_pika_comes_first_with_its_prompt_and_editable_vietnamese_message(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", PLAYGROUND)
    assert at.selectbox(key="playground.preset").value == "pika"
    assert any("system prompt" in e.label for e in at.expander)
    assert any("intention detection" in c.value for c in at.code)
    message = at.text_area(key="playground.user.pika")
    assert "Tớ buồn quá" in message.value
    assert not at.button(key="playground.send").disabled


def test_request_settings_never_restart_the_factory(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", PLAYGROUND)
    at.slider(key="playground.max_tokens.pika").set_value(120).run()
    at.select_slider(key="playground.temperature.pika").set_value(0.7).run()
    at.toggle(key="playground.json.pika").set_value(True).run()
    assert not at.exception
    assert manager.applied == []
    assert manager.stops == 0


def test_json_switch_is_off_for_a_preset_without_a_schema(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", PLAYGROUND)
    at.selectbox(key="playground.preset").set_value("classroom").run()
    assert at.toggle(key="playground.json.classroom").disabled


def test_playground_speaks_vietnamese_by_default(manager: StandInManager) -> None:
    at = open_app("vi", PLAYGROUND)
    from dashboard.i18n import translate

    assert [t.value for t in at.title] == [translate("Prompt playground", "vi")]
    assert translate("Prompt playground", "vi") != "Prompt playground"


def test_the_same_answer_on_a_server_that_differs_only_by_port_is_no_setting_change() -> None:
    from dashboard.measure.client import RequestTiming
    from dashboard.ui import playground_extras as extras

    payload = {"messages": [{"role": "user", "content": "port-only"}], "temperature": 0, "max_tokens": 8}
    timing = RequestTiming(ok=True, error=None, text="happy", ttft_ms=10.0)
    first = ready_snapshot(default_config("cpu").with_values({"port": 8752}))
    moved = ready_snapshot(default_config("cpu").with_values({"port": 8753}))
    other = ready_snapshot(default_config("cpu").with_values({"port": 8753, "max_num_seqs": 16}))
    assert extras.answer_change(payload, timing, first) is None
    assert extras.answer_change(payload, timing, moved) is None  # the carousel moved it: same settings
    assert extras.answer_change(payload, timing, other) == "same"


def test_the_free_text_echo_of_the_child_s_sentence_is_recognised_and_a_judgement_is_not() -> None:
    from dashboard.engine import presets
    from dashboard.ui import playground_extras as extras

    question = next(m["content"] for m in presets.get("pika").request.messages if m["role"] == "user")
    echo = "Response to check: Nghe vui quá! Bể Hả, cậu có muốn chơi trò kể tên các loại trái cây bằng"
    assert extras.echoes_the_question(echo, question)
    assert not extras.echoes_the_question('{"emotion": "happy", "learn_score": true}', question)
    assert not extras.echoes_the_question("", question)
