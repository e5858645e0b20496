"""The search: an Optuna study over the space, made aware of what a restart costs.

Order of work
1. The starting settings (the baseline), then every alternative value alone ("one at a time"):
   request-side options first, on the server that is already running; the rest ordered so that a
   running or warm server is used before a cold one is started.
2. When the one-at-a-time list is done, the values that beat the baseline alone are tried together
   (each knob at its best value), since small gains add up; then Optuna's TPE sampler proposes
   combinations. Each new server config also gets the request-side variants while it runs.
3. Every trial starts with a few requests. A candidate whose fastest answer is slower than 90% of the
   best's answers is stopped there (Optuna's "pruned"); the others get more requests.
4. With the time left (a share of the budget is kept for it), the best three and the baseline are
   measured again with enough requests for a confidence interval. A setting is called better only
   when its interval and the baseline's do not overlap.
5. That confirmation is interleaved: its requests are sent in rounds, every candidate once per round,
   in a serpentine order (A B C, then C B A), when going back to a server is cheap (a warm server of
   the carousel, or request options on the running one). A machine's speed can drift by tens of
   percent within minutes (seen on a lent H200 host: the same settings took 47 ms, then 64 ms, ten
   minutes apart); measured in turns, every candidate meets the same moments, and the baseline's
   spread across rounds shows how much the machine itself moved.

Every trial is written to the history the moment it is measured and kept in the study's SQLite file
(Optuna's RDB storage), so a stopped or crashed run resumes where it was: the same question opens the
same study, and trials already measured are not measured again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from dashboard.engine.config import SERVER_MODULE, ModelFacts, ServerConfig
from dashboard.engine.report import mask_config
from dashboard.measure import loadgen, metrics
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.tune import intervals
from dashboard.tune.intervals import Estimate
from dashboard.tune.question import THROUGHPUT, TuneQuestion
from dashboard.tune.space import SearchSpace, check_config, params_key, workload_with

EventCallback = Callable[[str, dict[str, Any]], None]  # ("trial" | "phase" | "confirm", data)
MEASURED, STOPPED_EARLY, FAILED, REFUSED = "measured", "stopped_early", "failed", "refused"
SEARCH, CONFIRM = "search", "confirm"
RECORD_ATTR = "record"
MAX_DUPLICATES = 25  # proposals in a row that were all measured before: the space is used up
MIN_TURN_REQUESTS = 3  # a confirmation turn smaller than this tells nothing alone


class ServerLike(Protocol):  # ServerManager, or the carousel of warm servers
    def restart(self, config: ServerConfig, wait: bool = True, timeout: float = 600) -> Any: ...

    @property
    def base_url(self) -> str: ...

    @property
    def served_name(self) -> str: ...

    @property
    def api_key(self) -> str | None: ...


@dataclass(frozen=True)
class TuneSettings:
    """How many requests each step sends, and how the time budget is shared."""

    screen_requests: int = 5  # first look at every candidate
    more_requests: int = 10  # added for the candidates that survive the first look
    confirm_requests: int = 20  # the best three and the baseline, again, for an interval
    confirm_rounds: int = 2  # the confirmation's requests, sent in this many interleaved turns
    warmup: int = 2  # after a (re)start, left out
    confirm_top: int = 3
    confirm_share: float = 0.3  # of the time budget kept for the confirmation
    start_timeout_s: float = 600.0
    seed: int = 0
    max_trials: int | None = None

    @classmethod
    def for_backend(cls, backend: str, **changes: Any) -> TuneSettings:
        """A GPU answers in tens of milliseconds, so it can afford many more requests per trial, and
        short confirmation turns (about half a second each): a lent H200 host was seen slowing by a
        third for eight seconds and coming back (docs/results/h200.md, "One host, several speeds")."""
        if backend == "cuda":
            base = cls(screen_requests=10, more_requests=30, confirm_requests=60, confirm_rounds=6, warmup=3)
        else:
            base = cls()
        return cls(**{**asdict(base), **changes})


@dataclass
class Batch:
    """One measurement of a trial: what each answer took and said."""

    e2e_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)  # per answer: (e2e - ttft) / (tokens - 1)
    texts: list[str] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    requests_per_s: float | None = None
    queue_ms: float | None = None  # mean time waiting in vLLM's queue (from /metrics), when known
    errors: int = 0
    error_text: str = ""

    def merge(self, other: Batch) -> Batch:
        rates = [r for r in (self.requests_per_s, other.requests_per_s) if r is not None]
        queues = [q for q in (self.queue_ms, other.queue_ms) if q is not None]
        return Batch(
            e2e_ms=self.e2e_ms + other.e2e_ms,
            ttft_ms=self.ttft_ms + other.ttft_ms,
            itl_ms=self.itl_ms + other.itl_ms,
            texts=self.texts + other.texts,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            requests_per_s=sum(rates) / len(rates) if rates else None,
            queue_ms=sum(queues) / len(queues) if queues else None,
            errors=self.errors + other.errors,
            error_text=self.error_text or other.error_text,
        )


Measure = Callable[[ServerLike, Workload, LoadPlan, "threading.Event | None"], Batch]


def measure_load(
    server: ServerLike, workload: Workload, plan: LoadPlan, stop: threading.Event | None
) -> Batch:
    """Send the plan's requests to the running server with the load generator (the real measurement)."""
    before = metrics.try_scrape(server.base_url)
    load = loadgen.run_load(server.base_url, server.served_name, workload, plan, server.api_key, stop=stop)
    after = metrics.try_scrape(server.base_url)
    good = [t for t in load.timings if t.ok]
    queue = None
    if before is not None and after is not None:
        delta = metrics.histogram_delta(before, after, metrics.QUEUE)
        queue = delta.mean_ms() if delta is not None else None
    return Batch(
        e2e_ms=[t.e2e_ms for t in good],
        ttft_ms=[t.ttft_ms for t in good if t.ttft_ms is not None],
        itl_ms=[v for v in (t.mean_itl_ms() for t in good) if v is not None],
        texts=[t.text for t in good],
        completion_tokens=[t.completion_tokens for t in good if t.completion_tokens is not None],
        requests_per_s=load.requests_per_s,
        queue_ms=queue,
        errors=load.errors,
        error_text="; ".join(load.error_kinds)[:300],
    )


