"""Lessons as data: one TOML file per lesson in configs/lessons/, read and checked here (no Streamlit).

A lesson has an id, a title and a summary in Vietnamese and English, and steps. Each step moves one
flag of the catalog between two values and asks the class a question before the factory measures:

    id = "lanes"
    title = { vi = "...", en = "..." }
    summary = { vi = "...", en = "..." }

    [[step]]
    flag = "max_num_seqs"                       # a flag of configs/flags.toml
    values = { "*" = [2, 16] }                  # before, after; per backend ("cpu", "cuda" or "*")
    ask = "speed"                               # speed: faster/slower/same; memory: more/less/same
    metric = "e2e_ms"                           # the figure the reveal compares (see METRICS)
    workload = "many_at_once"                   # a [workload.NAME] of configs/effects.toml
    orders = 16                                 # orders per value
    question = { vi = "...", en = "..." }
    explanation = { vi = "...", en = "..." }    # shown at the reveal

`load_lesson(path)` raises LessonError, whose Problem says in the reader's language what to change.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.engine import flags
from dashboard.engine.problems import Problem
from dashboard.i18n import N_, normalize

LESSONS_DIR = Path(__file__).resolve().parents[2] / "configs" / "lessons"
LANGS = ("vi", "en")
ASKS = ("speed", "memory")


@dataclass(frozen=True)
class Metric:
    """A figure a step can compare: where it comes from in a measured row and which way is better."""

    name: str
    row_key: str  # the key of a sweep row (dashboard.measure.sweep.SweepRow)
    ask: str  # "speed" (a time or a rate) or "memory"
    lower_is_faster: bool = True  # speed only: a time (True) or a rate (False)
    scale: float = 1.0  # row value x scale = the shown value
    unit: str = ""
    samples_key: str = ""  # the row's per-order figures behind it (SweepRow.samples), where there are any


METRICS: dict[str, Metric] = {
    "e2e_ms": Metric("e2e_ms", "e2e_p50_ms", "speed", unit="ms", samples_key="e2e_ms"),
    "ttft_ms": Metric("ttft_ms", "ttft_p50_ms", "speed", unit="ms", samples_key="ttft_ms"),
    "tpot_ms": Metric("tpot_ms", "tpot_p50_ms", "speed", unit="ms", samples_key="tpot_ms"),
    "output_tokens_per_s": Metric(
        "output_tokens_per_s", "output_tokens_per_s", "speed", lower_is_faster=False, unit="tokens/s"
    ),
    "memory_gib": Metric("memory_gib", "process_rss_bytes", "memory", scale=1 / 1024**3, unit="GiB"),
    "kv_cache_tokens": Metric("kv_cache_tokens", "kv_cache_tokens", "memory", unit="tokens"),
}


class LessonError(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text("en"))
        self.problem = problem


def _problem(message: str, **params: Any) -> LessonError:
    return LessonError(Problem("bad_lesson", message, params={k: str(v) for k, v in params.items()}))


@dataclass(frozen=True)
class Text:
    vi: str
    en: str

    def get(self, lang: str | None) -> str:
        return self.vi if normalize(lang) == "vi" else self.en


@dataclass(frozen=True)
class LessonStep:
    flag: str
    values: Mapping[str, tuple[Any, Any]]  # backend or "*" -> (before, after)
    ask: str
    metric: str
    workload: str
    orders: int
    question: Text
    explanation: Text

    def values_for(self, backend: str) -> tuple[Any, Any] | None:
        """(before, after) on this backend, or None when the step does not apply there."""
        return self.values.get(backend) or self.values.get("*")

    @property
    def measured_by(self) -> Metric:
        return METRICS[self.metric]


@dataclass(frozen=True)
class Lesson:
    id: str
    title: Text
    summary: Text
    steps: tuple[LessonStep, ...]
    path: Path | None = None

    def steps_for(self, backend: str) -> list[tuple[int, LessonStep]]:
        """(index, step) of the steps that apply on this backend."""
        return [(i, step) for i, step in enumerate(self.steps) if step.values_for(backend) is not None]


# ------------------------------------------------------------------------------------------ reading


def _text(data: Mapping[str, Any], key: str, where: str) -> Text:
    value = data.get(key)
    if not isinstance(value, Mapping) or any(not str(value.get(lang, "")).strip() for lang in LANGS):
        raise _problem(
            N_("{where}: '{key}' needs a Vietnamese and an English text (vi and en)."), where=where, key=key
        )
    return Text(vi=str(value["vi"]).strip(), en=str(value["en"]).strip())


def _values(data: Mapping[str, Any], flag: flags.Flag, where: str) -> dict[str, tuple[Any, Any]]:
    raw = data.get("values")
    if not isinstance(raw, Mapping) or not raw:
        raise _problem(
            N_("{where}: 'values' needs two values per backend, like {example}."),
            where=where,
            example='values = { "*" = [2, 16] }',
        )
    found: dict[str, tuple[Any, Any]] = {}
    for backend, pair in raw.items():
        if backend not in ("*", "cpu", "cuda"):
            raise _problem(
                N_("{where}: unknown backend '{backend}' (use cpu, cuda or *)."), where=where, backend=backend
            )
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise _problem(
                N_("{where}: give exactly two values (before, after) for '{backend}'."),
                where=where,
                backend=backend,
            )
        try:
            before, after = (flag.coerce(value) for value in pair)
        except (flags.FlagValueError, ValueError, TypeError) as exc:
            raise _problem(
                N_("{where}: a value of {flag} is not allowed: {reason}"),
                where=where,
                flag=flag.cli,
                reason=exc,
            ) from exc
        if before == after:
            raise _problem(
                N_("{where}: the two values of {flag} are the same; nothing would change."),
                where=where,
                flag=flag.cli,
            )
        found[backend] = (before, after)
    return found


def _step(data: Mapping[str, Any], where: str, workloads: Sequence[str]) -> LessonStep:
    name = str(data.get("flag", ""))
    try:
        flag = flags.get(name)
    except KeyError as exc:
        raise _problem(N_("{where}: '{flag}' is not a flag of the catalog."), where=where, flag=name) from exc
    if flag.secret or name in ("trust_remote_code", "host", "port", "api_key"):
        raise _problem(N_("{where}: a lesson cannot measure {flag}."), where=where, flag=flag.cli)
    metric = str(data.get("metric", ""))
    if metric not in METRICS:
        raise _problem(
            N_("{where}: metric '{metric}' is unknown; use one of: {known}."),
            where=where,
            metric=metric,
            known=", ".join(METRICS),
        )
    ask = str(data.get("ask", METRICS[metric].ask))
    if ask not in ASKS or ask != METRICS[metric].ask:
        raise _problem(
            N_("{where}: ask '{ask}' does not fit metric '{metric}'."), where=where, ask=ask, metric=metric
        )
    workload = str(data.get("workload", ""))
    if workload not in workloads:
        raise _problem(
            N_("{where}: workload '{workload}' is not in configs/effects.toml; use one of: {known}."),
            where=where,
            workload=workload,
            known=", ".join(workloads),
        )
    orders = data.get("orders", 8)
    if not isinstance(orders, int) or not 1 <= orders <= 256:
        raise _problem(N_("{where}: 'orders' must be a whole number from 1 to 256."), where=where)
    return LessonStep(
        flag=name,
        values=_values(data, flag, where),
        ask=ask,
        metric=metric,
        workload=workload,
        orders=orders,
        question=_text(data, "question", where),
        explanation=_text(data, "explanation", where),
    )


def known_workloads() -> list[str]:
    from dashboard.measure import table

    return list(table.workloads())


def parse_lesson(text: str, name: str = "lesson", workloads: Sequence[str] | None = None) -> Lesson:
    """A lesson from TOML text; LessonError says what to change."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _problem(N_("{where} is not valid TOML: {reason}"), where=name, reason=exc) from exc
    lesson_id = str(data.get("id", "")).strip()
    if not lesson_id or not lesson_id.replace("_", "").replace("-", "").isalnum():
        raise _problem(N_("{where}: 'id' must be a short name of letters, digits, - or _."), where=name)
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise _problem(N_("{where}: a lesson needs at least one [[step]]."), where=name)
    names = list(workloads) if workloads is not None else known_workloads()
    return Lesson(
        id=lesson_id,
        title=_text(data, "title", name),
        summary=_text(data, "summary", name),
        steps=tuple(_step(step, f"{name}, step {i + 1}", names) for i, step in enumerate(steps)),
    )


def load_lesson(path: Path) -> Lesson:
    lesson = parse_lesson(path.read_text(encoding="utf-8"), path.name)
    return Lesson(lesson.id, lesson.title, lesson.summary, lesson.steps, path)


def all_lessons(folder: Path = LESSONS_DIR) -> dict[str, Lesson]:
    """Every lesson of the folder, by id, in file-name order. A broken file raises LessonError."""
    found: dict[str, Lesson] = {}
    for path in sorted(folder.glob("*.toml")):
        lesson = load_lesson(path)
        if lesson.id in found:
            raise _problem(
                N_("{where}: the id '{id}' is used by another lesson too."), where=path.name, id=lesson.id
            )
        found[lesson.id] = lesson
    return found
