"""The search space: which server flags and request options the tuner may move, and to which values.

Server knobs come from the flag catalog (configs/flags.toml): only flags that change something on the
detected backend, with values that make sense there (no eager mode on a GPU, where it is 5x slower; no
compile on a CPU unless the time budget can pay a minute per start). Every value is checked before any
start: the config rules (dashboard/engine/config.validate) and the memory arithmetic
(dashboard/measure/predict) against the memory budget. What fails is left out, with its reason.

Request knobs change only the chat-completions body, so they need no restart: a smaller `max_tokens`
and compact JSON (a regular expression built from the JSON schema, with no room for whitespace). They
are offered only when the user allows the request to change.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dashboard.engine import config as config_mod
from dashboard.engine import flags
from dashboard.engine.config import ModelFacts, ServerConfig
from dashboard.engine.presets import RequestSpec
from dashboard.measure.loadgen import Workload

GIB = 1024**3
NGRAM_2 = '{"method":"ngram","num_speculative_tokens":2,"prompt_lookup_max":4,"prompt_lookup_min":2}'
NGRAM_4 = '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}'
XGRAMMAR_COMPACT = '{"backend":"xgrammar","disable_any_whitespace":true}'
GUIDANCE = '{"backend":"guidance"}'
GUIDANCE_COMPACT = '{"backend":"guidance","disable_any_whitespace":true}'
JSON_ONLY = {"structured_outputs_config"}  # knobs that matter only when the answer is constrained
COMPILE_MINUTES = 15.0  # below this budget a CPU tuner does not pay a compile per start

# Alternatives tried beside the starting value, per backend, in the order the tuner tries them alone.
# The order is the expected gain on that backend, from what was measured (docs and the reference notes).
ALTERNATIVES: dict[str, dict[str, tuple[Any, ...]]] = {
    "cpu": {
        "dtype": ("float32",),
        "max_num_seqs": ("small",),
        "speculative_config": (NGRAM_4, NGRAM_2),
        "stream_interval": (16,),
        "structured_outputs_config": (XGRAMMAR_COMPACT, GUIDANCE, GUIDANCE_COMPACT),
        "enable_prefix_caching": (False,),
        "enforce_eager": (False,),
    },
    "cuda": {
        "stream_interval": (32, 4),
        "max_num_seqs": ("small",),
        "structured_outputs_config": (XGRAMMAR_COMPACT, GUIDANCE, GUIDANCE_COMPACT),
        "performance_mode": ("interactivity",),
        "async_scheduling": (False,),
        "speculative_config": (NGRAM_4,),
        "enable_prefix_caching": (False,),
    },
}
REQUEST_KNOBS = ("compact_json", "max_tokens")


@dataclass(frozen=True)
class Knob:
    name: str  # a catalog flag name, or a request option ("compact_json", "max_tokens")
    side: str  # "server" (needs a restart) or "request" (the same server, another request body)
    values: tuple[Any, ...]  # values[0] is the starting value

    @property
    def baseline(self) -> Any:
        return self.values[0]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "side": self.side, "values": list(self.values)}


@dataclass(frozen=True)
class RequestOptions:
    """What the tuner changes in the request body; defaults leave the user's request as it is."""

    max_tokens: int | None = None
    compact_json: bool = False

    def body_fields(self, request: RequestSpec | None) -> dict[str, Any]:
        """The fields these options add to (or change in) the chat-completions body."""
        fields: dict[str, Any] = {}
        if self.max_tokens is not None and (request is None or self.max_tokens != request.max_tokens):
            fields["max_tokens"] = self.max_tokens
        if self.compact_json and request is not None and request.schema is not None:
            pattern = compact_json_pattern(request.schema)
            if pattern is not None:
                fields["structured_outputs"] = {"regex": pattern}
        return fields


@dataclass(frozen=True)
class TunedWorkload(Workload):
    """A preset's workload with the tuner's request-side changes applied to each body."""

    extra_fields_json: str = "{}"  # fields added to the body (JSON text: the dataclass stays hashable)

    def payload(self, model: str, index: int = 0) -> dict[str, Any]:
        body = super().payload(model, index)
        extra = json.loads(self.extra_fields_json)
        if "structured_outputs" in extra:
            body.pop("response_format", None)  # the regex replaces the schema
        body.update(extra)
        return body

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"request_changes": json.loads(self.extra_fields_json)}


def workload_with(base: Workload, options: RequestOptions) -> Workload:
    """The base workload with these request options (the base itself when they change nothing)."""
    fields = options.body_fields(base.request)
    if not fields or base.request is None:
        return base
    return TunedWorkload(
        request=base.request,
        json_mode=base.json_mode,
        label=base.label,
        extra_fields_json=json.dumps(fields, sort_keys=True),
    )


