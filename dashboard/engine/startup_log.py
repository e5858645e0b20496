"""Read a vLLM server's log while it starts: which phase it reached, the numbers it printed, and,
when it fails, the one line that explains why, turned into a Problem that names the flag to move.

Pure logic: no processes, no threads, no clocks unless the caller gives one. Patterns match the
message text, never the `[file.py:N]` tag, so they survive vLLM moving code around.
"""

from __future__ import annotations

import ast
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from dashboard.engine import flags
from dashboard.engine.problems import Problem
from dashboard.i18n import N_

PHASES = (
    "process_start",
    "args_parsed",
    "engine_init",
    "weights_loaded",
    "kv_cache",
    "compile",
    "graph_capture",
    "engine_ready",
    "api_ready",
    "warmup",
    "ready",
)

PHASE_LABELS = {
    "process_start": N_("Process started"),
    "args_parsed": N_("Settings read"),
    "engine_init": N_("Engine starting"),
    "weights_loaded": N_("Model weights loaded"),
    "kv_cache": N_("Warehouse (KV cache) set up"),
    "compile": N_("Compiled (torch.compile)"),
    "graph_capture": N_("CUDA graphs captured"),
    "engine_ready": N_("Engine ready"),
    "api_ready": N_("Web server up"),
    "warmup": N_("Warm-up orders served"),
    "ready": N_("Ready for orders"),
}

TAIL_LINES = 40

# "(EngineCore pid=5352) ERROR 11-24 08:49:30 [core.py:1510] message" -> "message"
_PREFIX = re.compile(
    r"^(?:\((?P<proc>[\w.\-]+) pid=\d+\)\s*)?"
    r"(?:(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+\d\d:\d\d:\d\d(?:\.\d+)?\s+"
    r"(?:\[[^\]]*\]\s*)?)?"
)
_NUMBER = r"(\d[\d,]*(?:\.\d+)?)"


def message_of(line: str) -> str:
    """The message text of a log line, without the process, level, time and file tag."""
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1).strip()


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _int(text: str) -> int:
    return int(_num(text))


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float  # since the process started
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return PHASE_LABELS.get(self.name, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.name, "seconds": round(self.seconds, 3), "detail": dict(self.detail)}


# ---------------------------------------------------------------- phases


def _args(match: re.Match) -> dict[str, Any]:
    try:
        parsed = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return {}
    return {"non_default_args": parsed} if isinstance(parsed, dict) else {}


# (phase, pattern, detail from the match). Several patterns may feed one phase: the first one
# seen records the phase, later ones only add numbers to its detail. Patterns listed in
# _WAITS_FOR_MORE only collect numbers: their phase is recorded by a later line (the KV cache is
# set up once its size in tokens is known), and a start that fails in between never reaches it.
_PHASE_PATTERNS: list[tuple[str, re.Pattern, Callable[[re.Match], dict[str, Any]]]] = [
    ("args_parsed", re.compile(r"non-default args: (\{.*\})"), _args),
    (
        "engine_init",
        re.compile(r"Initializing a V\d+ LLM engine \(v?([^)]+)\)"),
        lambda m: {"vllm_version": m.group(1)},
    ),
    (
        "weights_loaded",
        re.compile(r"Loading weights took " + _NUMBER + r" ?s"),
        lambda m: {"weights_s": _num(m.group(1))},
    ),
    (
        "weights_loaded",
        re.compile(r"Model loading took " + _NUMBER + r" ?GiB(?: memory)? and " + _NUMBER + r" ?s"),
        lambda m: {"weights_gib": _num(m.group(1)), "weights_s": _num(m.group(2))},
    ),
    (
        "kv_cache",
        re.compile(r"Available KV cache memory: " + _NUMBER + r" ?GiB"),
        lambda m: {"kv_cache_gib": _num(m.group(1))},
    ),
    (
        "kv_cache",
        re.compile(r"(Explicitly|Auto) set \(" + _NUMBER + r"/" + _NUMBER + r"\) GiB for KV cache"),
        lambda m: {
            "kv_cache_gib": _num(m.group(2)),
            "memory_total_gib": _num(m.group(3)),
            "kv_cache_sizing": m.group(1).lower(),
        },
    ),
    (
        "kv_cache",
        re.compile(r"KV cache size: " + _NUMBER + r" tokens"),
        lambda m: {"kv_cache_tokens": _int(m.group(1))},
    ),
    (
        "kv_cache",
        re.compile(r"Maximum concurrency for " + _NUMBER + r" tokens per request: " + _NUMBER + r" ?x"),
        lambda m: {"concurrency_tokens": _int(m.group(1)), "max_concurrency": _num(m.group(2))},
    ),
    (
        "compile",
        re.compile(r"torch\.compile (?:took|takes) " + _NUMBER + r" ?s"),
        lambda m: {"compile_s": _num(m.group(1))},
    ),
    (
        "compile",
        re.compile(r"Directly load the compiled graph\(s\).*from the cache, took " + _NUMBER + r" ?s"),
        lambda m: {"compile_s": _num(m.group(1)), "compile_cached": True},
    ),
    ("compile", re.compile(r"^Warming up done\.?$"), lambda m: {}),  # CPU: the compile warm-up ended
    (
        "graph_capture",
        re.compile(r"Graph capturing finished in " + _NUMBER + r" ?secs?, took " + _NUMBER + r" ?GiB"),
        lambda m: {"graph_capture_s": _num(m.group(1)), "graph_gib": _num(m.group(2))},
    ),
    (
        "engine_ready",
        re.compile(r"init engine \(profile, create kv cache, warmup model\) took " + _NUMBER),
        lambda m: {"engine_init_s": _num(m.group(1))},
    ),
    ("api_ready", re.compile(r"Application startup complete"), lambda m: {}),
]

