"""Experiment cards: one JSON file that holds a run's config, workload, load plan, environment (vLLM
version, hardware, model) and results, so another machine can run it again and compare.

    card = make_card(config, workload, plan, result, environment(...))
    write_card(card, path);  card = read_card(path)      # CardError says what is wrong, in vi and en
    new = replay(card, workdir)                           # starts the card's config here, same load
    rows = compare(card, new)                             # figure by figure: theirs, ours, ratio

Secrets never enter a card: the config is masked (the API key becomes ***) and a replay runs without one.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.engine import hardware
from dashboard.engine.config import ServerConfig
from dashboard.engine.presets import RequestSpec
from dashboard.engine.problems import Problem
from dashboard.engine.report import MASK, mask_config
from dashboard.i18n import N_
from dashboard.measure.loadgen import LoadPlan, LoadResult, Workload

CARD_KIND = "lego-factory/experiment-card"
CARD_VERSION = 1
# The figures a card keeps and compares (all from LoadResult); "lower" says which way is better.
FIGURES: dict[str, tuple[str, bool]] = {
    "ttft_p50_ms": (N_("first token, median"), True),
    "tpot_p50_ms": (N_("time per next token, median"), True),
    "e2e_p50_ms": (N_("whole answer, median"), True),
    "requests_per_s": (N_("answers per second"), False),
    "output_tokens_per_s": (N_("answer tokens per second"), False),
}
PLAN_FIELDS = (
    "concurrency",
    "rate",
    "requests",
    "duration_s",
    "warmup",
    "seed",
    "timeout_s",
    "arrivals",
    "throughput",
)


class CardError(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text("en"))
        self.problem = problem


def _refuse(message: str, **params: Any) -> CardError:
    return CardError(Problem("bad_card", message, params={k: str(v) for k, v in params.items()}))


# ------------------------------------------------------------------------------------------ making


def environment(backend: str, model: str, vllm_version: str | None = None) -> dict[str, Any]:
    machine = hardware.detect()
    return {
        "vllm_version": vllm_version if vllm_version is not None else hardware.vllm_version(),
        "backend": backend,
        "model": model,
        "hardware": {
            "cpu": hardware.cpu_model(),
            "cpu_cores": os.cpu_count(),
            "machine": platform.machine(),
            "gpu_count": machine.gpu_count,
            "devices": list(machine.device_names),
            "memory_gib": round(machine.total_memory_gib, 1),
        },
        "python": platform.python_version(),
    }


def environment_line(env: Mapping[str, Any]) -> str:
    """One line naming the machine of an `environment` record, for benchmarks to print first: figures
    hold for one machine (two H200 hosts differed by half, docs/results/h200.md)."""
    box = env["hardware"]
    devices = ", ".join(box["devices"]) or "no GPU"
    return f"machine: {box['cpu']}, {box['cpu_cores']} cores, {devices}; vLLM {env['vllm_version']}"


def workload_to_dict(workload: Workload) -> dict[str, Any]:
    data = workload.to_dict()
    if workload.request is not None and workload.request.schema is not None:
        data["schema"] = workload.request.schema
    return data


def workload_from_dict(data: Mapping[str, Any]) -> Workload:
    kind = data.get("kind")
    if kind == "synthetic":
        return Workload(
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            unique_prompts=bool(data.get("unique_prompts", True)),
            salt=str(data.get("salt", "")),
            label=str(data.get("label", "")),
            filler_words=data.get("filler_words"),
        )
    if kind == "request":
        request = RequestSpec(
            messages=tuple(dict(m) for m in data["messages"]),
            temperature=float(data.get("temperature", 0.0)),
            max_tokens=int(data.get("max_tokens", 50)),
            schema=data.get("schema"),
        )
        return Workload(
            request=request, json_mode=bool(data.get("json_mode")), label=str(data.get("label", ""))
        )
    raise _refuse(N_("The card's workload kind '{kind}' is unknown (synthetic or request)."), kind=kind)


def plan_to_dict(plan: LoadPlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in PLAN_FIELDS}


def results_of(result: LoadResult) -> dict[str, Any]:
    return {
        "ttft_p50_ms": result.ttft_ms.p50,
        "tpot_p50_ms": result.tpot_ms.p50,
        "e2e_p50_ms": result.e2e_ms.p50,
        "requests_per_s": result.requests_per_s,
        "output_tokens_per_s": result.output_tokens_per_s,
        "sent": result.sent,
        "ok": result.ok,
        "errors": result.errors,
        "duration_s": result.duration_s,
    }


def make_card(
    config: ServerConfig | Mapping[str, Any],
    workload: Workload,
    plan: LoadPlan,
    result: LoadResult,
    env: Mapping[str, Any],
    label: str = "",
) -> dict[str, Any]:
    masked = mask_config(config) if isinstance(config, ServerConfig) else dict(config)
    return {
        "card": CARD_KIND,
        "version": CARD_VERSION,
        "label": label,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": masked,
        "workload": workload_to_dict(workload),
        "plan": plan_to_dict(plan),
        "environment": dict(env),
        "results": results_of(result),
    }


def write_card(card: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")


# ------------------------------------------------------------------------------------------ reading


def read_card(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _refuse(N_("There is no card at {path}."), path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(N_("{path} is not a JSON experiment card: {reason}"), path=path, reason=exc) from exc
    return check_card(data, str(path))


def check_card(data: Any, where: str = "card") -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("card") != CARD_KIND:
        raise _refuse(N_("{path} is not an experiment card of the LEGO factory."), path=where)
    if data.get("version") != CARD_VERSION:
        raise _refuse(
            N_("{path} is a card of version {version}; this factory reads version {known}."),
            path=where,
            version=data.get("version"),
            known=CARD_VERSION,
        )
    for part in ("config", "workload", "plan", "environment", "results"):
        if not isinstance(data.get(part), dict):
            raise _refuse(N_("{path} has no '{part}' part."), path=where, part=part)
    try:
        card_config(data)
        workload_from_dict(data["workload"])
        card_plan(data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CardError):
            raise
        raise _refuse(
            N_("{path} has a part this factory cannot use: {reason}"), path=where, reason=exc
        ) from exc
    return data


def card_config(card: Mapping[str, Any]) -> ServerConfig:
    """The card's config, without a masked secret (a replay here runs without the other's key)."""
    raw = card["config"]
    values = {k: v for k, v in dict(raw.get("values", {})).items() if v != MASK}
    return ServerConfig.from_dict({"model": raw.get("model", "embedded"), "values": values})


def card_plan(card: Mapping[str, Any]) -> LoadPlan:
    data = {k: v for k, v in dict(card["plan"]).items() if k in PLAN_FIELDS}
    return LoadPlan(**data)


# ------------------------------------------------------------------------------------------ replay


@dataclass(frozen=True)
class Comparison:
    figure: str
    label: str  # an English msgid
    theirs: float | None
    ours: float | None
    lower_is_better: bool

    @property
    def ratio(self) -> float | None:
        """ours / theirs, or None when either is missing."""
        if self.theirs in (None, 0) or self.ours is None:
            return None
        return self.ours / self.theirs  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "theirs": self.theirs, "ours": self.ours, "ratio": self.ratio}


def compare(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[Comparison]:
    a, b = theirs.get("results", {}), ours.get("results", {})
    return [
        Comparison(name, label, a.get(name), b.get(name), lower) for name, (label, lower) in FIGURES.items()
    ]


def replay(
    card: Mapping[str, Any],
    workdir: Path,
    port: int | None = None,
    on_phase: Callable[[Any], None] | None = None,
    timeout: float = 600.0,
    manager: Any = None,
) -> dict[str, Any]:
    """Start the card's config on this machine, run the same load, and return this machine's card.
    Raises CardError when the server does not start (the Problem says why)."""
    from dashboard.engine.server import ServerManager

    config = card_config(card)
    if port is not None:
        config = config.with_values({"port": port})
    own = manager is None
    manager = manager or ServerManager(workdir)
    try:
        report = (
            manager.start(config, timeout=timeout, on_phase=on_phase) if own else _ensure(manager, config)
        )
        if not report.ok:
            problem = report.error or Problem("not_ready", N_("The server did not become ready."))
            raise CardError(problem)
        workload, plan = workload_from_dict(card["workload"]), card_plan(card)
        from dashboard.measure.loadgen import run_load

        result = run_load(manager.base_url, manager.served_name, workload, plan, api_key=manager.api_key)
        env = environment(manager.backend, manager.served_name, report.vllm_version or None)
        return make_card(
            config, workload, plan, result, env, label=f"replay of {card.get('label') or 'a card'}"
        )
    finally:
        if own:
            manager.stop()


def _ensure(manager: Any, config: ServerConfig) -> Any:
    snap = manager.snapshot()
    if snap.status == "ready" and snap.config == config:
        return manager.last_report
    return manager.start(config)
