"""The tuner's pure parts: the question, percentile intervals, the search space, the search's
bookkeeping (order, early stops, answers, confirmation, resume, history rows) and the verdict.

A fake server and a fake measurement stand in for vLLM: each config answers with fixed times."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dashboard.engine import presets
from dashboard.engine.config import ModelFacts, default_config
from dashboard.engine.models import ModelShape
from dashboard.history.store import HistoryStore
from dashboard.measure.loadgen import Workload
from dashboard.tune import intervals, question, space, verdict
from dashboard.tune.intervals import Estimate
from dashboard.tune.search import MEASURED, STOPPED_EARLY, Batch, Tuner, TuneSettings, normalized_answer

PIKA = presets.get("pika-json")
FACTS = ModelFacts(
    backend="cpu", gpu_count=0, max_model_len=8192, weights_bytes=270_000_000, memory_bytes=24 * 2**30
)
SMOL = ModelShape(layers=30, kv_heads=3, head_dim=64, max_position_embeddings=8192, parameters=135_000_000)
ANSWER = '{"emotion": "afraid", "learn_score": true}'


# ---------------------------------------------------------------------------------------------- question


def test_goals_and_limits_are_read_from_the_cli_words():
    assert question.parse_goal("p50-e2e") == question.Goal("e2e", 50)
    assert question.parse_goal("P90-TTFT").key == "p90-ttft"
    assert question.parse_goal("throughput").lower_is_better is False
    limit = question.parse_limit("p90-ttft=50ms")
    assert (limit.metric, limit.percentile, limit.max_ms) == ("ttft", 90, 50.0)
    assert question.parse_limit("p50-e2e<=0.2s").max_ms == 200.0


@pytest.mark.parametrize("bad", ["fast", "p42-e2e", "p50-speed"])
def test_a_goal_that_is_not_understood_says_how_to_write_it(bad):
    with pytest.raises(question.QuestionError):
        question.parse_goal(bad)


def test_throughput_needs_a_latency_limit():
    with pytest.raises(question.QuestionError, match="limit"):
        question.TuneQuestion(workload={}, goal=question.parse_goal("throughput"))


def test_the_same_question_names_the_same_study_whatever_the_time_budget():
    goal = question.parse_goal("p50-e2e")
    a = question.TuneQuestion(workload={"x": 1}, goal=goal, minutes=5, preset="pika-json")
    b = question.TuneQuestion(workload={"x": 1}, goal=goal, minutes=30, preset="pika-json")
    c = question.TuneQuestion(workload={"x": 1}, goal=goal, minutes=5, memory_gib=2, preset="pika-json")
    assert a.study_name() == b.study_name() != c.study_name()


# ---------------------------------------------------------------------------------------------- intervals


def test_the_median_of_20_is_bracketed_by_the_6th_and_15th_answers():
    assert intervals.rank_bounds(20, 0.5) == (6, 15)
    estimate = intervals.percentile_estimate([float(v) for v in range(1, 21)], 50)
    assert (estimate.value, estimate.low, estimate.high) == (10.5, 6.0, 15.0)


def test_too_few_answers_leave_the_interval_unknown_instead_of_inventing_one():
    assert intervals.percentile_estimate([1.0, 2.0, 3.0, 4.0, 5.0], 50).has_interval is False
    p90 = intervals.percentile_estimate([float(v) for v in range(20)], 90)
    assert p90.low is not None and p90.high is None


def test_better_only_when_the_intervals_do_not_overlap():
    fast, slow = Estimate(100, 90, 110, 20), Estimate(150, 120, 180, 20)
    near = Estimate(115, 105, 125, 20)
    assert intervals.clearly_better(fast, slow)
    assert not intervals.clearly_better(slow, fast)
    assert not intervals.clearly_better(fast, near) and intervals.overlap(fast, near)
    assert intervals.clearly_better(slow, fast, lower_is_better=False)  # answers per second
    assert not intervals.clearly_better(Estimate(1, None, None, 3), slow)


# ---------------------------------------------------------------------------------------------- space


def pika_space(**kwargs: Any) -> space.SearchSpace:
    base = default_config("cpu").with_values(PIKA.flags)
    return space.build_space(base, "cpu", PIKA.request, FACTS, **kwargs)


def test_the_cpu_space_has_the_new_catalog_knobs_and_the_request_options():
    built = pika_space(minutes=10)
    names = {k.name: k for k in built.knobs}
    assert {"structured_outputs_config", "speculative_config", "dtype", "compact_json", "max_tokens"} <= set(
        names
    )
    assert "enforce_eager" not in names  # a compile per start does not fit a 10-minute budget
    assert names["max_tokens"].values == (50, 25)
    assert all(k.values[0] == built.baseline_params()[k.name] for k in built.knobs)
    assert "async_scheduling" not in names  # a GPU-only option


def test_a_long_budget_on_cpu_also_tries_the_compiled_server():
    assert "enforce_eager" in {k.name for k in pika_space(minutes=30).knobs}


def test_request_options_are_left_out_when_the_user_does_not_allow_them():
    assert not pika_space(allow_request_changes=False).request_knobs


def test_values_that_break_the_memory_budget_are_pruned_before_any_start():
    built = pika_space(memory_gib=1.2, shape=SMOL)
    pruned = {(p["knob"], p["value"]) for p in built.pruned}
    assert ("dtype", "float32") in pruned  # float32 weights (0.5 GiB) + the KV cache exceed 1.2 GiB
    assert built.base.get("kv_cache_memory_gib") <= 1.2 - 0.25
    assert "dtype" not in {k.name for k in built.knobs}


def test_compact_json_is_a_regex_that_allows_no_whitespace():
    pattern = space.compact_json_pattern(PIKA.json_schema)
    assert re.fullmatch(pattern, '{"emotion":"afraid","learn_score":true}')
    assert not re.fullmatch(pattern, '{"emotion": "afraid", "learn_score": true}')
    assert not re.fullmatch(pattern, '{"emotion":"bored","learn_score":true}')


def test_request_options_become_fields_of_the_request_body():
    options = space.RequestOptions(max_tokens=25, compact_json=True)
    workload = space.workload_with(Workload.from_request(PIKA.request), options)
    body = workload.payload("m")
    assert body["max_tokens"] == 25
    assert "regex" in body["structured_outputs"] and "response_format" not in body
    assert set(options.body_fields(PIKA.request)) == {"max_tokens", "structured_outputs"}


def test_server_configs_leave_vllm_defaults_off_the_command_line():
    built = pika_space()
    params = {**built.baseline_params(), "speculative_config": space.NGRAM_4}
    assert built.server_config(params).get("speculative_config") == space.NGRAM_4
    assert built.server_config(built.baseline_params()).get("speculative_config") is None


def test_answers_that_differ_only_in_spaces_are_the_same_answer():
    assert normalized_answer(ANSWER) == normalized_answer('{"emotion":"afraid","learn_score":true}')
    assert normalized_answer(ANSWER) != normalized_answer('{"emotion":"happy","learn_score":true}')


# ---------------------------------------------------------------------------------------------- search


@dataclass
class FakeReport:
    ok: bool
    command: list[str]
    ready_s: float = 1.0
    error: Any = None
    server_start: dict = field(default_factory=lambda: {"kind": "cold", "ready_s": 1.0})


class FakeServer:
    base_url, served_name, api_key = "http://fake", "pika", None

    def __init__(self, refuse: set[str] = frozenset()) -> None:
        self.restarts: list[Any] = []
        self.refuse = refuse

    def restart(self, config, wait=True, timeout=600):
        self.restarts.append(config)
        ok = config.get("dtype") not in self.refuse
        command = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--dtype", "x"]
        return FakeReport(ok=ok, command=command)


class FakeMeasure:
    """Times per config: float32 halves the answer, ngram doubles it, the xgrammar backend changes
    the answer; a few milliseconds of spread keep the intervals honest."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls: list[tuple[dict, int]] = []

    def __call__(self, server, workload, plan, stop) -> Batch:
        config = server.restarts[-1]
        body = workload.payload("pika")
        self.calls.append((body, plan.requests))
        base = 200.0
        if config.get("dtype") == "float32":
            base = 100.0
        if config.get("speculative_config"):
            base = 450.0
        text = ANSWER
        if config.get("structured_outputs_config"):
            text = '{"emotion": "happy", "learn_score": true}'
            base = 90.0
        if "structured_outputs" in body:
            base -= 5
        n = plan.requests
        self.clock[0] += n * base / 1000
        e2e = [base + (i % 5) for i in range(n)]
        return Batch(
            e2e_ms=e2e,
            ttft_ms=[20.0 + (i % 3) for i in range(n)],
            itl_ms=[(v - 20) / 17 for v in e2e],
            texts=[text] * n,
            completion_tokens=[18] * n,
            requests_per_s=1000 / base,
        )