_WAITS_FOR_MORE = ("Available KV cache memory", "GiB for KV cache")

# A number that only helps when nothing better arrives: the checkpoint's size on disk.
_CHECKPOINT = re.compile(r"Checkpoint size: " + _NUMBER + r" ?GiB")


# ---------------------------------------------------------------- failures


_CLI_OF_MEMORY_FLAG = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_memory_gib": "--kv-cache-memory-bytes",
}


def _memory_flag(backend: str | None) -> str:
    return "gpu_memory_utilization" if backend == "cuda" else "kv_cache_memory_gib"


def _kv_too_small(match: re.Match, backend: str | None) -> Problem:
    length, needed, available = _int(match.group(1)), _num(match.group(2)), _num(match.group(3))
    estimate = re.search(r"estimated maximum model length is " + _NUMBER, match.string)
    params = {"max_model_len": length, "needed_gib": needed, "available_gib": available}
    if estimate:
        suggestion = _int(estimate.group(1))
        return Problem(
            "kv_cache_too_small",
            N_(
                "The warehouse (KV cache, {available_gib} GiB) cannot hold even one order as long as "
                "the conveyor ({max_model_len} tokens needs {needed_gib} GiB). Shorten the conveyor: "
                "set --max-model-len to {suggestion} or less, or make the warehouse bigger."
            ),
            "max_model_len",
            {**params, "suggestion": suggestion},
            suggestion=suggestion,
        )
    return Problem(
        "kv_cache_too_small",
        N_(
            "The warehouse (KV cache, {available_gib} GiB) cannot hold even one order as long as "
            "the conveyor ({max_model_len} tokens needs {needed_gib} GiB). Shorten the conveyor "
            "(--max-model-len) or make the warehouse bigger."
        ),
        "max_model_len",
        params,
    )


def _no_cache_memory(match: re.Match, backend: str | None) -> Problem:
    flag = _memory_flag(backend)
    return Problem(
        "no_kv_cache_memory",
        N_(
            "Nothing was left for the warehouse (KV cache) after loading the model. "
            "Give it more memory with {cli}, lower --max-num-batched-tokens, or pick a smaller model."
        ),
        flag,
        {"cli": _CLI_OF_MEMORY_FLAG[flag]},
    )


def _cpu_memory_refused(match: re.Match, backend: str | None) -> Problem:
    available, total = _num(match.group(2)), _num(match.group(3))
    fraction, requested = _num(match.group(4)), _num(match.group(5))
    return Problem(
        "cpu_memory_refused",
        N_(
            "The server wanted {requested_gib} GiB of RAM ({fraction} of {total_gib} GiB) but only "
            "{available_gib} GiB is free. On a CPU, size the warehouse directly: set the KV cache "
            "size (--kv-cache-memory-bytes), for example {suggestion} GiB."
        ),
        "kv_cache_memory_gib",
        {
            "requested_gib": requested,
            "fraction": fraction,
            "total_gib": total,
            "available_gib": available,
            "suggestion": 1.0,
        },
        suggestion=1.0,
    )


