"""A server config: the values of the catalog's flags, the command line they make, and what changed."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dashboard.engine import flags
from dashboard.engine.problems import Problem
from dashboard.i18n import N_

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class ModelFacts:
    """What the config checks need to know about the machine and the model."""

    backend: str = "cpu"  # "cpu" or "cuda"
    gpu_count: int = 0
    max_model_len: int | None = None  # the model's own limit (max_position_embeddings)
    model: str = ""  # the name the user typed, for messages
    weights_bytes: int | None = None  # the weights in 16-bit, estimated from the model's shape
    memory_bytes: int | None = None  # RAM on a CPU machine, all GPUs together on a GPU machine


@dataclass(frozen=True)
class ServerConfig:
    model: str  # a Hugging Face id, a local folder, or "embedded"
    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def with_values(self, changes: Mapping[str, Any]) -> ServerConfig:
        merged = dict(self.values)
        for name, value in changes.items():
            merged[name] = flags.get(name).coerce(value)
        return replace(self, values=merged)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "values": dict(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerConfig:
        return cls(model=data["model"]).with_values(data.get("values", {}))


def default_config(backend: str, model: str = "embedded") -> ServerConfig:
    values = {flag.name: flag.start_value(backend) for flag in flags.catalog().values()}
    return ServerConfig(model=model, values={k: v for k, v in values.items() if v is not None})


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Read CLI `--set name=value` items (flag names or vLLM options) into typed values."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        flag, inverted = _assigned_flag(name.strip())
        value = flag.coerce(raw.strip())
        values[flag.name] = (not value) if inverted else value
    return values


def _assigned_flag(name: str) -> tuple[flags.Flag, bool]:
    """The flag a `--set` name means, and whether it is a negative form (no-x, disable-x) whose value
    turns the flag the other way. Names may be written with or without the leading dashes."""
    bare = name.lstrip("-").replace("_", "-")
    option = "--" + bare
    for flag in flags.catalog().values():
        if option == flag.cli or bare.replace("-", "_") == flag.name:
            return flag, False
        if flag.replaces and option == flag.replaces:
            return flag, _is_negation(flag.replaces, flag.cli)
    if bare.startswith("no-"):
        for flag in flags.catalog().values():
            if "--" + bare.removeprefix("no-") == flag.cli:
                if flag.kind != "bool":
                    raise ValueError(f"{option} is not an option: only on/off flags have a --no- form")
                return flag, True
    raise KeyError(f"unknown flag {name!r}")


def _is_negation(old: str, new: str) -> bool:
    """--disable-log-requests is the opposite of --enable-log-requests."""
    return old.removeprefix("--disable-") == new.removeprefix("--enable-") and old != new


def argv(config: ServerConfig, model_path: str, served_name: str, python: str = "python") -> list[str]:
    """The exact command line that starts vLLM for this config."""
    words = [python, "-m", SERVER_MODULE, "--model", model_path]
    values = dict(config.values)
    if not values.get("served_model_name"):
        values["served_model_name"] = served_name
    for name, flag in flags.catalog().items():
        if not flag.secret:  # secrets go through the environment: secret_env()
            words += flag.argv(values.get(name))
    return words


API_KEY_ENV = "VLLM_API_KEY"
API_KEY_PLACEHOLDER = "<your-key>"


def secret_env(config: ServerConfig) -> dict[str, str]:
    """The environment that carries the config's secrets to vLLM (its API key as VLLM_API_KEY)."""
    key = config.get("api_key")
    return {API_KEY_ENV: str(key)} if key else {}


def command_prefix(config: ServerConfig | None) -> str:
    """What to write before an exported command so it gets the key the same way: a placeholder, never
    the key itself."""
    return f"{API_KEY_ENV}={API_KEY_PLACEHOLDER} " if config is not None and config.get("api_key") else ""


def changed_flags(current: ServerConfig | None, pending: ServerConfig) -> list[str]:
    """Names of flags whose value differs between the running and the pending config."""
    if current is None:
        return [name for name in flags.catalog() if pending.get(name) is not None]
    names = [n for n in flags.catalog() if current.get(n) != pending.get(n)]
    return names + (["model"] if current.model != pending.model else [])


def needs_restart(current: ServerConfig | None, pending: ServerConfig) -> bool:
    if current is None:
        return True
    return any(name == "model" or flags.get(name).restart for name in changed_flags(current, pending))


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def validate(
    config: ServerConfig,
    facts: ModelFacts,
    check_port: bool = True,
    predicted: Sequence[Problem] = (),
) -> list[Problem]:
    """Everything that would make this config fail or be unsafe, found before launching: the one set
    of rules every page and the CLI use. `predicted` are the memory arithmetic's problems (pages pass
    them); they are merged so that each flag gets one problem and one fix, and every fix offered
    passes these same checks."""
    problems = _checks(config, facts, check_port)
    if problems and problems[0].code in ("out_of_range", "unknown_flag", "bad_choice"):
        return problems
    return _one_fix_per_flag(config, facts, [*problems, *predicted])


def _checks(config: ServerConfig, facts: ModelFacts, check_port: bool) -> list[Problem]:
    problems: list[Problem] = []
    for name, value in config.values.items():
        try:
            flags.get(name).coerce(value)
        except flags.FlagValueError as exc:
            problems.append(_out_of_range(exc))
        except KeyError:
            problems.append(Problem("unknown_flag", N_("Unknown setting {name}."), None, {"name": name}))
    if problems:
        return problems
    problems += _fit_problems(config, facts)
    problems += _length_problems(config, facts)
    problems += _hardware_problems(config, facts)
    problems += _door_problems(config)
    port = config.get("port")
    if check_port and port is not None and not port_is_free(int(port)):
        problems.append(
            Problem(
                "port_busy",
                N_("Port {port} is already taken by another program. Pick another port."),
                "port",
                {"port": port},
                suggestion=next_free_port(int(port)),
            )
        )
    return problems


