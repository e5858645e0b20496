"""Streamlit glue of the "Tune for me" page: the background job, the question form, the progress and
the result (settings, command, figures beside the baseline and the brief's, the chart of all trials,
the verdict). Chart builders are pure (data in, plotly figure out); only draw_* call st.*.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard.classroom.roles import PRESENTER
from dashboard.engine import presets
from dashboard.engine.config import ServerConfig, default_config
from dashboard.engine.presets import RequestSpec
from dashboard.i18n import N_
from dashboard.measure.loadgen import Workload
from dashboard.tune import question as question_mod
from dashboard.tune.intervals import Estimate
from dashboard.tune.runner import WarmAwareView, run_tune
from dashboard.tune.verdict import knob_text
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles
from dashboard.ui import state

GOALS = ("p50-e2e", "p90-e2e", "p50-ttft", "p90-ttft", "p50-itl", "throughput")
GOAL_NAMES = {
    "p50-e2e": N_("median whole answer (p50)"),
    "p90-e2e": N_("slow whole answers (p90)"),
    "p50-ttft": N_("median first token (p50)"),
    "p90-ttft": N_("slow first tokens (p90)"),
    "p50-itl": N_("median time per token (p50)"),
    "throughput": N_("most answers per second within a limit"),
}
OWN = "own"
FORMATS = ("free", "pika_json", "own_json")
STATE_COLOURS = {"measured": "#0055BF", "stopped_early": "#A0A5A9", "failed": "#C91A09", "refused": "#F2705E"}


# ------------------------------------------------------------------------------------------ the job


@dataclass
class TuneRequest:
    question: question_mod.TuneQuestion
    base: ServerConfig
    workload: Workload


@dataclass
class TuneSnapshot:
    running: bool = False
    started_at: float | None = None
    phase: str = ""
    trials_done: int = 0
    trials_planned: int = 0
    best_value: float | None = None
    best_changes: dict[str, Any] = field(default_factory=dict)
    seconds_left: float = 0.0
    report: dict[str, Any] | None = None
    error: str | None = None
    goal: str = "p50-e2e"


class TuneJob:
    """One tuning at a time per Streamlit server, in a thread that outlives the browser tab."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tuner: Any = None
        self._snap = TuneSnapshot()

    def snapshot(self) -> TuneSnapshot:
        with self._lock:
            snap = self._snap
            tuner = self._tuner
        if snap.running and tuner is not None:
            progress = tuner.state
            unit = snap.goal
            return TuneSnapshot(
                running=True,
                started_at=snap.started_at,
                phase=progress.phase,
                trials_done=progress.trials_done,
                trials_planned=progress.trials_planned,
                best_value=progress.best_value,
                best_changes=dict(progress.best_changes),
                seconds_left=max(0.0, tuner._deadline - tuner.clock()) if tuner._deadline else 0.0,
                goal=unit,
            )
        return snap

    def start(self, request: TuneRequest, manager: Any, store: Any = None) -> bool:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._stop = threading.Event()
            self._tuner = None
            self._snap = TuneSnapshot(running=True, started_at=time.time(), goal=request.question.goal.key)
            self._thread = threading.Thread(
                target=self._run, args=(request, manager, store), name="tune-job", daemon=True
            )
            self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> TuneSnapshot:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    def _run(self, request: TuneRequest, manager: Any, store: Any) -> None:
        previous = getattr(manager.snapshot(), "config", None)
        report, error = None, None
        claim = getattr(manager, "claim", None)  # the carousel: nobody else moves the factory meanwhile
        until = time.time() + request.question.minutes * 60
        held = (
            claim("tune", N_("Tune for me"), who=PRESENTER, until=until)
            if callable(claim)
            else contextlib.nullcontext(manager)
        )
        try:
            with held as server:
                report = run_tune(
                    request.question,
                    request.base,
                    request.workload,
                    WarmAwareView(server),
                    store=store,
                    stop=self._stop,
                    on_tuner=self._attach,
                )
        except Exception as exc:  # shown on the page; the measured trials stay in the history
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if previous is not None:  # put the factory back as the learner left it
                with contextlib.suppress(Exception):
                    manager.restart(previous, wait=False)
            with self._lock:
                self._snap = TuneSnapshot(
                    running=False,
                    started_at=self._snap.started_at,
                    phase="done",
                    report=report,
                    error=error,
                    goal=request.question.goal.key,
                )
                self._tuner = None

    def _attach(self, tuner: Any) -> None:
        with self._lock:
            self._tuner = tuner