def _gpu_memory_not_free(match: re.Match, backend: str | None) -> Problem:
    free, total = _num(match.group(2)), _num(match.group(3))
    fraction, requested = _num(match.group(4)), _num(match.group(5))
    fits = math.floor((free / total - 0.02) * 100) / 100 if total else 0.0
    lowest = flags.get("gpu_memory_utilization").min or 0.01
    suggestion = round(max(lowest, fits), 2) if fits > 0 else None
    return Problem(
        "gpu_memory_not_free",
        N_(
            "The GPU has only {free_gib} of {total_gib} GiB free, less than the {requested_gib} GiB "
            "that --gpu-memory-utilization {fraction} asks for. Lower --gpu-memory-utilization "
            "(for example to {suggestion}) or stop the other programs that use the GPU."
        ),
        "gpu_memory_utilization",
        {
            "free_gib": free,
            "total_gib": total,
            "requested_gib": requested,
            "fraction": fraction,
            "suggestion": suggestion,
        },
        suggestion=suggestion,
    )


def _cuda_oom(match: re.Match, backend: str | None) -> Problem:
    return Problem(
        "cuda_out_of_memory",
        N_(
            "The GPU ran out of memory while starting. Lower --gpu-memory-utilization, "
            "turn on eager mode (--enforce-eager) or pick a smaller model."
        ),
        "gpu_memory_utilization",
    )


def _port_in_use(match: re.Match, backend: str | None) -> Problem:
    port_match = re.search(r"[(\[]'?[\w.:]*'?, (\d+)[)\]]", match.string) or re.search(
        r":(\d{2,5})\b", match.string
    )
    port = int(port_match.group(1)) if port_match else None
    return Problem(
        "port_busy",
        N_("Port {port} is already taken by another program. Pick another port."),
        "port",
        {"port": port if port is not None else "?"},
    )


def _above_model_limit(match: re.Match, backend: str | None) -> Problem:
    value, limit = _int(match.group(1)), _int(match.group(2))
    return Problem(
        "max_model_len_above_model",
        N_("--max-model-len {value} is longer than this model can read ({limit} tokens)."),
        "max_model_len",
        {"value": value, "limit": limit},
        suggestion=limit,
    )


_MODEL_ID_PATTERNS = (
    re.compile(r"([\w.-]+/[\w.-]+) is not a local folder"),
    re.compile(r"huggingface\.co/(?!docs/|models\b|api/)([\w.-]+/[\w.-]+)/resolve"),
    re.compile(r"(?:for|repo_id=|model=)\s*['\"]([\w.-]+/[\w.-]+)['\"]"),
)


def _model_id_in(text: str) -> str:
    for pattern in _MODEL_ID_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return ""


def _hub_unreachable(match: re.Match, backend: str | None) -> Problem:
    model = _model_id_in(match.string)
    if not model:
        return Problem(
            "model_unreachable",
            N_(
                "The model is not on this computer, and Hugging Face cannot be reached to fetch it. "
                "Check the spelling of the name and the network, or pick the built-in model (embedded)."
            ),
        )
    return Problem(
        "model_unreachable",
        N_(
            "The model {model} is not on this computer, and Hugging Face cannot be reached to "
            "fetch it. Check the spelling of the name and the network, or pick the built-in model "
            "(embedded)."
        ),
        None,
        {"model": model},
    )


def _model_missing(match: re.Match, backend: str | None) -> Problem:
    model = _model_id_in(match.string)
    if not model:
        return Problem(
            "model_not_found",
            N_(
                "Hugging Face has no model by that name (or it is private). Check the spelling "
                "(owner/name, for example Qwen/Qwen3-0.6B), or pick the built-in model (embedded)."
            ),
        )
    return Problem(
        "model_not_found",
        N_(
            "There is no model called {model} on Hugging Face (or it is private). Check the spelling "
            "(owner/name, for example Qwen/Qwen3-0.6B), or pick the built-in model (embedded)."
        ),
        None,
        {"model": model},
    )


def _needs_remote_code(match: re.Match, backend: str | None) -> Problem:
    return Problem(
        "needs_remote_code",
        N_(
            "This model brings its own Python code, and the master key (--trust-remote-code) is off. "
            "Turn it on only if you trust the people who made the model."
        ),
        "trust_remote_code",
        suggestion=True,
    )