def make_tuner(
    tmp_path: Path,
    clock: list[float],
    *,
    minutes=60.0,
    allow_changed=False,
    store=None,
    run_id=None,
    max_trials=16,
    server=None,
    confirm_rounds=1,
    measure=None,
):
    goal = question.parse_goal("p50-e2e")
    asked = question.TuneQuestion(
        workload=Workload.from_request(PIKA.request).to_dict(),
        goal=goal,
        minutes=minutes,
        allow_changed_answers=allow_changed,
        preset="pika-json",
    )
    built = pika_space(minutes=10)
    measure = measure or FakeMeasure(clock)
    tuner = Tuner(
        asked,
        built,
        server or FakeServer(),
        Workload.from_request(PIKA.request),
        facts=FACTS,
        storage_path=tmp_path / "tune.sqlite3",
        settings=TuneSettings(
            screen_requests=5,
            more_requests=10,
            confirm_requests=20,
            confirm_rounds=confirm_rounds,
            max_trials=max_trials,
        ),
        store=store,
        run_id=run_id,
        measure=measure,
        clock=lambda: clock[0],
    )
    return tuner, measure


def test_the_baseline_comes_first_and_request_options_reuse_the_running_server(tmp_path):
    clock = [0.0]
    tuner, measure = make_tuner(tmp_path, clock, max_trials=3)
    tuner.run()
    first, second, third = sorted(tuner.records.values(), key=lambda r: r["number"])
    assert first["changes"] == {}
    assert set(second["changes"]) | set(third["changes"]) <= {"compact_json", "max_tokens"}
    assert len(tuner.server.restarts) == 1  # three trials, one start
    changed_bodies = [body for body, n in measure.calls[2:] if n != 20]  # 20: the confirmation
    assert all("structured_outputs" in body or body["max_tokens"] == 25 for body in changed_bodies)


