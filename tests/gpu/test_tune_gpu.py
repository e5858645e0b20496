"""The tuner's H200 target: for the brief's Pika JSON request one at a time, the best p50 whole answer is
at most 40 ms, found within 15 minutes of tuning, and a fresh start of the recommended settings confirms
it. Skipped without an NVIDIA GPU; never part of CI.

    TUNE_GPU_MINUTES=15 .venv/bin/python -m pytest tests/gpu/test_tune_gpu.py -q -s

The tuning budget defaults to the target's 15 minutes; each trial is printed as it is measured.
GPU_RESULTS_DIR, when set, receives the whole report and the probe as tune_gpu.json.
"""

from __future__ import annotations

import os
import time

import pytest

from dashboard.engine import hardware, presets
from dashboard.engine.carousel import Carousel
from dashboard.history.store import HistoryStore
from dashboard.measure.loadgen import Workload
from dashboard.tune import question
from dashboard.tune.runner import WarmAwareView, fresh_probe, run_tune
from tests.gpu.results import save_result

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(hardware.gpu_count() == 0, reason="needs an NVIDIA GPU"),
]

TARGET_MS = 40.0
MINUTES = float(os.environ.get("TUNE_GPU_MINUTES", "15"))
PORT = 8721


def test_the_tuner_finds_a_pika_answer_of_at_most_40_ms_and_a_fresh_probe_confirms_it(tmp_path):
    preset = presets.get("pika-json")
    workload = Workload.from_request(preset.request, label=preset.name)
    # The brief's settings (float16, 0.15 of the GPU, 2,048 tokens, 128 lanes, prefix caching).
    base = presets.brief_config("cuda", port=PORT)
    asked = question.TuneQuestion(
        workload=workload.to_dict(),
        goal=question.parse_goal("p50-e2e"),
        minutes=MINUTES,
        backend="cuda",
        preset=preset.name,
    )
    manager = Carousel(tmp_path / "tune", backend="cuda")  # warm servers: going back is a flip, not a start
    started = time.monotonic()
    try:
        store = HistoryStore(tmp_path / "history.sqlite3")
        report = run_tune(asked, base, workload, WarmAwareView(manager), store=store, on_event=print_trial)
    finally:
        manager.close()
    tuning_s = time.monotonic() - started
    best = report["best"]
    save_result("tune_gpu", {"report": report, "tuning_s": tuning_s})  # kept if the probe is cut off
    probe = fresh_probe(best, workload, tmp_path / "probe", "cuda", requests=40, port=PORT)
    save_result("tune_gpu", {"report": report, "probe": probe, "tuning_s": tuning_s})
    best_ms = best["goal"]["value"]
    probe_ms = probe["figures"]["p50-e2e"]["value"]
    print(f"baseline {report['baseline']['goal']}, best {best['goal']} {best['changes']}, probe {probe_ms}")
    print("drift", report["drift"])
    print(report["verdict"]["en"])
    assert tuning_s <= 15 * 60 + 120  # the budget, plus the last trial finishing
    assert best_ms <= TARGET_MS, report["verdict"]["en"]
    assert probe["ok"] and probe_ms <= TARGET_MS, probe


def print_trial(kind: str, data: dict) -> None:
    if kind in ("trial", "confirm"):
        figures = data.get("figures") or {}
        e2e, ttft = figures.get("p50-e2e") or {}, figures.get("p50-ttft") or {}
        print(
            f"{time.strftime('%H:%M:%S')} {kind} #{data.get('number')} {data.get('changes')} "
            f"{data.get('state')}: p50 e2e {e2e.get('value')}, first token {ttft.get('value')}, "
            f"tokens {figures.get('output_tokens')}, same answer {data.get('answer_matches')}"
            + (f", turns {[round(t['value'] or 0, 1) for t in data['turns']]}" if data.get("turns") else ""),
            flush=True,
        )