@st.cache_resource(show_spinner=False)
def get_job() -> TuneJob:
    return TuneJob()


# ------------------------------------------------------------------------------------------ the question


def own_request(system: str, turns: str, output: str, schema_text: str, max_tokens: int) -> RequestSpec:
    """A request from the learner's own words; a bad JSON schema raises ValueError with a msgid."""
    messages = [{"role": "system", "content": system.strip()}] if system.strip() else []
    users = [line.strip() for line in turns.split("\n") if line.strip()]
    if not users:
        raise ValueError(N_("Write at least one user turn."))
    messages += [{"role": "user", "content": text} for text in users]
    schema = None
    if output == "pika_json":
        schema = presets.get("pika-json").json_schema
    elif output == "own_json":
        try:
            schema = json.loads(schema_text)
        except ValueError:
            raise ValueError(
                N_("The JSON schema is not valid JSON. Check the brackets and quotes.")
            ) from None
        if not isinstance(schema, dict):
            raise ValueError(N_('The JSON schema must be an object, like {"type": "object", ...}.'))
    return RequestSpec(messages=tuple(messages), temperature=0.0, max_tokens=max_tokens, schema=schema)


def base_config(preset_name: str | None, backend: str) -> ServerConfig:
    config = default_config(backend)
    if preset_name:
        config = config.with_values(presets.get(preset_name).flags)
    return config


def draw_question() -> TuneRequest | None:
    """The form; returns the request when the learner presses Start and everything is valid."""
    _ = ui_i18n.translator()
    backend = state.backend()
    preset_names = list(presets.all_presets())
    with st.form("tune.question"):
        st.markdown("**" + _("1. The request") + "**")
        options = [*preset_names, OWN]
        chosen = st.selectbox(
            _("Workload"),
            options,
            index=options.index("pika-json") if "pika-json" in options else 0,
            format_func=lambda n: _("my own request") if n == OWN else _(presets.get(n).title),
            key="tune.preset",
        )
        with st.expander(_("My own request (used when the workload is 'my own request')")):
            system = st.text_area(_("System prompt"), key="tune.system")
            turns = st.text_area(_("User turns (one per line)"), key="tune.turns")
            output = st.radio(
                _("Answer format"),
                FORMATS,
                format_func=lambda f: {
                    "free": _("free text"),
                    "pika_json": _("JSON like Pika's (emotion, learn_score)"),
                    "own_json": _("JSON with my own schema"),
                }[f],
                horizontal=True,
                key="tune.format",
            )
            schema_text = st.text_area(_("JSON schema"), key="tune.schema")
            max_tokens = st.number_input(_("Longest answer (tokens)"), 1, 4096, 50, key="tune.max_tokens")
        st.markdown("**" + _("2. The load and the goal") + "**")
        cols = st.columns(3)
        load_kind = cols[0].radio(
            _("Load"),
            ("one", "many", "rate"),
            format_func=lambda k: {
                "one": _("one at a time"),
                "many": _("N at once"),
                "rate": _("requests per second"),
            }[k],
            key="tune.load",
        )
        amount = cols[0].number_input(_("N or requests per second"), 0.1, 1000.0, 4.0, key="tune.amount")
        goal = cols[1].selectbox(_("Goal"), GOALS, format_func=lambda g: _(GOAL_NAMES[g]), key="tune.goal")
        limit_text = cols[1].text_input(_("Limit (optional)"), placeholder="p90-ttft=50ms", key="tune.limit")
        memory = cols[2].number_input(
            _("Memory budget in GiB (0 = no limit)"), 0.0, 1024.0, 0.0, key="tune.memory"
        )
        minutes = cols[2].slider(_("Time budget (minutes)"), 2, 30, 10, key="tune.minutes")
        allow_request = st.checkbox(
            _("The tuner may change the request (smaller max_tokens, compact JSON)"),
            True,
            key="tune.allow_request",
        )
        allow_changed = st.checkbox(
            _("A changed answer is allowed (otherwise settings that change the answer are never chosen)"),
            False,
            key="tune.allow_changed",
        )
        pressed = st.form_submit_button(
            _("Start tuning"), type="primary", disabled=not ui_roles.is_presenter()
        )
    if not pressed:
        return None
    try:
        if chosen == OWN:
            request = own_request(system, turns, output, schema_text, int(max_tokens))
            workload, preset_name = Workload.from_request(request, label="own"), None
        else:
            preset = presets.get(chosen)
            workload, preset_name = Workload.from_request(preset.request, label=preset.name), preset.name
        load = question_mod.Load(
            concurrency=int(amount) if load_kind == "many" else (1 if load_kind == "one" else None),
            rate=float(amount) if load_kind == "rate" else None,
        )
        asked = question_mod.TuneQuestion(
            workload=workload.to_dict(),
            goal=question_mod.parse_goal(goal),
            load=load,
            limit=question_mod.parse_limit(limit_text) if limit_text.strip() else None,
            memory_gib=float(memory) if memory else None,
            minutes=float(minutes),
            allow_request_changes=allow_request,
            allow_changed_answers=allow_changed,
            backend=backend,
            preset=preset_name or "",
        )
    except question_mod.QuestionError as exc:
        st.error(_(exc.message).format(**exc.params))
        return None
    except ValueError as exc:
        st.error(_(str(exc)))
        return None
    return TuneRequest(asked, base_config(preset_name, backend), workload)


