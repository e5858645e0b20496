"""Lessons as data (configs/lessons/*.toml) and predictions: the file format, its clear refusals, and the
reveal that compares the class's guesses with a measured result."""

from __future__ import annotations

import pytest

from dashboard.classroom import lessons, predictions
from dashboard.classroom.predictions import Guess, LessonRun, PredictionLocked

WORKLOADS = ["short", "many_at_once", "repeated_long_prompt"]

GOOD = """
id = "lanes"
title = { vi = "Quầy", en = "Lanes" }
summary = { vi = "Tóm tắt", en = "Summary" }

[[step]]
flag = "max_num_seqs"
values = { "*" = [2, 16] }
ask = "speed"
metric = "e2e_ms"
workload = "many_at_once"
orders = 16
question = { vi = "Nhanh hơn?", en = "Faster?" }
explanation = { vi = "Vì…", en = "Because…" }
"""


def test_shipped_lessons_load_and_cover_the_briefs_three_topics():
    found = lessons.all_lessons()
    assert len(found) >= 3
    flags_taught = {step.flag for lesson in found.values() for step in lesson.steps}
    assert {"kv_cache_memory_gib", "max_num_seqs", "enable_prefix_caching", "enforce_eager"} <= flags_taught
    for lesson in found.values():
        assert lesson.steps_for("cpu"), lesson.id
        for step in lesson.steps:
            assert step.question.vi != step.question.en
            assert step.explanation.get("vi") and step.explanation.get("en")


def test_a_good_lesson_parses_with_typed_values():
    lesson = lessons.parse_lesson(GOOD, "lanes.toml", WORKLOADS)
    step = lesson.steps[0]
    assert step.values_for("cpu") == (2, 16)
    assert step.values_for("cuda") == (2, 16)
    assert step.measured_by.row_key == "e2e_p50_ms"
    assert lesson.title.get("vi") == "Quầy" and lesson.title.get("en") == "Lanes"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (('flag = "max_num_seqs"', 'flag = "lanes_open"'), "not a flag of the catalog"),
        (("[2, 16]", "[2, 2]"), "the same"),
        (("[2, 16]", "[2]"), "exactly two values"),
        (("[2, 16]", "[0, 16]"), "not allowed"),
        (('metric = "e2e_ms"', 'metric = "speed"'), "metric 'speed' is unknown"),
        (('ask = "speed"', 'ask = "memory"'), "does not fit"),
        (('workload = "many_at_once"', 'workload = "crowd"'), "workload 'crowd'"),
        (('en = "Faster?"', 'en = ""'), "Vietnamese and an English"),
        (("orders = 16", "orders = 0"), "whole number"),
        (('flag = "max_num_seqs"', 'flag = "trust_remote_code"'), "cannot measure"),
        (('id = "lanes"', 'id = "two words"'), "'id'"),
        (("[[step]]", "[[step"), "not valid TOML"),
    ],
)
def test_a_broken_lesson_says_what_to_change(change, says):
    old, new = change
    with pytest.raises(lessons.LessonError) as caught:
        lessons.parse_lesson(GOOD.replace(old, new), "lanes.toml", WORKLOADS)
    assert says in caught.value.problem.text("en")
    assert "lanes.toml" in caught.value.problem.text("en")
    assert caught.value.problem.text("vi") != caught.value.problem.text("en")  # said in Vietnamese too


def test_a_step_for_one_backend_only_is_left_out_elsewhere():
    text = GOOD.replace('values = { "*" = [2, 16] }', "values = { cuda = [2, 16] }")
    lesson = lessons.parse_lesson(text, "x.toml", WORKLOADS)
    assert lesson.steps_for("cpu") == []
    assert len(lesson.steps_for("cuda")) == 1


# ------------------------------------------------------------------------------------------ predictions