def test_clearly_slower_candidates_are_stopped_after_the_first_look(tmp_path):
    clock = [0.0]
    tuner, measure = make_tuner(tmp_path, clock)
    report = tuner.run()
    ngram = [r for r in tuner.records.values() if set(r["changes"]) == {"speculative_config"}]
    assert ngram and all(r["state"] == STOPPED_EARLY for r in ngram)
    assert all(r["figures"]["answers"] == 5 for r in ngram)  # never got the survivors' extra requests
    assert report["trials"] and {t["state"] for t in report["trials"]} >= {MEASURED, STOPPED_EARLY}


def test_a_setting_that_changes_the_answer_is_flagged_and_not_chosen_unless_allowed(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock, max_trials=24)
    report = tuner.run()
    changers = [r for r in tuner.records.values() if "structured_outputs_config" in r["changes"]]
    assert changers and all(r["answer_matches"] is False for r in changers)
    # the faster xgrammar answer was refused: the best is float32 with compact JSON (tried together)
    assert report["best"]["changes"] == {"dtype": "float32", "compact_json": True}
    assert any(item.get("knob") == "structured_outputs_config" for item in report["answer_changers"])
    singles = [r for r in sorted(tuner.records.values(), key=lambda r: r["number"]) if len(r["changes"]) == 1]
    assert "structured_outputs_config" in singles[-1]["changes"]  # tried last: it may not be chosen anyway
    allowed_tuner, _ = make_tuner(tmp_path / "allowed", [0.0], allow_changed=True)
    allowed = allowed_tuner.run()
    assert "structured_outputs_config" in allowed["best"]["changes"]


def test_after_the_single_knobs_the_winners_are_tried_together_before_the_sampler_guesses(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock, allow_changed=True, max_trials=30)
    tuner.run()
    base = tuner.space.baseline_params()
    server_names = {knob.name for knob in tuner.space.server_knobs}
    ordered = sorted(tuner.records.values(), key=lambda r: r["number"])
    combos = [r for r in ordered if len(set(r["changes"]) & server_names) >= 2]
    assert combos, "no combination of server settings was tried"
    first = combos[0]["params"]
    # alone: float32 halved the answer, the structured-output backends cut it further, compact JSON
    # saved a little; the ngram candidate was slower and stays at its starting value
    assert first["dtype"] == "float32"
    assert first["structured_outputs_config"] != base["structured_outputs_config"]
    assert first["compact_json"] is True
    assert first["speculative_config"] == base["speculative_config"]


