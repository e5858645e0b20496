"""The lesson page: the presenter starts a lesson, answers, starts the measurement (answers lock), and the
reveal shows the measured answer beside the guesses. The measurement job is a stand-in here; the real
one runs in the browser test."""

from __future__ import annotations

import time

import pytest

from dashboard.classroom import predictions as pred
from dashboard.engine.config import default_config
from dashboard.ui import lesson_view, measure_jobs
from tests.app.conftest import open_app, ready_snapshot, texts


class StandInJob:
    def __init__(self) -> None:
        self.requests: list[measure_jobs.JobRequest] = []
        self.snap = measure_jobs.JobSnapshot()

    def start(self, request, manager, store=None, sampler=None):
        self.requests.append(request)
        flag, values = request.sweeps[0]
        self.snap = measure_jobs.JobSnapshot(
            status="running",
            flags=(measure_jobs.FlagState(flag, tuple(measure_jobs.ValueState(v) for v in values)),),
            started_at=time.time(),
        )
        return None

    def finish(self, rows: list[dict]) -> None:
        flag_state = self.snap.flags[0]
        values = tuple(
            measure_jobs.ValueState(v.value, stage=measure_jobs.STAGE_DONE, row=row)
            for v, row in zip(flag_state.values, rows, strict=True)
        )
        self.snap = measure_jobs.JobSnapshot(
            status="done",
            flags=(measure_jobs.FlagState(flag_state.flag, values),),
            started_at=self.snap.started_at,
        )

    def snapshot(self):
        return self.snap


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> StandInJob:
    stand_in = StandInJob()
    monkeypatch.setattr(lesson_view, "_job", lambda: stand_in)
    lesson_view.classroom().run = None
    yield stand_in
    lesson_view.classroom().run = None


def test_presenter_runs_a_step_from_guess_to_reveal(manager, job):
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", "app_pages/lesson.py")
    at.button(key="lesson.start.lanes").click().run()
    assert "16 customers arrive together" in texts(at)

    prefix = "lesson.lanes.0"
    at.radio(key=f"{prefix}.direction").set_value("faster")
    at.radio(key=f"{prefix}.amount").set_value("1_5x_to_3x")
    at.button(key=f"{prefix}.send").click().run()
    assert "Your answer: faster" in texts(at)
    run = lesson_view.classroom().run
    run.answer(pred.Guess("someone-else", "visitor 1", "slower", "same"))

    at.button(key=f"{prefix}.measure").click().run()
    assert job.requests and job.requests[0].sweeps == (("max_num_seqs", (2, 16)),)
    assert run.round().locked
    with pytest.raises(pred.PredictionLocked):
        run.answer(pred.Guess("late", "visitor 2", "faster", "same"))
    assert "Answers are locked" in texts(at)

    job.finish([{"ok": True, "e2e_p50_ms": 2400.0}, {"ok": True, "e2e_p50_ms": 1000.0}])
    at.run()
    shown = texts(at)
    assert "You guessed right!" in shown
    assert "1 of 2 guessed the direction right." in shown
    assert "14 customers wait at the door" in shown  # the explanation is revealed
    at.button(key=f"{prefix}.next").click().run()
    assert run.step_index == 1 and run.stage == "asking"


def test_a_visitor_waits_for_the_presenter(manager, job, monkeypatch):
    from dashboard.ui import roles as ui_roles

    monkeypatch.setattr(ui_roles, "is_presenter", lambda: False)
    at = open_app("vi", "app_pages/lesson.py")
    assert not [b for b in at.button if str(b.key or "").startswith("lesson.start")]
    assert "No lesson is running" not in texts(at)  # said in Vietnamese


def test_a_failed_measurement_says_so_instead_of_a_result(manager, job):
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("en", "app_pages/lesson.py")
    at.button(key="lesson.start.warehouse").click().run()
    at.button(key="lesson.warehouse.0.measure").click().run()
    job.finish([{"ok": True, "process_rss_bytes": 2 * 1024**3}, {"ok": False}])
    at.run()
    assert "No result for this step" in texts(at)