# ------------------------------------------------------------------------------------------ progress


def draw_progress(snap: TuneSnapshot, job: TuneJob) -> None:
    _ = ui_i18n.translator()
    planned = max(snap.trials_planned, snap.trials_done, 1)
    st.progress(
        min(snap.trials_done / planned, 1.0),
        text=_("Trial {done} of about {planned} · {phase}").format(
            done=snap.trials_done, planned=planned, phase=_(phase_name(snap.phase))
        ),
    )
    cols = st.columns(3)
    best = "—" if snap.best_value is None else ui_i18n.number(snap.best_value, 1)
    cols[0].metric(_("Best so far ({goal})").format(goal=snap.goal), best)
    cols[1].metric(_("Time left"), f"{int(snap.seconds_left // 60)}:{int(snap.seconds_left % 60):02d}")
    cols[2].button(
        _("Stop and keep what was measured"),
        on_click=job.stop,
        disabled=not ui_roles.is_presenter(),
        key="tune.stop",
    )
    if snap.best_changes:
        st.caption(_("Best so far: {changes}").format(changes=changes_text(snap.best_changes)))


def phase_name(phase: str) -> str:
    return {
        "starting": N_("starting"),
        "search": N_("searching"),
        "confirm": N_("checking the best again"),
        "done": N_("done"),
        "stopped": N_("stopped"),
    }.get(phase, N_("starting"))


def changes_text(changes: dict[str, Any]) -> str:
    _ = ui_i18n.translator()
    if not changes:
        return _("the starting settings")
    lang = ui_i18n.current_language()
    return ", ".join(knob_text(k, v, lang) for k, v in changes.items())


# ------------------------------------------------------------------------------------------ result


def comparison_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Best, baseline and (for Pika) the brief's figures, as table rows (pure)."""
    goal = report["question"]["goal"]
    rows = []
    for key, label in (("best", N_("best settings")), ("baseline", N_("starting settings"))):
        item = report.get(key)
        if not item:
            continue
        estimate = Estimate.from_dict(item.get("goal"))
        figures = item.get("figures") or {}
        rows.append(
            {
                "label": label,
                "goal": estimate.value,
                "low": estimate.low,
                "high": estimate.high,
                "ttft": Estimate.from_dict(figures.get("p50-ttft")).value,
                "itl": Estimate.from_dict(figures.get("p50-itl")).value,
                "same_answer": item.get("answer_matches"),
            }
        )
    brief = report.get("brief")
    if brief and goal.endswith("e2e"):
        rows.append({"label": N_("the brief's measurement"), "goal": brief["brief_ms"]})
        rows.append({"label": N_("the owner's hope"), "goal": brief["owner_hope_ms"]})
    return rows


