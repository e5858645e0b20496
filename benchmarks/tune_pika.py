"""Tune the Pika JSON request one at a time and confirm the result with a fresh start.

    python benchmarks/tune_pika.py [--minutes 10] [--backend cpu|cuda] [--requests 20] [--port 8361]
                                   [--json tune_pika.json] [--allow-changed-answers]

Prints, from one tuning run: the pika-json preset's p50 whole answer (the baseline, measured in the same
run) and the best settings' p50, both with their 95% intervals, and how much lower the best is; then the
p50 of a fresh probe (a new server started with the recommended command, the recommended request
fields sent) and its reduction against the same baseline. Targets: on a CPU at least 20% lower than the
preset; on an H200 at most 40 ms, found within 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import hardware, presets  # noqa: E402
from dashboard.engine.carousel import Carousel  # noqa: E402
from dashboard.engine.config import default_config  # noqa: E402
from dashboard.history.store import HistoryStore  # noqa: E402
from dashboard.measure.loadgen import Workload  # noqa: E402
from dashboard.tune import question  # noqa: E402
from dashboard.tune.runner import fresh_probe, run_tune  # noqa: E402
from dashboard.tune.search import TuneSettings  # noqa: E402


def interval(goal: dict) -> str:
    low, high = goal.get("low"), goal.get("high")
    span = "?" if low is None or high is None else f"{low:.1f}-{high:.1f}"
    value = goal.get("value")
    return f"{value:.1f} ms [{span}]" if value is not None else "?"


def lower_by(new: float | None, old: float | None) -> str:
    if new is None or old is None or not old:
        return "?"
    return f"{(1 - new / old) * 100:.1f}%"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--requests", type=int, default=20, help="requests of the confirmation and the probe")
    parser.add_argument("--port", type=int, default=8361)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--allow-changed-answers", action="store_true")
    args = parser.parse_args()
    backend = args.backend or hardware.detect_backend()
    preset = presets.get("pika-json")
    workload = Workload.from_request(preset.request, label=preset.name)
    base = default_config(backend).with_values(preset.flags).with_values({"port": args.port})
    asked = question.TuneQuestion(
        workload=workload.to_dict(),
        goal=question.parse_goal("p50-e2e"),
        minutes=args.minutes,
        allow_changed_answers=args.allow_changed_answers,
        backend=backend,
        preset=preset.name,
    )
    settings = TuneSettings.for_backend(
        backend, confirm_requests=args.requests, more_requests=max(4, args.requests // 2)
    )
    workdir = Path(tempfile.mkdtemp(prefix="tune-pika-"))
    store = HistoryStore()
    manager = Carousel(workdir / "tune", backend=backend)
    started = time.monotonic()
    try:
        report = run_tune(
            asked, base, workload, manager, store=store, settings=settings, on_event=print_trial
        )
    finally:
        manager.close()
    tuned_s = time.monotonic() - started
    best, baseline = report.get("best") or {}, report.get("baseline") or {}
    best_goal, base_goal = best.get("goal") or {}, baseline.get("goal") or {}
    print(f"backend {backend}, vLLM {hardware.vllm_version()}, tuning took {tuned_s / 60:.1f} min")
    box = report["environment"]["hardware"]
    print(f"machine: {box['cpu']}, {box['cpu_cores']} cores, {', '.join(box['devices']) or 'no GPU'}")
    print(f"pika-json preset (same run): p50 e2e {interval(base_goal)}")
    print(f"best settings {best.get('changes')}: p50 e2e {interval(best_goal)}")
    print(f"clearly better (intervals apart): {best.get('clearly_better')}")
    print(f"best lower than the preset by {lower_by(best_goal.get('value'), base_goal.get('value'))}")
    print("command:", " ".join(best.get("command") or []))
    print("request fields:", json.dumps(best.get("request_fields") or {}))
    probe = fresh_probe(best, workload, workdir / "probe", backend, requests=args.requests, port=args.port)
    probe_goal = (probe.get("figures") or {}).get("p50-e2e") or {}
    print(f"fresh probe of the best: p50 e2e {interval(probe_goal)}, ready after {probe.get('ready_s')} s")
    print(f"fresh probe lower than the preset by {lower_by(probe_goal.get('value'), base_goal.get('value'))}")
    print("verdict:", report["verdict"]["en"])
    if args.json:
        data = {"report": report, "probe": probe, "tuning_s": tuned_s}
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    return 0 if probe.get("ok") else 1


def print_trial(kind: str, data: dict) -> None:
    if kind in ("trial", "confirm"):
        value = ((data.get("figures") or {}).get("p50-e2e") or {}).get("value")
        shown = "?" if value is None else f"{value:.1f} ms"
        print(
            f"{kind} #{data.get('number')}: {data.get('changes')} {data.get('state')} p50 e2e {shown}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