# Root causes, each recognised by its own text. The first one in the log wins: wrappers come later.
_FAILURE_PATTERNS: list[tuple[re.Pattern, Callable[[re.Match, str | None], Problem]]] = [
    (
        re.compile(r"couldn't connect to '?https?://[\w.]*huggingface|Name or service not known"),
        _hub_unreachable,
    ),
    (
        re.compile(r"Repository Not Found|is not a local folder and is not a valid model identifier"),
        _model_missing,
    ),
    (
        re.compile(r"pass the argument `trust_remote_code=True`|execute the configuration file in that repo"),
        _needs_remote_code,
    ),
    (
        re.compile(
            r"max seq len \((\d+)\), \(" + _NUMBER + r" GiB KV cache is needed, which is larger than "
            r"the available KV cache memory \(" + _NUMBER + r" GiB\)"
        ),
        _kv_too_small,
    ),
    (re.compile(r"No available memory for the cache blocks"), _no_cache_memory),
    (
        re.compile(
            r"Available memory on node (\S+) \(" + _NUMBER + r"/" + _NUMBER + r" GiB\) on startup is less "
            r"than desired CPU memory utilization \(" + _NUMBER + r", " + _NUMBER + r" GiB\)"
        ),
        _cpu_memory_refused,
    ),
    (
        re.compile(
            r"Free memory on device (.+?) \(" + _NUMBER + r"/" + _NUMBER + r" GiB\) on startup is less "
            r"than desired GPU memory utilization \(" + _NUMBER + r", " + _NUMBER + r" GiB\)"
        ),
        _gpu_memory_not_free,
    ),
    (re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|CUDA error: out of memory"), _cuda_oom),
    (re.compile(r"\[Errno 98\]|[Aa]ddress already in use"), _port_in_use),
    (
        re.compile(
            r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len "
            r"\(\w+=" + _NUMBER
        ),
        _above_model_limit,
    ),
]

_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception)(?::|$)")
_WRAPPERS = (
    "See root cause above",
    "Engine core initialization failed",
    "EngineDeadError",
    "EngineCore encountered an issue",
    "Frontend process failed",
    "For further information visit",
    "WorkerProc failed to start",
    "EngineCore failed to start",
)
_NOT_ERRORS = ("Errno 24", "Too many open files", "failed to automatically increase")
_TRACEBACK_WORDS = ("Traceback", "File ", "^", "raise ", "return ", "~")


def _is_exception_line(message: str) -> bool:
    """'ValueError: ...' and the like, but not the wrappers that only point at the root cause."""
    if any(word in message for word in _NOT_ERRORS + _WRAPPERS):
        return False
    return bool(_EXCEPTION_LINE.match(message))


def _is_error_level_line(message: str, raw: str) -> bool:
    """An ERROR line that says something (not a traceback frame, not a wrapper)."""
    if not (" ERROR " in raw or raw.startswith("ERROR")):
        return False
    if any(word in message for word in _NOT_ERRORS + _WRAPPERS) or message.startswith(_TRACEBACK_WORDS):
        return False
    return "(" not in message.split(" ", 1)[0] and not message.endswith((",", "(", "[", "{"))


class _ErrorLines:
    """Remembers the last exception line and the last meaningful ERROR line."""

    def __init__(self) -> None:
        self.exception = ""
        self.error_level = ""

    def see(self, message: str, raw: str) -> None:
        if _is_exception_line(message):
            self.exception = message
        elif _is_error_level_line(message, raw):
            self.error_level = message

    @property
    def best(self) -> str:
        return self.exception or self.error_level


def classify_failure(
    lines: Iterable[str], backend: str | None = None, exit_code: int | None = None
) -> Problem:
    """The Problem behind a failed start, from its log lines (always returns one)."""
    errors = _ErrorLines()
    for line in lines:
        message = message_of(line)
        for pattern, build in _FAILURE_PATTERNS:
            match = pattern.search(message)
            if match:
                return replace(build(match, backend), root_cause=message)
        if message:
            errors.see(message, line)
    return generic_failure(errors.best, exit_code)


def generic_failure(last_error: str, exit_code: int | None) -> Problem:
    if last_error:
        return Problem(
            "engine_failed",
            N_(
                "The server stopped while starting. vLLM's own words are under \u201cRoot cause\u201d: "
                "the last settings you changed are the first suspects."
            ),
            None,
            {"exit_code": exit_code},
            root_cause=last_error,
        )
    return Problem(
        "server_exited",
        N_("The server stopped while starting (exit code {exit_code}) without an error message."),
        None,
        {"exit_code": exit_code},
    )


# ---------------------------------------------------------------- the watcher