# ---------------------------------------------------------------------------------------------- figures


def normalized_answer(text: str) -> str:
    """The answer's meaning: parsed JSON written one way (so spacing alone is no change), else stripped."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    except (ValueError, TypeError):
        return text.strip()


def figures_of(batch: Batch) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for metric in ("e2e", "ttft", "itl"):
        values = getattr(batch, f"{metric}_ms")
        for pct in (50, 90):
            figures[f"p{pct}-{metric}"] = intervals.percentile_estimate(values, pct).to_dict()
    rates = [batch.requests_per_s] if batch.requests_per_s is not None else []
    figures[THROUGHPUT] = intervals.mean_estimate(rates).to_dict()
    figures["queue_ms"] = batch.queue_ms
    tokens = batch.completion_tokens
    figures["output_tokens"] = intervals.percentile(tokens, 50) if tokens else None
    figures["answers"] = len(batch.e2e_ms)
    figures["errors"] = batch.errors
    return figures


def goal_estimate(record: Mapping[str, Any], goal_key: str) -> Estimate:
    return Estimate.from_dict((record.get("figures") or {}).get(goal_key))


def meets_limit(record: Mapping[str, Any], question: TuneQuestion) -> bool | None:
    """True/False when the limit is known to be kept or broken (by the point value); None: no figure."""
    if question.limit is None:
        return True
    value = goal_estimate(record, question.limit.key).value
    return None if value is None else value <= question.limit.max_ms


def serve_command(words: list[str]) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server --model M ...` as `vllm serve M ...`."""
    if len(words) >= 5 and words[1:3] == ["-m", SERVER_MODULE] and words[3] == "--model":
        return ["vllm", "serve", words[4], *words[5:]]
    return list(words)


