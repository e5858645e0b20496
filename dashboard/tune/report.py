"""The tuner's report: the best settings (with the `vllm serve` command and the request fields), the
baseline measured in the same run, every trial, the knobs' effects and the verdict in both languages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dashboard.engine import config as config_mod
from dashboard.engine.config import ServerConfig
from dashboard.tune import intervals, verdict
from dashboard.tune.intervals import Estimate
from dashboard.tune.search import CONFIRM, SEARCH, Tuner, goal_estimate, serve_command
from dashboard.tune.space import params_key

PIKA_BRIEF = {"brief_ms": 170.0, "h100_ms": 60.0, "owner_hope_ms": 10.0}
FIGURE_KEYS = ("p50-e2e", "p90-e2e", "p50-ttft", "p90-ttft", "p50-itl", "p90-itl", "throughput")


def entry(record: Mapping[str, Any], goal_key: str, command: list[str]) -> dict[str, Any]:
    """One setting as the report shows it."""
    figures = record.get("figures") or {}
    return {
        "config": dict(record.get("config") or {}),
        "changes": dict(record.get("changes") or {}),
        "command": list(record.get("command") or command),
        "request_fields": dict(record.get("request_fields") or {}),
        "figures": {key: figures.get(key) for key in FIGURE_KEYS if key in figures}
        | {k: figures.get(k) for k in ("queue_ms", "output_tokens", "answers", "errors")},
        "goal": goal_estimate(record, goal_key).to_dict(),
        "confirmed": record.get("phase") == CONFIRM,
        "answers": list(record.get("answers") or []),
        "answer_matches": record.get("answer_matches"),
        "meets_limit": record.get("meets_limit"),
    }


def trial_entry(record: Mapping[str, Any], goal_key: str) -> dict[str, Any]:
    figures = record.get("figures") or {}
    return {
        "number": record.get("number"),
        "phase": record.get("phase"),
        "state": record.get("state"),
        "params": dict(record.get("params") or {}),
        "changes": dict(record.get("changes") or {}),
        "config": dict(record.get("config") or {}),
        "request_fields": dict(record.get("request_fields") or {}),
        "figures": {key: figures.get(key) for key in FIGURE_KEYS if key in figures},
        "goal": goal_estimate(record, goal_key).to_dict(),
        "answer_matches": record.get("answer_matches"),
        "meets_limit": record.get("meets_limit"),
        "server_start": record.get("server_start"),
        "turns": list(record.get("turns") or []),  # the confirmation's interleaved turns
        "error": record.get("error"),
        "at_s": record.get("at_s"),
    }


def _fallback_command(tuner: Tuner, params: Mapping[str, Any]) -> list[str]:
    """The command of another trial on the same server, or one built from the config."""
    part = tuner.space.server_part(params)
    for record in list(tuner.records.values()) + list(tuner.confirmed.values()):
        if tuner.space.server_part(record["params"]) == part and record.get("command"):
            return list(record["command"])
    config: ServerConfig = tuner.space.server_config(params)
    words = config_mod.argv(config, config.model, getattr(tuner.server, "served_name", "") or config.model)
    return serve_command([w for w in words if w])


def knob_effects(tuner: Tuner) -> list[dict[str, Any]]:
    """Each value tried alone against the baseline: change of the goal, and whether the two are clearly
    apart. Figures of the confirmation are used where both sides were measured again (more requests);
    `change` is (value - baseline) / baseline."""
    goal = tuner.goal
    bkey = params_key(tuner.space.baseline_params())
    base = tuner.records.get(bkey)
    effects: list[dict[str, Any]] = []
    if base is None:
        return effects
    base_confirmed = tuner.confirmed.get(bkey)
    for key, record in tuner.records.items():
        changes = record.get("changes") or {}
        if len(changes) != 1:
            continue
        confirmed = tuner.confirmed.get(key)
        pair = (record, base)
        if _measured(confirmed) and _measured(base_confirmed):
            pair = (confirmed, base_confirmed)
        ((knob, value),) = changes.items()
        estimate, base_estimate = goal_estimate(pair[0], goal.key), goal_estimate(pair[1], goal.key)
        effects.append(
            {
                "knob": knob,
                "value": value,
                "state": record.get("state"),
                "value_ms": estimate.value,
                "baseline_ms": base_estimate.value,
                "change": intervals.relative_change(estimate.value, base_estimate.value),
                "clear": apart(pair[0], pair[1], goal.metric, estimate, base_estimate),
                "confirmed": pair[0] is confirmed,
                "answer_changed": record.get("answer_matches") is False,
                "error": record.get("error"),
            }
        )
    return sorted(effects, key=lambda e: e["change"] if e["change"] is not None else 9e9)


def apart(
    record: Mapping[str, Any],
    base: Mapping[str, Any],
    metric: str,
    estimate: Estimate,
    base_estimate: Estimate,
) -> bool:
    """Whether a value alone clearly moved the goal away from the baseline: the two intervals do not
    overlap or, with too few answers for an interval (a first look), every answer of one lies beyond
    every answer of the other (at least three on each side)."""
    if estimate.has_interval and base_estimate.has_interval:
        return not intervals.overlap(estimate, base_estimate)
    if metric == "throughput":
        return False
    samples = (record.get("samples") or {}).get(f"{metric}_ms") or []
    base_samples = (base.get("samples") or {}).get(f"{metric}_ms") or []
    if len(samples) < 3 or len(base_samples) < 3:
        return False
    return min(samples) > max(base_samples) or max(samples) < min(base_samples)


def answer_changers(tuner: Tuner) -> list[dict[str, Any]]:
    """The knob values that changed the answer: those tried alone first; combinations only when no
    single value explains them."""
    changed = [r for r in tuner.records.values() if r.get("answer_matches") is False]
    singles = {(k, json.dumps(v)) for r in changed if len(r["changes"]) == 1 for k, v in r["changes"].items()}
    found = [{"knob": k, "value": json.loads(v)} for k, v in sorted(singles)]
    for record in changed:
        pairs = {(k, json.dumps(v)) for k, v in record["changes"].items()}
        if len(pairs) > 1 and not pairs & singles:
            found.append({"knob": None, "changes": dict(record["changes"])})
    return found


def build_report(tuner: Tuner, stopped: bool, duration_s: float) -> dict[str, Any]:
    goal = tuner.goal
    baseline_params = tuner.space.baseline_params()
    bkey = params_key(baseline_params)
    baseline = tuner.confirmed.get(bkey) if _measured(tuner.confirmed.get(bkey)) else tuner.records.get(bkey)
    ranked = tuner.ranked(CONFIRM) or tuner.ranked(SEARCH)
    fastest = ranked[0] if ranked else None
    best, clearly = baseline, False
    if fastest is not None and baseline is not None and params_key(fastest["params"]) != bkey:
        clearly = intervals.clearly_better(
            goal_estimate(fastest, goal.key), goal_estimate(baseline, goal.key), goal.lower_is_better
        )
        if clearly:
            best = fastest
    elif baseline is None:
        best = fastest
    report: dict[str, Any] = {
        "question": tuner.question.to_dict(),
        "study": {
            "name": tuner.question.study_name(),
            "storage": str(tuner.storage_path),
            "resumed_trials": tuner.resumed,
        },
        "space": tuner.space.to_dict(),
        "baseline": _entry_or_none(tuner, baseline, baseline_params),
        "best": None,
        "fastest_measured": _entry_or_none(tuner, fastest, fastest["params"] if fastest else {}),
        "trials": [trial_entry(r, goal.key) for r in sorted(tuner.records.values(), key=_order)],
        "confirmations": [trial_entry(r, goal.key) for r in tuner.confirmed.values()],
        "effects": knob_effects(tuner),
        "answer_changers": answer_changers(tuner),
        "drift": machine_drift(tuner.confirmed.get(bkey)),
        "server_starts": dict(tuner.starts),
        "stopped": stopped,
        "duration_s": round(duration_s, 1),
        "brief": PIKA_BRIEF if tuner.question.preset.startswith("pika") else None,
    }
    if best is not None:
        report["best"] = _entry_or_none(tuner, best, best["params"]) | {
            "clearly_better": clearly,
            "is_baseline": params_key(best["params"]) == bkey,
        }
    report["breakdown"] = breakdown(report["best"]) if report["best"] else None
    report["verdict"] = verdict.make_verdict(report)
    return report


def machine_drift(baseline: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """How far the same starting settings measured apart in the confirmation's turns: the machine's
    own movement during the run, which no knob explains. None with fewer than two turns."""
    values = [t["value"] for t in (baseline or {}).get("turns") or [] if t.get("value") is not None]
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    return {"turns": values, "low": low, "high": high, "spread": (high - low) / low if low else None}


def _measured(record: Mapping[str, Any] | None) -> bool:
    return bool(record) and record.get("state") == "measured"


def _entry_or_none(tuner: Tuner, record: Mapping[str, Any] | None, params: Mapping[str, Any]) -> dict | None:
    if record is None:
        return None
    return entry(record, tuner.goal.key, _fallback_command(tuner, params))


def _order(record: Mapping[str, Any]) -> tuple[int, float]:
    number = record.get("number")
    return (number if number is not None else 10**9, record.get("at_s") or 0.0)


def breakdown(best: Mapping[str, Any]) -> dict[str, Any]:
    """Where the whole answer's time goes (medians): queue, first token, and the steps after it."""
    figures = best.get("figures") or {}
    ttft = Estimate.from_dict(figures.get("p50-ttft")).value
    itl = Estimate.from_dict(figures.get("p50-itl")).value
    e2e = Estimate.from_dict(figures.get("p50-e2e")).value
    tokens = figures.get("output_tokens")
    steps = max(int(tokens) - 1, 0) if tokens else None
    return {
        "e2e_ms": e2e,
        "queue_ms": figures.get("queue_ms"),
        "first_token_ms": ttft,
        "steps": steps,
        "step_ms": itl,
        "steps_ms": steps * itl if steps is not None and itl is not None else None,
        "output_tokens": tokens,
    }