class StartupWatcher:
    """Fed the log line by line; remembers the phases reached, their numbers and the failure cause.

    Not thread-safe by itself: one reader thread feeds it, others read copies via `phases()`.
    """

    def __init__(self, started_at: float | None = None, backend: str | None = None, clock=time.time) -> None:
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.backend = backend
        self._phases: dict[str, Phase] = {}
        self._failure: Problem | None = None
        self._errors = _ErrorLines()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._checkpoint_gib: float | None = None
        self._pending: dict[str, dict[str, Any]] = {}  # numbers waiting for their phase
        self.line_count = 0

    # feeding
    def feed(self, line: str, now: float | None = None) -> list[Phase]:
        """Read one log line; returns the phases this line reached for the first time."""
        line = line.rstrip("\r\n")
        self._tail.append(line)
        self.line_count += 1
        message = message_of(line)
        if not message:
            return []
        reached = []
        for name, pattern, detail in _PHASE_PATTERNS:
            match = pattern.search(message)
            if not match:
                continue
            if name not in self._phases and any(words in message for words in _WAITS_FOR_MORE):
                self._pending.setdefault(name, {}).update(detail(match))
            elif self._record(name, detail(match), now):
                reached.append(self._phases[name])
        checkpoint = _CHECKPOINT.search(message)
        if checkpoint:
            self._checkpoint_gib = _num(checkpoint.group(1))
        self._look_for_failure(line, message)
        return reached

    def feed_text(self, text: str) -> list[Phase]:
        reached = []
        for line in text.splitlines():
            reached += self.feed(line)
        return reached

    def mark(self, name: str, now: float | None = None, **detail: Any) -> Phase:
        """Record a phase the log cannot tell (process_start, ready)."""
        self._record(name, detail, now)
        return self._phases[name]

    def _record(self, name: str, detail: dict[str, Any], now: float | None) -> bool:
        existing = self._phases.get(name)
        if existing is not None:
            self._phases[name] = replace(existing, detail={**existing.detail, **detail})
            return False
        seconds = max(0.0, (self.clock() if now is None else now) - self.started_at)
        detail = {**self._pending.pop(name, {}), **detail}
        if name == "weights_loaded" and self._checkpoint_gib is not None:
            detail = {**detail, "checkpoint_gib": self._checkpoint_gib}
        self._phases[name] = Phase(name, seconds, dict(detail))
        return True

    def _look_for_failure(self, line: str, message: str) -> None:
        if self._failure is None:
            for pattern, build in _FAILURE_PATTERNS:
                match = pattern.search(message)
                if match:
                    self._failure = replace(build(match, self.backend), root_cause=message)
                    return
        self._errors.see(message, line)

    # reading
    def phases(self) -> list[Phase]:
        """Reached phases, in the order they happened."""
        return sorted(self._phases.values(), key=lambda p: (p.seconds, PHASES.index(p.name)))

    def reached(self, name: str) -> bool:
        return name in self._phases

    def phase(self, name: str) -> Phase | None:
        return self._phases.get(name)

    def details(self) -> dict[str, Any]:
        """All numbers the log gave, merged (kv_cache_tokens, max_concurrency, weights_s, ...)."""
        merged: dict[str, Any] = {}
        for pending in self._pending.values():
            merged.update(pending)
        for phase in self.phases():
            merged.update(phase.detail)
        weights = self._phases.get("weights_loaded")
        if "weights_gib" not in merged and weights is not None and "checkpoint_gib" in weights.detail:
            merged["weights_gib"] = weights.detail["checkpoint_gib"]
        return merged

    def tail(self, count: int = TAIL_LINES) -> list[str]:
        return list(self._tail)[-count:]

    @property
    def failure(self) -> Problem | None:
        """A recognised root cause seen so far (None while nothing went wrong)."""
        return self._failure

    def problem(self, exit_code: int | None = None) -> Problem:
        """The best explanation of a failed start from everything read so far."""
        if self._failure is None:
            return generic_failure(self._errors.best, exit_code)
        if self._failure.code == "port_busy" and self._failure.params.get("port") == "?":
            return replace(self._failure, params={**self._failure.params, "port": self._requested_port()})
        return self._failure

    def _requested_port(self) -> int:
        """The port the server was asked to use (vLLM's default 8000 when not given)."""
        args = self._phases.get("args_parsed")
        requested = (args.detail.get("non_default_args") or {}) if args else {}
        return int(requested.get("port", 8000))


def parse_log(text: str, backend: str | None = None) -> StartupWatcher:
    """Parse a whole finished log (elapsed seconds are meaningless here: all lines arrive at once)."""
    watcher = StartupWatcher(started_at=0.0, backend=backend, clock=lambda: 0.0)
    watcher.feed_text(text)
    return watcher