# ---------------------------------------------------------------------------------------------- the tuner


@dataclass
class TuneState:
    """What the page's progress bar shows; replaced, never changed in place, so any thread may read it."""

    phase: str = "starting"  # starting | search | confirm | done | stopped
    trials_done: int = 0
    trials_planned: int = 0
    best_value: float | None = None
    best_changes: dict[str, Any] = field(default_factory=dict)
    seconds_left: float = 0.0
    message: str = ""


class Tuner:
    def __init__(
        self,
        question: TuneQuestion,
        space: SearchSpace,
        server: ServerLike,
        workload: Workload,
        *,
        facts: ModelFacts,
        storage_path: Path,
        settings: TuneSettings | None = None,
        store: Any = None,  # a HistoryStore (rows are added as they are measured), or None
        run_id: int | None = None,
        measure: Measure = measure_load,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
        on_event: EventCallback | None = None,
        shape: Any = None,
    ) -> None:
        self.question, self.space, self.server, self.workload = question, space, server, workload
        self.facts, self.shape = facts, shape
        self.settings = settings or TuneSettings.for_backend(question.backend)
        self.store, self.run_id = store, run_id
        self.measure, self.clock = measure, clock
        self.stop = stop or threading.Event()
        self.on_event = on_event
        self.goal = question.goal
        self.storage_path = Path(storage_path)
        self.records: dict[str, dict[str, Any]] = {}  # params key -> search record
        self.confirmed: dict[str, dict[str, Any]] = {}  # params key -> confirm record
        self.failed_servers: set[tuple] = set()
        self.current: ServerConfig | None = None
        self.starts: dict[str, int] = {}
        self.start_seconds: list[float] = []
        self.resumed = 0
        self.state = TuneState()
        self._started = 0.0
        self._deadline = 0.0
        self._search_deadline = 0.0
        self.study = self._open_study()
        self.distributions = {k.name: CategoricalDistribution(list(k.values)) for k in space.knobs}

    # --- study ---------------------------------------------------------------------------------

    def _open_study(self) -> optuna.Study:
        self.storage_path.parent.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction = "minimize" if self.goal.lower_is_better else "maximize"
        study = optuna.create_study(
            storage=f"sqlite:///{self.storage_path}",
            study_name=self.question.study_name(),
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=self.settings.seed, n_startup_trials=4),
            load_if_exists=True,
        )
        for trial in study.get_trials(deepcopy=False):
            record = trial.user_attrs.get(RECORD_ATTR)
            if record and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                self.records[params_key(record["params"])] = dict(record)
            elif trial.state == TrialState.RUNNING:  # cut off by a crash or a kill: never measured
                with contextlib.suppress(Exception):
                    study.tell(trial.number, state=TrialState.FAIL)
        self.resumed = len(self.records)
        return study

    # --- running -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Search, confirm, and return the report (see report.build_report for its keys)."""
        from dashboard.tune.report import build_report

        self._started = self.clock()
        budget = self.question.minutes * 60.0
        self._deadline = self._started + budget
        self._search_deadline = self._started + budget * (1 - self.settings.confirm_share)
        planned = self.space.one_at_a_time(self.question.allow_changed_answers)
        pending = [p for p in planned if params_key(p) not in self.records]
        self._update(phase=SEARCH, planned=len(self.records) + len(pending))
        self._search(pending)
        if not self.stop.is_set():
            self._update(phase=CONFIRM)
            self._confirm()
        stopped = self.stop.is_set()
        self._update(phase="stopped" if stopped else "done")
        return build_report(self, stopped=stopped, duration_s=self.clock() - self._started)

    def _search(self, pending: list[dict[str, Any]]) -> None:
        duplicates = 0
        combined = False
        while not self._search_over():
            if not pending and not combined:
                combined = True
                pending = self.winners_combined()
            if pending:
                params = self._pick(pending)
                pending.remove(params)
                if (
                    params_key(params) in self.records
                    or self.space.server_part(params) in self.failed_servers
                    or not self._affordable(params)
                ):
                    continue
                self.study.enqueue_trial(params, skip_if_exists=False)
            elif len(self.records) >= self.space.size() or duplicates >= MAX_DUPLICATES:
                return
            else:
                params = None
            trial = self.study.ask(self.distributions)
            params = dict(trial.params)
            key = params_key(params)
            if key in self.records:  # the sampler proposed a config measured before: reuse its figure
                duplicates += 1
                self._tell_again(trial, self.records[key])
                continue
            duplicates = 0
            if not self._affordable(params):  # a cold start that the search time left cannot pay for
                self.study.tell(trial, state=TrialState.FAIL)
                return
            new_server = not any(
                self.space.server_part(r["params"]) == self.space.server_part(params)
                for r in self.records.values()
            )
            record = self._run_trial(trial, params)
            if new_server and record["state"] in (MEASURED,) and self.space.request_knobs:
                pending[:0] = self._request_variants(params)

    def winners_combined(self) -> list[dict[str, Any]]:
        """Every knob at the value that beat the baseline most when tried alone, all together (when at
        least two knobs did); empty when there is nothing to combine or it was measured already."""
        base = self.space.baseline_params()
        base_record = self.records.get(params_key(base))
        base_value = goal_estimate(base_record, self.goal.key).value if base_record else None
        if base_value is None:
            return []
        sign = 1 if self.goal.lower_is_better else -1
        best: dict[str, tuple[float, Any]] = {}
        for record in self.records.values():
            value = goal_estimate(record, self.goal.key).value
            if len(record["changes"]) != 1 or not self.eligible(record) or value is None:
                continue
            ((name, moved),) = record["changes"].items()
            if sign * value < sign * base_value and (name not in best or sign * value < sign * best[name][0]):
                best[name] = (value, moved)
        if len(best) < 2:
            return []
        candidate = {**base, **{name: value for name, (_, value) in best.items()}}
        return [] if params_key(candidate) in self.records else [candidate]

    def _search_over(self) -> bool:
        if self.stop.is_set() or self.clock() >= self._search_deadline:
            return True
        limit = self.settings.max_trials
        return limit is not None and len(self.records) >= limit

    def _pick(self, pending: list[dict[str, Any]]) -> dict[str, Any]:
        """The next planned trial: the running server first, then a warm one, then the list's order;
        a cold start is skipped when the search time left cannot pay for it."""
        running = [p for p in pending if self._is_running(p)]
        if running:
            return running[0]
        warm = [p for p in pending if self._is_warm(p)]
        if warm:
            return warm[0]
        return pending[0]

    def _affordable(self, params: Mapping[str, Any]) -> bool:
        """A cold start fits in the search time left (judged by the starts seen so far)."""
        if self._reachable(params):
            return True
        expected = sorted(self.start_seconds)[len(self.start_seconds) // 2] if self.start_seconds else 0.0
        return self.clock() + expected < self._search_deadline

    def _is_running(self, params: Mapping[str, Any]) -> bool:
        return self.current is not None and self.space.server_config(params) == self.current

    def _is_warm(self, params: Mapping[str, Any]) -> bool:
        is_warm = getattr(self.server, "is_warm", None)
        if not callable(is_warm):
            return False
        try:
            return bool(is_warm(self.space.server_config(params)))
        except Exception:
            return False

    def _request_variants(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """While a new server runs: the request-side values of the best trial so far, if they differ."""
        best = self.best_record(SEARCH)
        if best is None:
            return []
        names = [k.name for k in self.space.request_knobs]
        candidate = {**params, **{n: best["params"].get(n) for n in names if n in best["params"]}}
        if candidate == dict(params) or params_key(candidate) in self.records:
            return []
        return [candidate]

    def _tell_again(self, trial: optuna.Trial, record: Mapping[str, Any]) -> None:
        value = goal_estimate(record, self.goal.key).value
        if record["state"] == MEASURED and value is not None:
            self.study.tell(trial, value)
        else:
            self.study.tell(
                trial, state=TrialState.PRUNED if record["state"] == STOPPED_EARLY else TrialState.FAIL
            )

    # --- one trial -----------------------------------------------------------------------------

    def _run_trial(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        record = self._new_record(params, SEARCH, trial.number)
        config = self.space.server_config(params)
        reasons = check_config(config, self.facts, self.question.memory_gib, self.shape)
        if reasons:
            record.update(state=REFUSED, error="; ".join(reasons))
            return self._finish_trial(trial, record)
        if not self._ensure_server(config, record):
            self.failed_servers.add(self.space.server_part(params))
            return self._finish_trial(trial, record)
        workload = workload_with(self.workload, self.space.request_options(params))
        warmup = self.settings.warmup if record.get("server_start") else 1
        batch = self._measure(workload, self.settings.screen_requests, warmup)
        if batch is None or not batch.e2e_ms:
            record.update(state=FAILED, error=(batch.error_text if batch else "") or "no answer came back")
            return self._finish_trial(trial, record)
        if self._clearly_worse(batch):
            self._fill(record, batch)
            record["state"] = STOPPED_EARLY
            return self._finish_trial(trial, record)
        more = self._measure(workload, self.settings.more_requests, 0)
        if more is not None:
            batch = batch.merge(more)
        self._fill(record, batch)
        record["state"] = MEASURED
        return self._finish_trial(trial, record)

    def _new_record(self, params: Mapping[str, Any], phase: str, number: int | None) -> dict[str, Any]:
        config = self.space.server_config(params)
        options = self.space.request_options(params)
        return {
            "number": number,
            "phase": phase,
            "params": dict(params),
            "changes": self.space.changes(params),
            "config": mask_config(config),
            "request_fields": options.body_fields(self.space.request),
            "state": FAILED,
            "error": None,
            "server_start": None,
            "command": [],
            "figures": {},
            "answers": [],
            "answer_matches": None,
            "meets_limit": None,
            "samples": {},
            "at_s": round(self.clock() - self._started, 1),
        }

    def _ensure_server(self, config: ServerConfig, record: dict[str, Any]) -> bool:
        if self.current == config:
            record["command"] = self._command
            return True
        began = self.clock()
        report = self.server.restart(config, wait=True, timeout=self.settings.start_timeout_s)
        seconds = self.clock() - began
        start = getattr(report, "server_start", None) or {
            "kind": "cold",
            "ready_s": getattr(report, "ready_s", None),
        }
        record["server_start"] = dict(start)
        record["server_start"]["wall_s"] = round(seconds, 1)
        self.starts[start.get("kind", "cold")] = self.starts.get(start.get("kind", "cold"), 0) + 1
        self.start_seconds.append(seconds)
        if not getattr(report, "ok", False):
            error = getattr(report, "error", None)
            record["error"] = error.text("en") if error is not None else "the server did not start"
            record["error_vi"] = error.text("vi") if error is not None else "máy chủ không khởi động được"
            record["state"] = FAILED
            self.current = None
            return False
        self.current = config
        self._command = serve_command(list(getattr(report, "command", []) or []))
        record["command"] = self._command
        return True

    _command: list[str] = []

    def _measure(self, workload: Workload, requests: int, warmup: int) -> Batch | None:
        load = self.question.load
        plan = LoadPlan(
            concurrency=load.concurrency,
            rate=load.rate,
            requests=max(1, requests),
            warmup=warmup,
            timeout_s=120.0,
        )
        try:
            return self.measure(self.server, workload, plan, self.stop)
        except Exception as exc:  # the load test itself broke: the trial fails, the search goes on
            return Batch(error_text=f"{type(exc).__name__}: {exc}")

    def _clearly_worse(self, batch: Batch) -> bool:
        """After the first look: even this candidate's fastest answer is slower than 90% of the best's."""
        best = self.best_record(SEARCH)
        if best is None:
            return False
        if self.goal.metric == THROUGHPUT:
            best_rate = goal_estimate(best, THROUGHPUT).value
            return bool(
                best_rate and batch.requests_per_s is not None and batch.requests_per_s < 0.7 * best_rate
            )
        samples = getattr(batch, f"{self.goal.metric}_ms")
        best_p90 = goal_estimate(best, f"p90-{self.goal.metric}").value
        return bool(samples and best_p90 is not None and min(samples) > best_p90)

    def _fill(self, record: dict[str, Any], batch: Batch) -> None:
        record["figures"] = figures_of(batch)
        record["samples"] = {
            "e2e_ms": [round(v, 2) for v in batch.e2e_ms],
            "ttft_ms": [round(v, 2) for v in batch.ttft_ms],
            "itl_ms": [round(v, 3) for v in batch.itl_ms],
            "completion_tokens": list(batch.completion_tokens),
        }
        record["answers"] = sorted({normalized_answer(t) for t in batch.texts})[:5]
        record["meets_limit"] = meets_limit(record, self.question)
        record["answer_matches"] = self._answer_matches(record)

    def _answer_matches(self, record: Mapping[str, Any]) -> bool | None:
        baseline = self.records.get(params_key(self.space.baseline_params()))
        if record["params"] == self.space.baseline_params():
            return True
        if baseline is None or not baseline.get("answers"):
            return None
        return set(record["answers"]) == set(baseline["answers"])

    def _finish_trial(self, trial: optuna.Trial, record: dict[str, Any]) -> dict[str, Any]:
        record["at_s"] = round(self.clock() - self._started, 1)
        trial.set_user_attr(RECORD_ATTR, record)
        value = goal_estimate(record, self.goal.key).value
        if record["state"] == MEASURED and value is not None:
            self.study.tell(trial, value)
        elif record["state"] == STOPPED_EARLY and value is not None:
            trial.report(value, step=0)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
        self.records[params_key(record["params"])] = record
        self._save(record)
        return record

    def _save(self, record: dict[str, Any]) -> None:
        if self.store is not None and self.run_id is not None:
            with contextlib.suppress(Exception):  # the history is a copy; a locked file must not stop us
                self.store.add_row(self.run_id, record)
        best = self.best_record(SEARCH)
        self._update(
            done=len(self.records),
            best_value=goal_estimate(best, self.goal.key).value if best else None,
            best_changes=dict(best["changes"]) if best else {},
        )
        self._emit("trial", record)

    # --- confirmation --------------------------------------------------------------------------

    def _confirm(self) -> None:
        baseline_key = params_key(self.space.baseline_params())
        leaders = [r for r in self.ranked(SEARCH) if params_key(r["params"]) != baseline_key]
        chosen = self._confirmation_order(
            [self.space.baseline_params()] + [r["params"] for r in leaders[: self.settings.confirm_top]]
        )
        records: dict[str, dict[str, Any]] = {}
        batches: dict[str, Batch] = {}
        for turn, requests in enumerate(self._confirm_turns(chosen)):
            order = chosen if turn % 2 == 0 else chosen[::-1]  # serpentine: a steady drift hits all alike
            for params in order:
                if self.stop.is_set() or self.clock() >= self._deadline:
                    break
                key = params_key(params)
                if turn > 0 and (key not in batches or not self._reachable(params)):
                    continue  # no start is paid for a later turn; what was measured stays
                if key not in records:
                    records[key] = self._new_record(params, CONFIRM, None)
                record = records[key]
                batch = self._confirm_turn(params, record, requests, visit={} if turn else record)
                if batch is not None:
                    batches[key] = batches[key].merge(batch) if key in batches else batch
                    record.setdefault("turns", []).append(self._turn_figure(turn, batch))
                self._update()
        for key, record in records.items():
            if key in batches:
                self._fill(record, batches[key])
                record["state"] = MEASURED  # an error of a later turn stays: what was measured still counts
            record["at_s"] = round(self.clock() - self._started, 1)
            self.confirmed[key] = record
            if self.store is not None and self.run_id is not None:
                with contextlib.suppress(Exception):
                    self.store.add_row(self.run_id, record)
            self._emit("confirm", record)

    def _confirmation_order(self, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The running server's candidates first, then the warm ones; candidates that share a server
        side by side, so a turn starts or wakes each server once."""
        groups: dict[tuple[tuple[str, Any], ...], list[dict[str, Any]]] = {}
        for params in sorted(chosen, key=lambda p: (not self._is_running(p), not self._is_warm(p))):
            groups.setdefault(self.space.server_part(params), []).append(params)
        return [params for group in groups.values() for params in group]

    def _confirm_turns(self, chosen: list[dict[str, Any]]) -> list[int]:
        """The confirmation's requests per turn. One turn when going back to a candidate would cost a
        start (no carousel, and more than one server among them), or when a turn would be too small."""
        total = self.settings.confirm_requests
        one_server = len({self.space.server_part(p) for p in chosen}) <= 1
        cheap_returns = one_server or bool(getattr(self.server, "keeps_warm", False))
        turns = max(1, min(self.settings.confirm_rounds, total // MIN_TURN_REQUESTS)) if cheap_returns else 1
        return [total // turns + (1 if i < total % turns else 0) for i in range(turns)]

    def _reachable(self, params: Mapping[str, Any]) -> bool:
        return self._is_running(params) or self._is_warm(params)

    def _confirm_turn(
        self, params: Mapping[str, Any], record: dict[str, Any], requests: int, visit: dict[str, Any]
    ) -> Batch | None:
        """One candidate's share of one turn (a warm-up answer left out); None when nothing came back.
        `visit` receives the start's details: the record itself on the first turn, a scratch dict later."""
        if not self._ensure_server(self.space.server_config(params), visit):
            record["error"] = record.get("error") or visit.get("error")
            return None
        workload = workload_with(self.workload, self.space.request_options(params))
        batch = self._measure(workload, requests, 1)
        if batch is None or not batch.e2e_ms:
            record["error"] = (batch.error_text if batch else "") or "no answer came back"
            return None
        return batch

    def _turn_figure(self, turn: int, batch: Batch) -> dict[str, Any]:
        """The goal's point value in one turn: how the same settings measured at different moments."""
        figures = figures_of(batch)
        return {
            "turn": turn,
            "value": goal_estimate({"figures": figures}, self.goal.key).value,
            "answers": len(batch.e2e_ms),
            "at_s": round(self.clock() - self._started, 1),
        }

    # --- reading the results -------------------------------------------------------------------

    def eligible(self, record: Mapping[str, Any]) -> bool:
        """Measured, inside the limit, and answering like the baseline unless changes are allowed."""
        if record.get("state") != MEASURED or goal_estimate(record, self.goal.key).value is None:
            return False
        if record.get("meets_limit") is False:
            return False
        return self.question.allow_changed_answers or record.get("answer_matches") is not False

    def ranked(self, phase: str) -> list[dict[str, Any]]:
        pool = self.records if phase == SEARCH else self.confirmed
        good = [r for r in pool.values() if self.eligible(r)]
        sign = 1 if self.goal.lower_is_better else -1
        return sorted(good, key=lambda r: sign * (goal_estimate(r, self.goal.key).value or 0))

    def best_record(self, phase: str) -> dict[str, Any] | None:
        ranked = self.ranked(phase)
        return ranked[0] if ranked else None

    # --- progress ------------------------------------------------------------------------------

    def _update(
        self,
        phase: str | None = None,
        planned: int | None = None,
        done: int | None = None,
        best_value: float | None = None,
        best_changes: dict[str, Any] | None = None,
    ) -> None:
        old = self.state
        self.state = TuneState(
            phase=phase or old.phase,
            trials_done=done if done is not None else old.trials_done,
            trials_planned=max(planned if planned is not None else old.trials_planned, done or 0),
            best_value=best_value if best_value is not None else old.best_value,
            best_changes=best_changes if best_changes is not None else old.best_changes,
            seconds_left=max(0.0, self._deadline - self.clock()),
        )
        self._emit("phase", asdict(self.state))

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a broken progress bar must not end the tuning
                self.on_event(kind, data)