def test_the_best_is_confirmed_beside_the_baseline_with_intervals_that_do_not_overlap(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock)
    report = tuner.run()
    assert {"best", "baseline", "trials", "verdict"} <= set(report)
    best, base = report["best"], report["baseline"]
    assert best["confirmed"] and base["confirmed"] and best["clearly_better"]
    assert best["goal"]["high"] < base["goal"]["low"]
    assert best["command"][:2] == ["vllm", "serve"]
    assert all(
        t["config"]["values"] and "p50-e2e" in t["figures"]
        for t in report["trials"]
        if t["state"] == MEASURED
    )
    assert set(report["verdict"]) == {"vi", "en"}


def test_overlapping_intervals_keep_the_starting_settings():
    report = {
        "question": {"goal": "p50-e2e"},
        "best": {"goal": Estimate(200, 190, 210, 20).to_dict(), "clearly_better": False, "changes": {}},
        "baseline": {"goal": Estimate(200, 190, 210, 20).to_dict()},
        "fastest_measured": {"goal": Estimate(195, 185, 205, 20).to_dict(), "changes": {"dtype": "float32"}},
        "effects": [],
        "trials": [{}],
    }
    text = verdict.make_verdict(report)
    assert "No setting was clearly better" in text["en"] and "195" in text["en"]
    assert text["vi"] and text["vi"] != text["en"]


def test_the_verdict_names_the_knobs_that_mattered_and_the_pika_gap(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock)
    report = tuner.run()
    english = report["verdict"]["en"]
    assert "--dtype float32" in english and "−50%" in english  # alone it halved the answer
    dtype = next(e for e in report["effects"] if e["knob"] == "dtype")
    assert dtype["confirmed"] and dtype["clear"]  # judged on the confirmation's 20 answers per side
    assert "No clear effect" in english and "max_tokens 25" in english
    assert "10 ms" in english and "first token" in english
    assert "--speculative-config" in english  # slower: it mattered, the wrong way
    assert "10" in report["verdict"]["vi"]


def test_a_resumed_study_does_not_measure_its_trials_again(tmp_path):
    clock = [0.0]
    first, _ = make_tuner(tmp_path, clock, max_trials=4)
    first.run()
    measured = dict(first.records)
    again, measure = make_tuner(tmp_path, [0.0], max_trials=6)
    assert again.resumed == len(measured) == 4
    again.run()
    search_calls = [c for c in measure.calls if c[1] != 20]  # confirmation calls send 20
    assert len(search_calls) <= 2 * 2  # only the two new trials: a first look and the rest
    assert set(measured) < set(again.records)


def test_every_trial_is_a_history_row_the_moment_it_is_measured(tmp_path):
    store = HistoryStore(tmp_path / "history.sqlite3")
    run_id = store.create_run("tune", {"preset": "pika-json"}, label="tune")
    seen: list[int] = []
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock, store=store, run_id=run_id, max_trials=3)
    tuner.on_event = lambda kind, data: (
        seen.append(store.get_run(run_id).row_count) if kind == "trial" else None
    )
    tuner.run()
    assert seen == [1, 2, 3]
    rows = store.get_run(run_id).rows
    assert len(rows) == 3 + len(tuner.confirmed)
    assert rows[0].data["changes"] == {} and rows[0].data["samples"]["e2e_ms"]


def test_a_server_that_does_not_start_fails_its_trial_and_the_search_goes_on(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock, server=FakeServer(refuse={"float32"}))
    report = tuner.run()
    failed = [t for t in report["trials"] if t["changes"] == {"dtype": "float32"}]
    assert failed and failed[0]["state"] == "failed"
    assert report["best"] is not None


# ---------------------------------------------------------------------------------------- confirmation


class FakeCarousel(FakeServer):
    """Keeps every server it started warm: going back to one is a flip ("woken"), not a start."""

    keeps_warm = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def is_warm(self, config) -> bool:
        return config in self.held

    def restart(self, config, wait=True, timeout=600):
        report = super().restart(config, wait, timeout)
        kind = "woken" if config in self.held else "cold"
        self.held.append(config)
        return FakeReport(ok=report.ok, command=report.command, server_start={"kind": kind, "ready_s": 0.2})


