"""Streamlit glue for lesson mode: the presenter picks a lesson and steps through it; everyone answers
each step's question before the measurement; the answers lock when it starts; the reveal shows the
measured result beside the class's guesses and the explanation.

One LessonRun per app (every browser session sees the same lesson). The measurement is the impact
page's SweepJob (one flag, the step's two values, the step's workload), which owns the server through
the carousel's claim while it runs and puts the factory back afterwards.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from dashboard.classroom import lessons as lessons_mod
from dashboard.classroom import predictions as pred
from dashboard.classroom.lessons import Lesson, LessonStep
from dashboard.engine import flags
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles
from dashboard.ui import state

REFRESH_S = 1.0
FINISHED = ("done", "failed", "stopped")


@dataclass
class _Classroom:
    run: pred.LessonRun | None = None
    job_started_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def classroom() -> _Classroom:
    return _Classroom()


def _job() -> Any:
    from dashboard.ui import measure_jobs

    return measure_jobs.get_job()


def _label(run: pred.LessonRun) -> str:
    _ = ui_i18n.translator()
    if ui_roles.is_presenter():
        return _("the presenter")
    return _("visitor {n}").format(n=run.visitor_number(ui_roles.who()))


# ------------------------------------------------------------------------------------------ choosing


def chooser() -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    try:
        found = lessons_mod.all_lessons()
    except lessons_mod.LessonError as exc:
        st.error(exc.problem.text(lang), icon=":material/error:")
        return
    backend = state.backend()
    usable = {key: lesson for key, lesson in found.items() if lesson.steps_for(backend)}
    if not ui_roles.is_presenter():
        st.info(
            _("No lesson is running. When the presenter starts one, its question appears here."),
            icon=":material/school:",
        )
        return
    for key, lesson in usable.items():
        with st.container(border=True):
            st.markdown(f"**{lesson.title.get(lang)}**")
            st.caption(lesson.summary.get(lang))
            if st.button(_("Start this lesson"), key=f"lesson.start.{key}", icon=":material/play_arrow:"):
                start_lesson(lesson)


def start_lesson(lesson: Lesson) -> None:
    _ = ui_i18n.translator()
    if not ui_roles.require_presenter(_("start a lesson")):
        return
    room = classroom()
    with room.lock:
        room.run = pred.LessonRun(lesson, backend=state.backend())
        room.job_started_at = None
    st.rerun()


# ------------------------------------------------------------------------------------------ one step


def step_card(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    number = run.step_index + 1
    before, after = step.values_for(run.backend) or (None, None)
    option = flags.get(step.flag).cli
    st.subheader(_("Step {n} of {total}").format(n=number, total=len(run.steps)))
    st.markdown(f"`{option}`: **{before}** → **{after}**")
    st.info(step.question.get(lang), icon=":material/help:")


def answer_form(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    current = run.round()
    key = f"lesson.{run.lesson.id}.{run.step_index}"
    mine = current.guesses.get(ui_roles.who())
    directions = list(pred.DIRECTIONS[step.ask])
    direction = st.radio(
        _("Your guess"),
        directions,
        index=directions.index(mine.direction) if mine else None,
        format_func=lambda d: _(pred.DIRECTION_LABELS[d]),
        horizontal=True,
        key=f"{key}.direction",
    )
    amount = st.radio(
        _("Roughly how much?"),
        list(pred.AMOUNTS),
        index=list(pred.AMOUNTS).index(mine.amount) if mine else None,
        format_func=lambda a: _(pred.AMOUNT_LABELS[a]),
        horizontal=True,
        key=f"{key}.amount",
    )
    if st.button(_("Lock in my answer"), key=f"{key}.send", icon=":material/how_to_vote:", type="primary"):
        if direction is None or amount is None:
            st.warning(_("Choose a direction and an amount first."), icon=":material/warning:")
        else:
            try:
                run.answer(pred.Guess(ui_roles.who(), _label(run), direction, amount))
                mine = current.guesses.get(ui_roles.who())
            except pred.PredictionLocked:
                st.warning(
                    _("Too late: the measurement has started, answers are locked."), icon=":material/lock:"
                )
    if mine is not None:
        st.success(
            _("Your answer: {direction}, {amount}. You can change it until the measurement starts.").format(
                direction=_(pred.DIRECTION_LABELS[mine.direction]), amount=_(pred.AMOUNT_LABELS[mine.amount])
            ),
            icon=":material/check:",
        )
    st.caption(_("Answers so far: {n}").format(n=len(current.guesses)))


def start_measurement(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    if not ui_roles.require_presenter(_("start the measurement")):
        return
    from dashboard.measure import table
    from dashboard.measure.loadgen import LoadPlan
    from dashboard.ui import measure_jobs

    manager = state.get_manager()
    snap = manager.snapshot()
    base = snap.config or state.starting_config()
    values = step.values_for(run.backend) or ()
    spec = table.workloads()[step.workload]
    request = measure_jobs.JobRequest(
        sweeps=((step.flag, tuple(values)),),
        base=base,
        workload=spec.workload(),
        plan=LoadPlan(
            concurrency=spec.concurrency, requests=max(step.orders, spec.concurrency), timeout_s=300
        ),
        restore_config=snap.config if snap.status == "ready" else None,
        backend=run.backend,
    )
    reason = _job().start(request, manager, state.get_store(), state.get_sampler())
    if reason:
        st.warning(_(reason), icon=":material/block:")
        return
    room = classroom()
    room.job_started_at = _job().snapshot().started_at
    run.start_measuring()


def _rows(step: LessonStep, job: Any) -> list[Any]:
    """The step's two measured rows (before, after), None where a value has no row."""
    rows = [value.row for flag in job.flags for value in flag.values if flag.flag == step.flag]
    return (rows + [None, None])[:2]


