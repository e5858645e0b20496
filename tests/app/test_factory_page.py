"""Factory floor page: every flag drawn from the catalog, pending changes marked, Apply guarded."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from dashboard.engine import flags, hardware
from dashboard.engine.config import default_config
from dashboard.engine.problems import Problem
from dashboard.engine.report import ServerSnapshot
from dashboard.i18n import translate
from dashboard.ui import widgets
from tests.app.conftest import APP, StandInManager, open_app, ready_snapshot, texts

FACTORY = "app_pages/factory.py"


def show_group_of(at, name: str) -> None:
    """Open the part of the factory (group switch) that holds this flag."""
    group = flags.get(name).group
    if at.segmented_control(key="factory.group").value != group:
        at.segmented_control(key="factory.group").set_value(group).run()


def move_ladder(at, name: str, value: float) -> None:
    show_group_of(at, name)
    at.select_slider(key=widgets.widget_key(name)).set_value(value).run()


def _widget_keys(at) -> set[str]:
    kinds = ("slider", "select_slider", "toggle", "selectbox", "text_input", "number_input", "checkbox")
    return {w.key for kind in kinds for w in getattr(at, kind) if w.key}


def test_every_flag_that_works_on_this_backend_has_a_live_control(manager: StandInManager) -> None:
    backend = hardware.detect_backend()
    at = open_app("en")
    for group in flags.GROUPS:
        at.segmented_control(key="factory.group").set_value(group).run()
        keys = _widget_keys(at)
        for flag in flags.in_group(group):
            if flag.has_effect_on(backend):
                assert widgets.widget_key(flag.name) in keys, flag.name
            else:
                assert widgets.widget_key(flag.name) not in keys, flag.name


def test_only_the_chosen_part_of_the_factory_is_drawn(manager: StandInManager) -> None:
    at = open_app("en")
    keys = _widget_keys(at)
    assert widgets.widget_key("kv_cache_memory_gib") in keys
    assert widgets.widget_key("port") not in keys
    move_ladder(at, "max_num_seqs", 256)
    at.segmented_control(key="factory.group").set_value("doors").run()
    assert at.session_state[widgets.PENDING_KEY].get("max_num_seqs") == 256
    assert "--max-num-seqs: 128 → 256" in texts(at)


def test_the_chosen_part_of_the_factory_survives_streamlit_forgetting_the_switch(
    manager: StandInManager,
) -> None:
    at = open_app("en")
    show_group_of(at, "max_num_seqs")
    at.session_state["factory.group"] = None  # as if Streamlit had dropped the switch's state
    at.run()
    assert at.segmented_control(key="factory.group").value == "lanes"
    assert widgets.widget_key("max_num_seqs") in _widget_keys(at)


def test_flags_without_effect_on_cpu_say_so(manager: StandInManager) -> None:
    at = open_app("en")
    page = texts(at)
    assert "no effect on CPU" in page
    assert "`--gpu-memory-utilization`" in page
    show_group_of(at, "enforce_eager")
    assert "CUDA graphs (they exist only on NVIDIA GPUs)" in texts(at)


def test_moving_a_slider_marks_the_flag_as_changed(manager: StandInManager) -> None:
    at = open_app("en")
    assert "128 → 256" not in texts(at)
    move_ladder(at, "max_num_seqs", 256)
    page = texts(at)
    assert "changed: 128 → 256" in page
    assert "--max-num-seqs: 128 → 256" in page
    assert at.session_state[widgets.PENDING_KEY].get("max_num_seqs") == 256


def test_prediction_follows_the_warehouse_slider_before_any_restart(manager: StandInManager) -> None:
    at = open_app("en")
    tokens = {m.label: m.value for m in at.metric}["Warehouse tokens"]
    move_ladder(at, "kv_cache_memory_gib", 2)
    doubled = {m.label: m.value for m in at.metric}["Warehouse tokens"]
    assert int(tokens.replace(",", "")) * 2 == int(doubled.replace(",", ""))
    assert manager.applied == []


def test_language_switch_changes_the_page_text(manager: StandInManager) -> None:
    at = open_app("vi")
    vietnamese_title = translate("Factory floor", "vi")
    assert vietnamese_title != "Factory floor"
    assert [t.value for t in at.title] == [vietnamese_title]
    assert at.query_params["lang"] == ["vi"] or at.query_params["lang"] == "vi"
    at.sidebar.button_group[0].set_value("en").run()
    assert [t.value for t in at.title] == ["Factory floor"]
    assert "Warehouse and memory" in at.segmented_control(key="factory.group").format_func("warehouse")


def test_open_door_without_a_key_locks_apply(manager: StandInManager) -> None:
    at = open_app("en")
    show_group_of(at, "host")
    at.selectbox(key=widgets.widget_key("host")).set_value("0.0.0.0").run()
    assert "The door is open to the whole network" in texts(at)
    assert at.button(key="factory.apply").disabled
    at.text_input(key=widgets.widget_key("api_key")).input("classroom-secret").run()
    assert at.button(key="factory.apply").disabled  # the open door still needs an explicit yes
    at.checkbox(key="classroom.confirm.open_host").check().run()
    assert not at.button(key="factory.apply").disabled


def test_apply_sends_the_pending_values_to_the_manager(manager: StandInManager) -> None:
    at = open_app("en")
    move_ladder(at, "max_num_seqs", 64)
    show_group_of(at, "port")
    at.number_input(key=widgets.widget_key("port")).set_value(8449).run()
    at.button(key="factory.apply").click().run()
    assert not at.exception
    deadline = time.monotonic() + 20  # the Apply goes through in the background
    while not manager.applied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(manager.applied) == 1
    assert manager.applied[0].get("max_num_seqs") == 64
    assert "The factory is being rebuilt with your settings." in texts(at)


def test_during_a_restart_the_apply_button_does_not_look_clickable(manager: StandInManager) -> None:
    manager.snap = ServerSnapshot(status="starting", config=default_config("cpu"), started_at=1.0)
    at = open_app("en")
    assert at.button(key="factory.apply").disabled
    assert manager.applied == []


def test_right_after_an_accepted_apply_the_page_shows_a_start_not_the_old_state(manager) -> None:
    from dashboard.ui import apply_compare

    manager.snap = ServerSnapshot(status="stopped")
    tracker = apply_compare.tracker()
    tracker.stage, tracker.requested_at, tracker.manager_id = "waiting", time.time(), id(manager)
    tracker.entry = None
    at = open_app("en")
    assert "Starting…" in [badge.label for badge in at.get("badge")] or "Starting" in texts(at)
    assert "Nothing is running" not in texts(at)
    assert at.button(key="factory.apply").disabled
    tracker.stage = "idle"


def test_restart_shows_each_phase_reached(manager: StandInManager) -> None:
    config = default_config("cpu")
    manager.apply(config)
    at = open_app("en")
    assert any("Rebuilding the factory" in s.label for s in at.status)
    assert "Process started" in texts(at)


def test_failed_start_explains_and_offers_a_one_click_fix(manager: StandInManager) -> None:
    config = default_config("cpu").with_values({"max_model_len": 8192, "port": 8449})
    problem = Problem(
        "kv_cache_too_small",
        "The warehouse (KV cache, {available_gib} GiB) cannot hold even one order as long as the conveyor "
        "({max_model_len} tokens needs {needed_gib} GiB). Shorten the conveyor: set --max-model-len to "
        "{suggestion} or less, or make the warehouse bigger.",
        "max_model_len",
        {"available_gib": 0.06, "max_model_len": 8192, "needed_gib": 0.18, "suggestion": 2912},
        suggestion=2912,
        root_cause="ValueError: To serve at least one request ... estimated maximum model length is 2912.",
    )
    manager.snap = ServerSnapshot(status="failed", config=config, problem=problem)
    at = open_app("en")
    assert "cannot hold even one order" in texts(at)
    assert any("Root cause" in e.label for e in at.expander)
    fix = next(b for b in at.button if "2,912" in b.label)
    fix.click().run()
    assert not at.exception
    assert manager.applied[-1].get("max_model_len") == 2912


def test_refused_config_shows_the_problem_with_a_fix(manager: StandInManager) -> None:
    at = open_app("en")
    move_ladder(at, "max_model_len", 16384)
    page = texts(at)
    assert "longer than this model can read (8,192 tokens)" in page
    assert at.button(key="factory.apply").disabled
    next(b for b in at.button if b.label.startswith("Use 8,192")).click().run()
    assert at.session_state[widgets.PENDING_KEY].get("max_model_len") == 8192
    assert not at.button(key="factory.apply").disabled


def test_preset_loads_its_flags_into_the_pending_values(manager: StandInManager) -> None:
    at = open_app("en")
    at.selectbox(key="factory.preset").set_value("classroom").run()
    at.button(key="factory.load_preset").click().run()
    pending = at.session_state[widgets.PENDING_KEY]
    assert pending.get("max_num_seqs") == 16
    assert pending.get("max_model_len") == 1024
    show_group_of(at, "max_num_seqs")
    assert at.select_slider(key=widgets.widget_key("max_num_seqs")).value == 16
    assert manager.applied == []


def test_ready_server_shows_its_report_and_command(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en")
    page = texts(at)
    assert "Ready after 35.2 s." in page
    assert "reported 46,592 tokens" in page
    assert any("vllm.entrypoints.openai.api_server" in c.value for c in at.code)
    assert at.button(key="factory.apply").disabled  # nothing changed yet


def test_pending_values_survive_a_visit_to_another_page(manager: StandInManager) -> None:
    at = open_app("en")
    move_ladder(at, "max_num_seqs", 32)
    at.switch_page("app_pages/playground.py").run()
    at.switch_page(FACTORY).run()
    assert not at.exception
    show_group_of(at, "max_num_seqs")
    assert at.select_slider(key=widgets.widget_key("max_num_seqs")).value == 32


def test_earlier_results_stay_visible_during_a_restart(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en")
    assert "Last start" in texts(at)
    at.select_slider(key=widgets.widget_key("kv_cache_memory_gib")).set_value(2.0).run()
    at.button(key="factory.apply").click().run()
    deadline = time.monotonic() + 20  # the old server is measured first, then the Apply goes through
    while manager.snap.status != "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.snap.status == "starting"
    at.run()
    page = texts(at)
    assert "Rebuilding the factory" in "".join(s.label for s in at.status)
    assert "Previous start" in page
    assert {m.label: m.value for m in at.metric}["Ready after"] == "35.2 s"


class CarouselStandIn(StandInManager):
    """A stand-in carousel: it has cards (the page draws its strip) and moves a server to a free port."""

    def cards(self) -> list:
        return []

    def events(self, since: float = 0.0) -> list:
        return []

    def preview(self, config):
        raise LookupError("no preview in this stand-in")

    def predict_footprint(self, config):
        raise LookupError("no footprint in this stand-in")


def test_a_server_the_carousel_moved_to_the_next_port_leaves_no_port_change_waiting(monkeypatch) -> None:
    from dashboard.ui import state

    asked = default_config("cpu").with_values({"port": 8752, "max_num_seqs": 16})
    stand_in = CarouselStandIn(snap=ready_snapshot(asked.with_values({"port": 8753})))
    monkeypatch.setattr(state, "get_manager", lambda: stand_in)
    monkeypatch.setattr(state, "get_store", lambda: None)
    monkeypatch.setattr(state, "get_sampler", lambda: None)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lang"] = "en"
    at.session_state[widgets.PENDING_KEY] = asked  # what this session asked the carousel for
    at.run()
    assert not at.exception, at.exception
    assert at.session_state[widgets.PENDING_KEY].get("port") == 8753
    assert "--port: 8753 → 8752" not in texts(at)
    assert "No changes waiting" in texts(at)
    assert at.button(key="factory.apply").disabled  # nothing to do


def test_the_after_side_waits_for_the_asked_settings_on_whichever_port_they_landed() -> None:
    from dashboard.ui import apply_compare

    asked = default_config("cpu").with_values({"port": 8752, "max_num_seqs": 16})
    assert apply_compare.same_server(asked.with_values({"port": 8753}), asked)
    assert not apply_compare.same_server(asked.with_values({"max_num_seqs": 8}), asked)
    assert not apply_compare.same_server(None, asked)


def test_the_history_keeps_an_apply_with_the_port_its_server_really_got(monkeypatch) -> None:
    from dashboard.engine.report import mask_config
    from dashboard.measure.compare import BeforeAfter, Probe, Side
    from dashboard.ui import apply_compare, state

    class Store:
        created: list = []

        def create_run(self, kind, config, label="", backend=""):
            self.created.append((kind, config, label))
            return 1

        def set_startup(self, run_id, report) -> None:
            pass

        def finish_run(self, run_id, summary, status="done") -> None:
            pass

    store = Store()
    monkeypatch.setattr(state, "get_store", lambda: store)
    before = default_config("cpu").with_values({"port": 8752, "max_num_seqs": 8})
    asked = before.with_values({"max_num_seqs": 16})
    served = asked.with_values({"port": 8753})
    side = Side(Probe().key, e2e_ms=(100.0, 110.0, 105.0), ttft_ms=(10.0, 11.0, 12.0))
    entry = BeforeAfter(Probe(), side, None, mask_config(before), mask_config(asked))
    apply_compare._finish(entry, side, "done", ready_snapshot(served))
    kind, config, label = store.created[-1]
    assert kind == "apply" and label == "--max-num-seqs 16"
    assert config["values"]["port"] == 8753 and config["before"]["values"]["port"] == 8752


def test_after_a_flip_the_controls_show_the_server_now_in_use() -> None:
    pending = default_config("cpu").with_values({"port": 8751, "max_num_seqs": 16})
    served = default_config("cpu").with_values({"port": 8750})

    def flip_now(pending, manager) -> None:
        import streamlit as st

        from dashboard.ui import carousel_view, widgets

        widgets.set_pending(pending)
        carousel_view.follow_the_server(manager)
        st.session_state["result"] = st.session_state[widgets.PENDING_KEY]

    at = AppTest.from_function(
        flip_now, kwargs={"pending": pending, "manager": CarouselStandIn(snap=ready_snapshot(served))}
    )
    at.run()
    assert not at.exception, at.exception
    shown = at.session_state["result"]
    assert shown.get("port") == 8750 and shown.get("max_num_seqs") == served.get("max_num_seqs") != 16
    assert at.session_state["factory.model"] == served.model


def test_a_model_that_cannot_be_found_gets_no_whole_server_figure(monkeypatch) -> None:
    from types import SimpleNamespace

    from dashboard.ui import state

    class Footprints(CarouselStandIn):
        def predict_footprint(self, config):
            gib = 1024**3
            return SimpleNamespace(runtime_measured=True, total_bytes=1.5 * gib, runtime_bytes=1.5 * gib)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the unknown model is refused without the network
    stand_in = Footprints(snap=ready_snapshot(default_config("cpu")))
    monkeypatch.setattr(state, "get_manager", lambda: stand_in)
    monkeypatch.setattr(state, "get_store", lambda: None)
    monkeypatch.setattr(state, "get_sampler", lambda: None)
    at = open_app("en")
    assert "The whole server should hold about" in texts(at)
    at.text_input(key="factory.model").set_value("nonexistent/model").run()
    assert not at.exception, at.exception
    assert "nonexistent/model" in texts(at)
    assert "The whole server should hold about" not in texts(at)