def test_outcome_reads_direction_and_amount_from_the_ratio():
    time_metric = lessons.METRICS["e2e_ms"]
    assert predictions.outcome(time_metric, 1000, 400).direction == "faster"
    assert predictions.outcome(time_metric, 1000, 400).amount == "1_5x_to_3x"
    assert predictions.outcome(time_metric, 1000, 1050).direction == "same"
    assert predictions.outcome(time_metric, 100, 500).direction == "slower"
    assert predictions.outcome(time_metric, 100, 500).amount == "over_3x"
    rate = lessons.METRICS["output_tokens_per_s"]
    assert predictions.outcome(rate, 100, 140).direction == "faster"  # more tokens per second
    memory = lessons.METRICS["memory_gib"]
    assert predictions.outcome(memory, 1.0, 2.4).direction == "more"
    assert predictions.outcome(time_metric, None, 3.0) is None


def test_a_difference_inside_the_spread_of_the_orders_is_about_the_same():
    time_metric = lessons.METRICS["e2e_ms"]
    noisy_before, noisy_after = [600, 900, 1400, 700, 1200], [800, 1300, 1000, 1500, 1100]
    found = predictions.outcome(time_metric, 900, 1100, noisy_before, noisy_after)
    assert found.direction == "same" and found.amount == "same" and found.within_spread
    tight_before, tight_after = [890, 900, 910, 905, 895], [1090, 1100, 1110, 1105, 1095]
    found = predictions.outcome(time_metric, 900, 1100, tight_before, tight_after)
    assert found.direction == "slower" and found.amount == "up_to_1_5x" and not found.within_spread


def test_row_samples_reads_the_orders_behind_the_figure():
    row = {"ok": True, "e2e_p50_ms": 900, "samples": {"e2e_ms": [880, 900, None, 920]}}
    assert predictions.row_samples(lessons.METRICS["e2e_ms"], row) == [880, 900, 920]
    assert predictions.row_samples(lessons.METRICS["memory_gib"], row) == []
    assert predictions.row_samples(lessons.METRICS["e2e_ms"], {**row, "ok": False}) == []


def test_row_figure_scales_and_refuses_failed_rows():
    memory = lessons.METRICS["memory_gib"]
    assert predictions.row_figure(memory, {"ok": True, "process_rss_bytes": 2 * 1024**3}) == 2.0
    assert predictions.row_figure(memory, {"ok": False, "process_rss_bytes": 5}) is None
    assert predictions.row_figure(lessons.METRICS["ttft_ms"], {"ok": True}) is None


def test_answers_lock_when_the_measurement_starts_and_the_reveal_marks_who_was_right():
    lesson = lessons.parse_lesson(GOOD, "lanes.toml", WORKLOADS)
    run = LessonRun(lesson, backend="cpu")
    run.answer(Guess("p", "the presenter", "faster", "1_5x_to_3x", at=1))
    run.answer(Guess("v1", "visitor 1", "slower", "up_to_1_5x", at=2))
    run.answer(Guess("v2", "visitor 2", "faster", "up_to_1_5x", at=3))
    run.answer(Guess("v2", "visitor 2", "faster", "over_3x", at=4))  # changed their mind before the lock
    assert run.round().tally() == {"faster": 2, "slower": 1, "same": 0}
    run.start_measuring()
    with pytest.raises(PredictionLocked):
        run.answer(Guess("v1", "visitor 1", "faster", "over_3x"))
    round_ = run.reveal(before=2400.0, after=900.0)
    assert round_.outcome.direction == "faster" and round_.outcome.amount == "1_5x_to_3x"
    verdicts = {v.guess.who: (v.direction_right, v.amount_right) for v in round_.verdicts()}
    assert verdicts == {"p": (True, True), "v1": (False, False), "v2": (True, False)}
    assert not run.next_step()  # one step only


def test_a_guess_outside_the_question_is_refused():
    lesson = lessons.parse_lesson(GOOD, "lanes.toml", WORKLOADS)
    run = LessonRun(lesson, backend="cpu")
    with pytest.raises(ValueError):
        run.answer(Guess("v", "visitor 1", "more", "same"))  # a memory answer to a speed question