def follow_measurement(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    job = _job().snapshot()
    room = classroom()
    if room.job_started_at is not None and job.started_at != room.job_started_at:
        run.failed(_("The measurement was replaced by another one."))
        return
    if job.status in FINISHED:
        metric = step.measured_by
        first, second = _rows(step, job)
        round_ = run.reveal(
            pred.row_figure(metric, first),
            pred.row_figure(metric, second),
            pred.row_samples(metric, first),
            pred.row_samples(metric, second),
        )
        if round_.outcome is None:
            run.failed(job.error or _("The measurement did not give both figures."))
        return
    st.info(
        _("Answers are locked. The factory is measuring: {done} of {total} settings done.").format(
            done=job.finished_values, total=job.total_values
        ),
        icon=":material/lock_clock:",
    )
    st.progress(job.progress())


def _figure_text(metric: lessons_mod.Metric, value: float | None) -> str:
    if value is None:
        return "–"
    if metric.unit == "ms":
        return ui_i18n.milliseconds(value)
    if metric.unit == "GiB":
        return ui_i18n.gib(value)
    return ui_i18n.number(value, 1 if value < 100 else 0)


def reveal(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    current = run.round()
    if run.error:
        st.error(_("No result for this step: {error}").format(error=run.error), icon=":material/error:")
    found = current.outcome
    if found is not None:
        before, after = step.values_for(run.backend) or (None, None)
        metric = step.measured_by
        columns = st.columns(3)
        columns[0].metric(f"{flags.get(step.flag).cli} = {before}", _figure_text(metric, found.before))
        columns[1].metric(f"{flags.get(step.flag).cli} = {after}", _figure_text(metric, found.after))
        columns[2].metric(
            _("Measured answer"),
            _(pred.DIRECTION_LABELS[found.direction]),
            _("{ratio}× · {amount}").format(
                ratio=ui_i18n.number(found.ratio, 2), amount=_(pred.AMOUNT_LABELS[found.amount])
            ),
            delta_color="off",
        )
        if found.within_spread:
            st.info(
                _(
                    "The two figures differ by {ratio}×, but the orders of each setting varied that much "
                    "among themselves, so this counts as about the same."
                ).format(ratio=ui_i18n.number(found.ratio, 2)),
                icon=":material/balance:",
            )
        verdicts = current.verdicts()
        mine = next((v for v in verdicts if v.guess.who == ui_roles.who()), None)
        if mine is not None:
            if mine.direction_right:
                st.success(_("You guessed right!"), icon=":material/celebration:")
            else:
                st.warning(_("Not this time: look at the explanation below."), icon=":material/lightbulb:")
        right = sum(1 for v in verdicts if v.direction_right)
        st.markdown(
            _("{right} of {total} guessed the direction right.").format(right=right, total=len(verdicts))
        )
        rows = [
            {
                _("Who"): v.guess.label,
                _("Guess"): _(pred.DIRECTION_LABELS[v.guess.direction]),
                _("How much"): _(pred.AMOUNT_LABELS[v.guess.amount]),
                _("Right?"): v.direction_right,
            }
            for v in verdicts
        ]
        if rows:  # a tick box, not an emoji: it reads the same whatever fonts the browser has
            st.dataframe(
                rows,
                hide_index=True,
                width="stretch",
                column_config={_("Right?"): st.column_config.CheckboxColumn(_("Right?"))},
            )
        if ui_roles.is_presenter():  # one bar per direction: how many chose it
            tally = current.tally()
            guesses, count = _("Guess"), _("Answers")
            st.bar_chart(
                {guesses: [_(pred.DIRECTION_LABELS[k]) for k in tally], count: list(tally.values())},
                x=guesses,
                y=count,
                horizontal=True,
            )
    st.success(step.explanation.get(lang), icon=":material/school:")


def presenter_controls(run: pred.LessonRun, step: LessonStep) -> None:
    _ = ui_i18n.translator()
    if not ui_roles.is_presenter():
        return
    key = f"lesson.{run.lesson.id}.{run.step_index}"
    with st.container(horizontal=True):
        if run.stage == "asking" and st.button(
            _("Start the measurement"), key=f"{key}.measure", icon=":material/science:", type="primary"
        ):
            start_measurement(run, step)
            st.rerun()
        if run.stage == "revealed":
            last = run.step_index + 1 >= len(run.steps)
            if not last and st.button(_("Next step"), key=f"{key}.next", icon=":material/arrow_forward:"):
                run.next_step()
                st.rerun()
        ended = st.button(_("End the lesson"), key=f"{key}.end", icon=":material/stop:")
        if ended and ui_roles.require_presenter(_("end the lesson")):
            classroom().run = None
            st.rerun()


@st.fragment(run_every=REFRESH_S)
def lesson_body() -> None:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    run = classroom().run
    if run is None:
        chooser()
        return
    _index, step = run.current()
    st.markdown(f"### :material/school: {run.lesson.title.get(lang)}")
    st.caption(run.lesson.summary.get(lang))
    step_card(run, step)
    if run.stage == "asking":
        answer_form(run, step)
    elif run.stage == "measuring":
        follow_measurement(run, step)
    if run.stage == "revealed":
        reveal(run, step)
    presenter_controls(run, step)


def page() -> None:
    _ = ui_i18n.translator()
    st.title(_("Lesson"))
    st.markdown(_("Guess first, then let the real factory measure. Who will be right?"))
    ui_roles.refused_notice()
    lesson_body()