def strongest_knob(report: dict[str, Any]) -> str | None:
    effects = [e for e in report.get("effects") or [] if e.get("change") is not None]
    if not effects:
        knobs = report.get("space", {}).get("knobs") or []
        return knobs[0]["name"] if knobs else None
    lower_is_better = report["question"]["goal"] != "throughput"
    helped = [e for e in effects if e.get("clear") and (e["change"] < 0) == lower_is_better]
    pool = helped or effects  # the knob that helped most; else the one that moved the goal most
    return max(pool, key=lambda e: (bool(e.get("clear")), abs(e["change"])))["knob"]


def trials_chart(report: dict[str, Any], translate=lambda s: s) -> go.Figure:
    """Every trial: the goal against the strongest knob's value; with a limit, the goal against the
    limit's figure and the Pareto front of the trials that keep the answer."""
    goal = report["question"]["goal"]
    limit = report["question"].get("limit")
    trials = [t for t in report.get("trials") or [] if (t.get("goal") or {}).get("value") is not None]
    figure = go.Figure()
    if limit:
        limit_key = limit.split(" ")[0]
        points = [(t, (t.get("figures") or {}).get(limit_key, {}) or {}) for t in trials]
        xs = [p[1].get("value") for p in points]
        figure.add_trace(_scatter([p[0] for p in points], xs, translate))
        pairs = [(x, t["goal"]["value"]) for t, x in zip(trials, xs, strict=True) if x is not None]
        front = pareto_front(pairs, goal != "throughput")
        if front:
            figure.add_trace(
                go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                           name=translate(N_("Pareto front")), line={"color": "#237841", "dash": "dot"})
            )  # fmt: skip
        figure.update_xaxes(title=limit_key + " (ms)")
    else:
        knob = strongest_knob(report)
        xs = [_short(t["params"].get(knob)) if knob else "" for t in trials]
        figure.add_trace(_scatter(trials, xs, translate))
        figure.update_xaxes(title=knob or "", type="category")
    base = (report.get("baseline") or {}).get("goal", {}).get("value")
    if base is not None:
        figure.add_hline(y=base, line_dash="dash", annotation_text=translate(N_("starting settings")))
    figure.update_yaxes(title=goal + (" (answers/s)" if goal == "throughput" else " (ms)"))
    figure.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=True)
    return figure


def turns_chart(
    report: dict[str, Any], translate=lambda s: s, label=lambda changes: json.dumps(changes)
) -> go.Figure | None:
    """The confirmation's turns: one line per candidate, the goal in each turn. Lines that rise and fall
    together show the machine changing speed, not the settings. None with fewer than two turns."""
    checked = [c for c in report.get("confirmations") or [] if len(c.get("turns") or []) >= 2]
    if not checked:
        return None
    goal = report["question"]["goal"]
    figure = go.Figure()
    for candidate in checked:
        turns = [t for t in candidate["turns"] if t.get("value") is not None]
        figure.add_trace(
            go.Scatter(
                x=[t["turn"] + 1 for t in turns],
                y=[t["value"] for t in turns],
                mode="lines+markers",
                name=label(candidate.get("changes") or {}),
            )
        )
    figure.update_xaxes(title=translate(N_("turn")), dtick=1)
    figure.update_yaxes(title=goal + (" (answers/s)" if goal == "throughput" else " (ms)"))
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=True)
    return figure


def _scatter(trials: list[dict[str, Any]], xs: list[Any], translate) -> go.Scatter:
    return go.Scatter(
        x=xs,
        y=[t["goal"]["value"] for t in trials],
        mode="markers",
        name=translate(N_("trials")),
        marker={
            "size": 11,
            "color": [STATE_COLOURS.get(t.get("state"), "#888") for t in trials],
            "symbol": ["x" if t.get("answer_matches") is False else "circle" for t in trials],
        },
        text=[json.dumps(t.get("changes") or {}, ensure_ascii=False) for t in trials],
        hovertemplate="%{text}<br>%{y:.1f}<extra></extra>",
    )