class DriftingMeasure(FakeMeasure):
    """The fake times, on a machine that gets 10% slower with every confirmation call."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(clock)
        self.confirming = False
        self.slowdown = 1.0

    def __call__(self, server, workload, plan, stop) -> Batch:
        batch = super().__call__(server, workload, plan, stop)
        if self.confirming:
            self.slowdown *= 1.10
        return Batch(
            e2e_ms=[v * self.slowdown for v in batch.e2e_ms],
            ttft_ms=batch.ttft_ms,
            itl_ms=batch.itl_ms,
            texts=batch.texts,
            completion_tokens=batch.completion_tokens,
            requests_per_s=batch.requests_per_s,
        )


def test_the_confirmation_measures_every_candidate_once_per_turn_in_a_serpentine_order(tmp_path):
    clock = [0.0]
    carousel = FakeCarousel()
    measure = FakeMeasure(clock)
    calls: list[tuple[str, str, int]] = []

    def tracked(server, workload, plan, stop):
        calls.append(
            (repr(server.restarts[-1]), repr(sorted(workload.payload("pika").items())), plan.requests)
        )
        return measure(server, workload, plan, stop)

    tuner, _ = make_tuner(tmp_path, clock, server=carousel, confirm_rounds=2, measure=tracked)
    cold_before_confirmation: list[int] = []
    tuner.on_event = lambda kind, data: (
        cold_before_confirmation.append(tuner.starts.get("cold", 0))
        if kind == "phase" and data.get("phase") == "confirm" and not cold_before_confirmation
        else None
    )
    report = tuner.run()
    confirmed = list(tuner.confirmed.values())
    assert len(confirmed) == 4  # the baseline and the best three
    assert all([t["answers"] for t in r["turns"]] == [10, 10] for r in confirmed)
    assert all(r["figures"]["answers"] == 20 for r in confirmed)
    turns = [(config, body) for config, body, n in calls[-8:]]
    assert all(n == 10 for *_, n in calls[-8:])
    assert turns[4:] == turns[:4][::-1]  # A B C D, then D C B A
    assert len(set(turns[:4])) == 4
    assert tuner.starts.get("cold", 0) == cold_before_confirmation[0]  # going back was a flip each time
    assert report["drift"] is not None and report["drift"]["spread"] < 0.05  # a steady fake machine


def test_a_machine_that_slows_down_while_confirming_is_named_and_does_not_decide_the_winner(tmp_path):
    clock = [0.0]
    measure = DriftingMeasure(clock)
    tuner, _ = make_tuner(tmp_path, clock, server=FakeCarousel(), confirm_rounds=2, measure=measure)
    tuner.on_event = lambda kind, data: (
        setattr(measure, "confirming", True) if kind == "phase" and data.get("phase") == "confirm" else None
    )
    report = tuner.run()
    drift = report["drift"]
    assert drift["high"] > 1.3 * drift["low"]  # the same baseline, early and late in the confirmation
    assert "changed speed by" in report["verdict"]["en"]
    assert "lệch tới" in report["verdict"]["vi"]
    assert report["best"]["changes"] == {"dtype": "float32", "compact_json": True}  # still the true best


def test_without_warm_servers_the_confirmation_takes_one_turn_instead_of_paying_starts(tmp_path):
    clock = [0.0]
    tuner, _ = make_tuner(tmp_path, clock, confirm_rounds=3)  # a plain server: going back is a start
    starts_after_search: list[int] = []
    tuner.on_event = lambda kind, data: (
        starts_after_search.append(len(tuner.server.restarts))
        if kind == "phase" and data.get("phase") == "confirm" and not starts_after_search
        else None
    )
    report = tuner.run()
    servers = {tuner.space.server_part(r["params"]) for r in tuner.confirmed.values()}
    assert len(servers) > 1
    assert all(len(r["turns"]) == 1 for r in tuner.confirmed.values())
    assert len(tuner.server.restarts) - starts_after_search[0] <= len(servers)
    assert report["drift"] is None and "changed speed" not in report["verdict"]["en"]


def test_the_tuner_s_view_says_whether_its_manager_keeps_servers_warm():
    from dashboard.tune.runner import WarmAwareView

    assert WarmAwareView(FakeCarousel()).keeps_warm is True
    assert WarmAwareView(FakeServer()).keeps_warm is False  # a plain manager: going back is a start