# Lengths: a smaller value satisfies every upper limit at once, so the smallest suggestion wins.
_LOWER_IS_SAFER = {"max_model_len", "kv_cache_memory_gib", "max_num_seqs", "tensor_parallel_size"}


def _one_fix_per_flag(config: ServerConfig, facts: ModelFacts, problems: list[Problem]) -> list[Problem]:
    """Keep one problem per flag (the first one found) whose fix is the value that clears all of them,
    and drop a fix that would itself be refused."""
    merged: dict[str | None, Problem] = {}
    loose: list[Problem] = []
    for problem in problems:
        if problem.flag is None:
            loose.append(problem)
            continue
        kept = merged.get(problem.flag)
        merged[problem.flag] = problem if kept is None else _merge(kept, problem)
    return loose + [_checked_fix(config, facts, problem) for problem in merged.values()]


def _merge(kept: Problem, other: Problem) -> Problem:
    if kept.suggestion is None or (
        other.suggestion is not None
        and kept.flag in _LOWER_IS_SAFER
        and _number(other.suggestion) < _number(kept.suggestion)
    ):
        return replace(kept, suggestion=other.suggestion)
    return kept


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _checked_fix(config: ServerConfig, facts: ModelFacts, problem: Problem) -> Problem:
    if problem.suggestion is None or problem.flag is None:
        return problem
    try:
        fixed = config.with_values({problem.flag: problem.suggestion})
    except (flags.FlagValueError, KeyError, ValueError):
        return replace(problem, suggestion=None)
    if any(p.flag == problem.flag for p in _checks(fixed, facts, check_port=False)):
        return replace(problem, suggestion=None)
    return problem


def _fit_problems(config: ServerConfig, facts: ModelFacts) -> list[Problem]:
    """A model whose weights alone are larger than the machine's memory can never start."""
    if not facts.weights_bytes or not facts.memory_bytes or config.get("quantization"):
        return []
    if facts.weights_bytes <= facts.memory_bytes * 0.9:
        return []
    gib = 1024**3
    return [
        Problem(
            "model_too_big",
            N_(
                "The model {model} needs about {weights} GiB for its weights alone, but this machine has "
                "{total} GiB. Pick a smaller model."
            ),
            None,
            {
                "model": facts.model or config.model,
                "weights": round(facts.weights_bytes / gib, 1),
                "total": round(facts.memory_bytes / gib, 1),
            },
        )
    ]


def _out_of_range(exc: flags.FlagValueError) -> Problem:
    flag = exc.flag
    if flag.kind == "choice":
        return Problem(
            "bad_choice",
            N_("{cli} cannot be {value}. Choose one of: {choices}."),
            flag.name,
            {"cli": flag.cli, "value": exc.value, "choices": ", ".join(flag.choices)},
            suggestion=flag.start_value("cpu") or flag.choices[0],
        )
    low, high = flag.min, flag.max
    suggestion = None
    try:
        number = float(exc.value)
        suggestion = low if low is not None and number < low else high
        if flag.kind == "int" and suggestion is not None:
            suggestion = int(suggestion)
    except (TypeError, ValueError):
        pass
    return Problem(
        "out_of_range",
        N_("{cli} must be between {low} and {high}; {value} is outside that range."),
        flag.name,
        {"cli": flag.cli, "low": f"{low:g}", "high": f"{high:g}", "value": exc.value},
        suggestion=suggestion,
    )


def _length_problems(config: ServerConfig, facts: ModelFacts) -> list[Problem]:
    problems = []
    length = config.get("max_model_len")
    if length is not None and facts.max_model_len and length > facts.max_model_len:
        problems.append(
            Problem(
                "max_model_len_above_model",
                N_("--max-model-len {value} is longer than this model can read ({limit} tokens)."),
                "max_model_len",
                {"value": length, "limit": facts.max_model_len},
                suggestion=facts.max_model_len,
            )
        )
    return problems


def _hardware_problems(config: ServerConfig, facts: ModelFacts) -> list[Problem]:
    problems = []
    tp = config.get("tensor_parallel_size")
    if tp is not None and tp > 1 and tp > facts.gpu_count:
        problems.append(
            Problem(
                "tensor_parallel_too_big",
                N_("--tensor-parallel-size {value} needs {value} GPUs, but this machine has {gpus}."),
                "tensor_parallel_size",
                {"value": tp, "gpus": facts.gpu_count},
                suggestion=max(1, facts.gpu_count),
            )
        )
    if facts.backend == "cpu" and config.get("gpu_memory_utilization") is not None:
        problems.append(
            Problem(
                "no_gpu_memory",
                N_(
                    "This machine has no GPU, so --gpu-memory-utilization has no GPU memory to give. "
                    "Size the warehouse with the KV cache size (GiB) instead."
                ),
                "gpu_memory_utilization",
                {},
                suggestion=None,
            )
        )
    return problems


def _door_problems(config: ServerConfig) -> list[Problem]:
    if config.get("host") == "0.0.0.0" and not config.get("api_key"):
        return [
            Problem(
                "open_door_without_key",
                N_(
                    "Host 0.0.0.0 opens the factory door to the whole network. "
                    "Set an API key first, so only people with the key can place orders."
                ),
                "api_key",
                {},
            )
        ]
    return []


def next_free_port(port: int) -> int | None:
    """The first free port after `port` (within 200), or None."""
    for candidate in range(port + 1, min(port + 200, 65535)):
        if port_is_free(candidate):
            return candidate
    return None