# ---------------------------------------------------------------------------------------------- compact JSON


def compact_json_pattern(schema: Mapping[str, Any]) -> str | None:
    """A regular expression for the schema's answers written without any whitespace, for a flat object
    whose properties are enums, booleans, integers or plain strings (the Pika schema); None otherwise."""
    if schema.get("type") != "object" or not schema.get("properties"):
        return None
    parts = []
    for name, prop in schema["properties"].items():
        value = _value_pattern(prop)
        if value is None:
            return None
        parts.append(re.escape(json.dumps(name)) + ":" + value)
    return r"\{" + ",".join(parts) + r"\}"


def _value_pattern(prop: Mapping[str, Any]) -> str | None:
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "(" + "|".join(re.escape(json.dumps(v)) for v in prop["enum"]) + ")"
    kind = prop.get("type")
    if kind == "boolean":
        return "(true|false)"
    if kind == "integer":
        return r"-?(0|[1-9][0-9]{0,17})"
    if kind == "string" and not prop.get("format") and "pattern" not in prop:
        return r'"[^"\\\n]{0,200}"'
    return None


# ---------------------------------------------------------------------------------------------- the space


@dataclass
class SearchSpace:
    base: ServerConfig  # the starting settings (the preset's), budgets applied
    knobs: list[Knob]
    request: RequestSpec | None = None
    pruned: list[dict[str, Any]] = field(default_factory=list)  # {"knob", "value", "reasons"}
    notes: list[str] = field(default_factory=list)

    @property
    def server_knobs(self) -> list[Knob]:
        return [k for k in self.knobs if k.side == "server"]

    @property
    def request_knobs(self) -> list[Knob]:
        return [k for k in self.knobs if k.side == "request"]

    def baseline_params(self) -> dict[str, Any]:
        return {knob.name: knob.baseline for knob in self.knobs}

    def size(self) -> int:
        return math.prod(len(knob.values) for knob in self.knobs) if self.knobs else 1

    def server_config(self, params: Mapping[str, Any]) -> ServerConfig:
        changes = {k.name: params.get(k.name, k.baseline) for k in self.server_knobs}
        changes = {name: value for name, value in changes.items() if value is not None}
        config = self.base.with_values(changes)
        values = {n: v for n, v in config.values.items() if not (n in changes and _is_vllm_default(n, v))}
        return replace(config, values=values)

    def server_part(self, params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The server side of a trial's params: trials with equal parts share one running server."""
        return tuple((k.name, params.get(k.name, k.baseline)) for k in self.server_knobs)

    def request_options(self, params: Mapping[str, Any]) -> RequestOptions:
        return RequestOptions(
            max_tokens=params.get("max_tokens"), compact_json=bool(params.get("compact_json", False))
        )

    def changes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Only the knobs these params move away from the starting values."""
        return {
            k.name: params[k.name] for k in self.knobs if k.name in params and params[k.name] != k.baseline
        }

    def one_at_a_time(self, answers_may_change: bool = True) -> list[dict[str, Any]]:
        """The baseline, then each alternative value alone: request options first (no restart); knobs
        known to change the answer come last when a changed answer is not allowed."""
        base = self.baseline_params()
        trials = [base]
        server = sorted(self.server_knobs, key=lambda k: not answers_may_change and k.name in JSON_ONLY)
        for knob in self.request_knobs + server:
            for value in knob.values[1:]:
                trials.append({**base, knob.name: value})
        return trials

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "knobs": [k.to_dict() for k in self.knobs],
            "pruned": list(self.pruned),
            "notes": list(self.notes),
            "size": self.size(),
        }


def _is_vllm_default(name: str, value: Any) -> bool:
    flag = flags.get(name)
    return flag.vllm_default is not None and value == flag.coerce(flag.vllm_default)


def _starting_value(base: ServerConfig, name: str) -> Any:
    flag = flags.get(name)
    value = base.get(name)
    if value is None and flag.vllm_default is not None:
        return flag.coerce(flag.vllm_default)
    return value


def _small_lanes(concurrency: int | None) -> int:
    """The fewest lanes the load needs: the next power of two at or above the requests in flight."""
    need = max(1, int(concurrency or 1))
    return max(4, 2 ** math.ceil(math.log2(need)))


def _alternatives(
    backend: str, base: ServerConfig, is_json: bool, minutes: float, concurrency: int | None
) -> list[tuple[str, tuple[Any, ...]]]:
    found = []
    for name, values in ALTERNATIVES.get(backend, {}).items():
        if name not in flags.catalog() or not flags.get(name).has_effect_on(backend):
            continue
        if name in JSON_ONLY and not is_json:
            continue
        if name == "enforce_eager" and (backend != "cpu" or minutes < COMPILE_MINUTES):
            continue
        start = _starting_value(base, name)
        resolved = [_small_lanes(concurrency) if v == "small" else v for v in values]
        others = tuple(dict.fromkeys(v for v in resolved if v != start))
        if others:
            found.append((name, (start, *others)))
    return found


def apply_memory_budget(
    base: ServerConfig, backend: str, memory_gib: float | None, facts: ModelFacts
) -> ServerConfig:
    """Fit the starting settings into the budget: on CPU the KV cache size, on a GPU the share of it."""
    if memory_gib is None:
        return base
    if backend == "cpu":
        weights_gib = (facts.weights_bytes or 0) / GIB
        room = memory_gib - weights_gib
        current = base.get("kv_cache_memory_gib")
        if current is not None and room > 0 and current > room:
            flag = flags.get("kv_cache_memory_gib")
            step = flag.step or 0.0625
            return base.with_values(
                {"kv_cache_memory_gib": max(flag.min or step, math.floor(room / step) * step)}
            )
        return base
    total = (facts.memory_bytes or 0) / max(facts.gpu_count, 1)
    if total <= 0:
        return base
    share = round(min(memory_gib * GIB / total, 0.98), 2)
    current = base.get("gpu_memory_utilization")
    if current is None or share < current:
        return base.with_values({"gpu_memory_utilization": max(share, 0.01)})
    return base


def check_config(
    config: ServerConfig,
    facts: ModelFacts,
    memory_gib: float | None = None,
    shape: Any = None,
) -> list[str]:
    """Why this config would fail or break the budget (English sentences); [] when it may start."""
    reasons = [p.text("en") for p in config_mod.validate(config, facts, check_port=False)]
    if shape is None:
        return reasons
    from dashboard.measure import predict  # the predictor (moves to dashboard.engine; the name stays)

    memory = facts.memory_bytes or 0
    prediction = predict.predict(config, shape, facts.backend, memory, gpu_count=max(facts.gpu_count, 1))
    reasons += [p.text("en") for p in prediction.problems if p.code in predict.BLOCKING]
    if memory_gib is not None:
        held = _predicted_bytes(prediction, facts.backend)
        if held is not None and held > memory_gib * GIB:
            reasons.append(f"predicted {held / GIB:.2f} GiB is more than the budget of {memory_gib:g} GiB")
    return reasons


def _predicted_bytes(prediction: Any, backend: str) -> int | None:
    if backend == "cpu":
        kv = prediction.kv_cache_bytes
        return None if kv is None else prediction.weights_bytes + kv
    reserved = [d.reserved_bytes for d in prediction.devices if d.reserved_bytes is not None]
    if reserved:
        return sum(reserved)
    kv = prediction.kv_cache_bytes
    return None if kv is None else prediction.weights_bytes + kv + prediction.working_bytes


def build_space(
    base: ServerConfig,
    backend: str,
    request: RequestSpec | None,
    facts: ModelFacts,
    *,
    memory_gib: float | None = None,
    minutes: float = 10.0,
    concurrency: int | None = 1,
    allow_request_changes: bool = True,
    shape: Any = None,
) -> SearchSpace:
    """The knobs and values to search, every value checked alone against the rules and the budget."""
    base = apply_memory_budget(base, backend, memory_gib, facts)
    is_json = request is not None and request.schema is not None
    space = SearchSpace(base=base, knobs=[], request=request)
    problems = check_config(base, facts, memory_gib, shape)
    if problems:
        space.notes.extend(problems)
    for name, values in _alternatives(backend, base, is_json, minutes, concurrency):
        kept = [values[0]]
        for value in values[1:]:
            reasons = check_config(base.with_values({name: value}), facts, memory_gib, shape)
            if reasons:
                space.pruned.append({"knob": name, "value": value, "reasons": reasons})
            else:
                kept.append(value)
        if len(kept) > 1:
            space.knobs.append(Knob(name, "server", tuple(kept)))
    if allow_request_changes and request is not None:
        space.knobs.extend(_request_knobs(request))
    return space


def _request_knobs(request: RequestSpec) -> Iterable[Knob]:
    if request.schema is not None and compact_json_pattern(request.schema) is not None:
        yield Knob("compact_json", "request", (False, True))
    smaller = max(8, request.max_tokens // 2)
    if smaller < request.max_tokens:
        yield Knob("max_tokens", "request", (request.max_tokens, smaller))


def params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(sorted(params.items())), sort_keys=True, default=str)


def knob_dicts(space: SearchSpace) -> list[dict[str, Any]]:
    return [asdict(k) for k in space.knobs]