def _short(value: Any) -> str:
    text = str(value)
    if text.startswith("{"):
        data = json.loads(text)
        shown = ("method", "backend", "num_speculative_tokens", "disable_any_whitespace")
        return ",".join(f"{k}={v}" for k, v in data.items() if k in shown)
    return text


def pareto_front(
    points: list[tuple[float, float]], lower_is_better: bool = True
) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (x always lower-better, y as the goal says)."""
    sign = 1 if lower_is_better else -1
    front, best_y = [], None
    for x, y in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if best_y is None or sign * y < sign * best_y:
            front.append((x, y))
            best_y = y
    return front


def draw_result(report: dict[str, Any]) -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    best = report.get("best")
    st.subheader(_("Result"))
    if report.get("stopped"):
        st.info(_("Stopped early: this is what was measured until then."))
    if best:
        if best.get("clearly_better"):
            st.success(_("Best settings: {changes}").format(changes=changes_text(best["changes"])))
        else:
            st.warning(_("Nothing was clearly better than the starting settings; keep them."))
        st.caption(_("Command to start vLLM with these settings"))
        st.code(" ".join(best["command"]), language="bash")
        if best.get("request_fields"):
            st.caption(_("Fields to add to each chat-completions request"))
            st.code(json.dumps(best["request_fields"], ensure_ascii=False, indent=2), language="json")
    rows = comparison_rows(report)
    if rows:
        unit = "ms" if report["question"]["goal"] != "throughput" else "/s"
        table = [
            {
                _("settings"): _(row["label"]),
                report["question"]["goal"]: _value(row.get("goal"), unit),
                _("interval at 95%"): _range(row.get("low"), row.get("high")),
                _("first token p50"): _value(row.get("ttft"), "ms"),
                _("per token p50"): _value(row.get("itl"), "ms"),
                _("same answer"): {True: _("yes"), False: _("no"), None: "—"}[row.get("same_answer")],
            }
            for row in rows
        ]
        st.dataframe(table, hide_index=True, use_container_width=True)
    st.plotly_chart(trials_chart(report, _), use_container_width=True)
    turns = turns_chart(report, _, changes_text)
    if turns is not None:
        st.markdown("**" + _("The best, measured again in turns") + "**")
        st.caption(
            _(
                "Every candidate was measured once in each turn, one after another. Lines that rise and "
                "fall together show the machine itself changing speed, not the settings."
            )
        )
        st.plotly_chart(turns, use_container_width=True)
    st.markdown("**" + _("Verdict") + "**")
    st.write(report["verdict"]["vi" if lang == "vi" else "en"])
    with st.expander(_("All trials ({n})").format(n=len(report.get("trials") or []))):
        st.dataframe(
            [
                {
                    "#": t.get("number"),
                    _("changes"): changes_text(t.get("changes") or {}),
                    report["question"]["goal"]: _value((t.get("goal") or {}).get("value"), ""),
                    _("state"): t.get("state"),
                    _("same answer"): {True: _("yes"), False: _("no"), None: "—"}[t.get("answer_matches")],
                }
                for t in report.get("trials") or []
            ],
            hide_index=True,
            use_container_width=True,
        )


def _value(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{ui_i18n.number(value, 1)} {unit}".strip()


def _range(low: float | None, high: float | None) -> str:
    _ = ui_i18n.translator()
    if low is None or high is None:
        return _("unknown")
    return f"{ui_i18n.number(low, 1)}–{ui_i18n.number(high, 1)}"


def last_report(store: Any) -> dict[str, Any] | None:
    """The newest finished tune run's report from the history (its summary keeps the whole report)."""
    if store is None:
        return None
    with contextlib.suppress(Exception):
        for run in store.list_runs(kind="tune", limit=5):
            summary = run.summary or {}
            if summary.get("report"):
                return summary["report"]
    return None
