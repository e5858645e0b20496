"""The "Tune for me" page by AppTest: the question form refuses a limit it cannot read with a message
saying how to write it, and the last tuning in the history is shown with its command, its figures beside
the starting settings and the brief's, the chart of all trials and the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st

from dashboard.engine import models
from dashboard.history.store import HistoryStore
from dashboard.i18n import translator
from dashboard.ui import tune_view
from tests.app.conftest import open_app, texts
from tests.unit.test_tune import FakeCarousel, make_tuner

TUNE = "app_pages/tune.py"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models_dir = models.embedded_dir().parent
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path))
    if models_dir.exists():
        (tmp_path / "models").symlink_to(models_dir)
    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


def seed_tune_run(home: Path) -> dict:
    """A finished tuning (fake server and times) saved in the history the way the runner saves it."""
    tuner, _ = make_tuner(home / "study", [0.0], max_trials=8, server=FakeCarousel(), confirm_rounds=2)
    report = tuner.run()
    store = HistoryStore(home / "history.sqlite3")
    run_id = store.create_run("tune", {}, label="tune pika-json", backend="cpu")
    store.finish_run(run_id, {"report": report})
    store.close()
    return report


def test_a_limit_the_tuner_cannot_read_is_refused_with_how_to_write_it(home):
    at = open_app("en", TUNE)
    assert "Tune for me" in texts(at)
    at.text_input(key="tune.limit").input("fast please")
    submit = next(b for b in at.button if b.label == "Start tuning")
    submit.click().run()
    assert not at.exception
    assert any("p90-ttft=50ms" in e.value for e in at.error), texts(at)
    assert tune_view.get_job().snapshot().running is False  # nothing was started


def test_the_last_tuning_is_shown_with_its_command_figures_chart_and_verdict(home):
    report = seed_tune_run(home)
    at = open_app("vi", TUNE)
    shown = texts(at)
    assert report["verdict"]["vi"] in shown
    assert any(code.value.startswith("vllm serve") for code in at.code)
    table = at.dataframe[0].value
    assert len(table) == 4  # best, starting settings, the brief's 170 ms, the owner's 10 ms
    assert len(at.get("plotly_chart")) == 2  # every trial, and the confirmation's turns
    assert translator("vi")("The best, measured again in turns") in shown


def test_the_turns_chart_draws_one_line_per_candidate_across_the_confirmation_s_turns(tmp_path):
    tuner, _ = make_tuner(tmp_path, [0.0], max_trials=8, server=FakeCarousel(), confirm_rounds=2)
    report = tuner.run()
    figure = tune_view.turns_chart(report)
    assert len(figure.data) == len(report["confirmations"]) >= 3  # the baseline and the leaders
    assert all(list(line.x) == [1, 2] for line in figure.data)
    one_turn, _ = make_tuner(tmp_path / "plain", [0.0], max_trials=8)  # no warm servers: one turn
    assert tune_view.turns_chart(one_turn.run()) is None


def test_the_pareto_front_keeps_only_points_nothing_beats_on_both_axes():
    points = [(10.0, 300.0), (20.0, 200.0), (25.0, 250.0), (40.0, 100.0)]
    assert tune_view.pareto_front(points) == [(10.0, 300.0), (20.0, 200.0), (40.0, 100.0)]
    assert tune_view.pareto_front([(1.0, 5.0), (2.0, 9.0)], lower_is_better=False) == [(1.0, 5.0), (2.0, 9.0)]


def test_progress_shows_the_trial_count_best_so_far_and_time_left_and_stop_keeps_the_result(
    home, monkeypatch
):
    import threading
    import time
    from types import SimpleNamespace

    from dashboard.engine import presets
    from dashboard.engine.config import default_config
    from dashboard.measure.loadgen import Workload
    from dashboard.tune import question
    from dashboard.tune.search import TuneState
    from tests.app.conftest import StandInManager

    finished, _ = make_tuner(home / "study", [0.0], max_trials=6)
    report = finished.run() | {"stopped": True}
    stopped = threading.Event()

    def fake_run_tune(asked, base, workload, server, *, store=None, stop=None, on_tuner=None, **_):
        progress = TuneState(phase="search", trials_done=3, trials_planned=12, best_value=123.4,
                             best_changes={"dtype": "float32"})  # fmt: skip
        on_tuner(SimpleNamespace(state=progress, _deadline=time.monotonic() + 300, clock=time.monotonic))
        stop.wait(30)
        stopped.set()
        return report

    monkeypatch.setattr(tune_view, "run_tune", fake_run_tune)
    pika = presets.get("pika-json")
    workload = Workload.from_request(pika.request)
    asked = question.TuneQuestion(workload=workload.to_dict(), goal=question.parse_goal("p50-e2e"))
    job = tune_view.get_job()
    assert job.start(tune_view.TuneRequest(asked, default_config("cpu"), workload), StandInManager())
    at = open_app("en", TUNE)
    assert "Trial 3 of about 12" in at.get("progress")[0].proto.text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Best so far (p50-e2e)"] == "123.4" and metrics["Time left"].startswith(("4:", "5:"))
    assert "--dtype float32" in texts(at)
    next(b for b in at.button if b.label == "Stop and keep what was measured").click().run()
    assert stopped.wait(10)
    job.wait(10)
    at.run()
    assert not at.exception
    assert any("Stopped early" in i.value for i in at.info)
    assert any(code.value.startswith("vllm serve") for code in at.code)


def test_the_chart_puts_the_knob_that_helped_most_on_its_axis(tmp_path):
    tuner, _ = make_tuner(tmp_path, [0.0], max_trials=16)
    report = tuner.run()
    assert tune_view.strongest_knob(report) == "structured_outputs_config"  # −54%, ngram's +124% hurt
    figure = tune_view.trials_chart(report)
    assert figure.layout.xaxis.title.text == "structured_outputs_config"


def test_a_crashed_tuning_says_so_in_vietnamese_with_the_program_s_words_one_click_away(home, monkeypatch):
    from types import SimpleNamespace

    crashed = SimpleNamespace(running=False, error="RuntimeError: the trial server vanished", report=None)
    monkeypatch.setattr(tune_view, "get_job", lambda: SimpleNamespace(snapshot=lambda: crashed))
    at = open_app("vi", TUNE)
    assert not at.exception
    assert "RuntimeError" not in " ".join(e.value for e in at.error)
    stopped = translator("vi")("The tuning stopped because of an unexpected error.")
    assert [e.value for e in at.error] == [stopped]
    assert any("RuntimeError" in code.value for code in at.code)  # in the details
