"""History: every start and every measurement, kept to compare. Before and after each Apply, two runs
side by side, and each run as a command, JSON, CSV or a bilingual report."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard.engine import flags
from dashboard.history import export
from dashboard.history.records import RunRecord, flatten
from dashboard.i18n import translator as core_translator
from dashboard.ui import charts, compare_view, measure_charts, state
from dashboard.ui import history_view as view
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import roles as ui_roles

KIND_FILTER_KEY = "history.kinds"
PICK_A_KEY, PICK_B_KEY, PICK_ONE_KEY = "history.a", "history.b", "history.one"
ZIP_KEY = "history.zip"
LIST_LIMIT = 200
GOOD, BAD = "#D6F5DD", "#FBD9D9"


def _number(value: float, digits: int = 0) -> str:
    return ui_i18n.number(value, digits)


def _figure(value: float | None) -> str:
    """A measured figure: whole numbers (token counts) without decimals, the others with two."""
    whole = value is not None and (float(value).is_integer() or abs(value) >= 1000)
    return _number(value, 0 if whole else 2)


def kind_name(kind: str) -> str:
    return ui_i18n.tr(view.KIND_NAMES.get(kind, kind))


def status_name(status: str) -> str:
    return ui_i18n.tr(view.STATUS_NAMES.get(status, status))


def run_title(run: RunRecord) -> str:
    lang = ui_i18n.current_language()
    label = f" · {run.label}" if run.label else ""
    return f"#{run.id} · {kind_name(run.kind)} · {view.when(run.created_at, lang)}{label}"


def flag_name(name: str) -> str:
    try:
        return flags.get(name).cli
    except KeyError:
        return name


# ------------------------------------------------------------------------------------------ the list


def run_table(runs: list[RunRecord]) -> pd.DataFrame:
    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    return pd.DataFrame(
        {
            "#": [run.id for run in runs],
            _("Kind"): [kind_name(run.kind) for run in runs],
            _("When"): [view.when(run.created_at, lang) for run in runs],
            _("Label"): [run.label for run in runs],
            _("Status"): [status_name(run.status) for run in runs],
            _("Key figures"): [
                view.verdict_of(run, lang) or view.key_figures_text(run, _number, _) for run in runs
            ],
            _("Rows"): [run.row_count for run in runs],
        }
    )


def list_section(runs: list[RunRecord]) -> list[RunRecord]:
    _ = ui_i18n.translator()
    st.subheader(":material/list: " + _("Every run"))
    order = list(view.KIND_NAMES)
    kinds = sorted({run.kind for run in runs}, key=lambda k: order.index(k) if k in order else len(order))
    chosen = st.pills(
        _("Show"), kinds, selection_mode="multi", default=kinds, format_func=kind_name, key=KIND_FILTER_KEY
    )
    shown = [run for run in runs if run.kind in (chosen or kinds)]
    st.dataframe(run_table(shown), hide_index=True, width="stretch", key="history.table")
    interrupted = sum(1 for run in shown if run.status == "interrupted")
    if interrupted:
        ngettext = ui_i18n.plural_translator()
        st.caption(
            ngettext(
                "{n} run was interrupted (the app or the computer stopped while it ran); its measured rows "
                "are kept.",
                "{n} runs were interrupted (the app or the computer stopped while they ran); their measured "
                "rows are kept.",
                interrupted,
            ).format(n=_number(interrupted))
        )
    return shown


# ------------------------------------------------------------------------------------------ before / after


def apply_card(run: RunRecord, entry: Any) -> None:
    _ = ui_i18n.translator()
    st.markdown(f"**{run_title(run)}**")
    stage = "done" if run.status == "done" else "failed"
    compare_view.comparison_card(entry, stage, key=f"history.apply.{run.id}")
    ready = (run.summary or {}).get("ready_s")
    if isinstance(ready, int | float):
        st.caption(_("The new settings were ready after {seconds}.").format(seconds=ui_i18n.seconds(ready)))


def apply_section(runs: list[RunRecord]) -> None:
    _ = ui_i18n.translator()
    st.subheader(":material/compare_arrows: " + _("Before and after each Apply"))
    found = view.apply_comparisons(runs)
    if not found:
        st.caption(
            _(
                "After an Apply on the factory floor, the same short order measured on the old and on the "
                "new server appears here."
            )
        )
        return
    apply_card(*found[0])
    if len(found) > 1:
        with st.expander(_("Earlier Apply"), icon=":material/history:"):
            for run, entry in found[1:]:
                apply_card(run, entry)
                st.divider()


# ------------------------------------------------------------------------------------------ compare


def delta_table(rows: list[view.DeltaRow]) -> Any:
    _ = ui_i18n.translator()
    words = {"better": _("better"), "worse": _("worse"), "same": _("about the same"), "": ""}
    frame = pd.DataFrame(
        {
            _("Number"): [view.field_label(row.metric, _) or row.metric for row in rows],
            "A": [_figure(row.a) for row in rows],
            "B": [_figure(row.b) for row in rows],
            _("Change"): ["–" if row.percent is None else f"{_number(row.percent, 1)} %" for row in rows],
            _("Verdict"): [words[row.judgement] for row in rows],
        }
    )
    colours = [{"better": GOOD, "worse": BAD}.get(row.judgement, "") for row in rows]

    def paint(column: pd.Series) -> list[str]:
        return [f"background-color: {c}" if c else "" for c in colours]

    return frame.style.apply(paint, axis=0, subset=[_("Change"), _("Verdict")])


def compare_section(runs: list[RunRecord], store: Any) -> None:
    _ = ui_i18n.translator()
    st.subheader(":material/difference: " + _("Compare two runs"))
    if len(runs) < 2:
        st.caption(_("Two runs are needed to compare."))
        return
    ids = [run.id for run in runs]
    titles = {run.id: run_title(run) for run in runs}
    left, right = st.columns(2)
    a_id = left.selectbox("A", ids, index=1, format_func=titles.get, key=PICK_A_KEY)
    b_id = right.selectbox("B", ids, index=0, format_func=titles.get, key=PICK_B_KEY)
    run_a, run_b = store.get_run(a_id), store.get_run(b_id)
    lang = ui_i18n.current_language()
    for column, run in ((left, run_a), (right, run_b)):
        with column, st.container(border=True):
            st.markdown(f"**{kind_name(run.kind)}** · {status_name(run.status)}")
            st.caption(view.verdict_of(run, lang) or view.key_figures_text(run, _number, _) or "–")
    changes = view.flag_changes(run_a.config, run_b.config)
    if changes:
        st.markdown("**" + _("Settings that differ") + "**")
        st.dataframe(
            pd.DataFrame(
                {
                    _("Flag"): [flag_name(name) for name, _a, _b in changes],
                    "A": [view.value_label(a, _, lang) for _n, a, _b in changes],
                    "B": [view.value_label(b, _, lang) for _n, _a, b in changes],
                }
            ),
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption(_("Both runs used the same settings."))
    rows = view.delta_rows(run_a, run_b)
    if not rows:
        st.caption(_("These two runs share no numbers to compare."))
        return
    st.markdown("**" + _("Numbers side by side") + "**")
    st.dataframe(delta_table(rows), hide_index=True, width="stretch")
    if any(row.percent is not None for row in rows):
        figure = view.comparison_figure(rows, _)
        figure.update_layout(separators=charts.separators(ui_i18n.current_language()))
        st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="history.compare_chart")


# ------------------------------------------------------------------------------------------ one run


def downloads(run: RunRecord) -> None:
    _ = ui_i18n.translator()
    stem = f"lego-factory-run-{run.id}"
    st.markdown("**" + _("The command that starts the same server") + "**")
    serve = view.serve_command(run)
    st.code(serve, language="bash", wrap_lines=True)
    exact = export.recorded_command(run)
    if exact:
        with st.expander(_("The exact command this run started"), icon=":material/terminal:"):
            st.code(export.as_command(run), language="bash", wrap_lines=True)
    if not ui_roles.is_presenter():  # no file is even prepared for a visitor's browser
        st.button(_("Downloads"), icon=":material/download:", disabled=True, key="history.downloads_locked")
        ui_roles.visitor_line()
        return
    with st.container(horizontal=True, gap="small"):
        st.download_button(
            _("Command"), serve + "\n", f"{stem}.sh", "text/x-shellscript", icon=":material/terminal:"
        )
        st.download_button(
            _("JSON"), export.as_json(run), f"{stem}.json", "application/json", icon=":material/data_object:"
        )
        st.download_button(_("CSV"), export.as_csv(run), f"{stem}.csv", "text/csv", icon=":material/table:")
        st.download_button(
            _("Report (Vietnamese + English)"),
            export.as_markdown(run, "both", **view.model_names(run)),
            f"{stem}.md",
            "text/markdown",
            icon=":material/description:",
        )
    if view.run_figure(run) is None:
        return
    ready = st.session_state.get(ZIP_KEY)
    if ready and ready[0] == run.id:
        st.download_button(
            _("Report with charts (zip)"),
            ready[1],
            f"{stem}.zip",
            "application/zip",
            icon=":material/folder_zip:",
            key="history.zip_download",
        )
        if not ready[2]:
            st.caption(
                _("The charts could not be drawn as pictures here, so the report holds the tables only.")
            )
    elif st.button(
        _("Prepare the report with its charts"), icon=":material/image:", key="history.zip_button"
    ):
        with st.spinner(_("Drawing the charts…")):
            images = view.chart_pngs(run, export.REPORT_LANGUAGES, core_translator)
            st.session_state[ZIP_KEY] = (run.id, view.report_zip(run, images), bool(images))
        st.rerun()


def run_section(runs: list[RunRecord], store: Any) -> None:
    _ = ui_i18n.translator()
    st.subheader(":material/description: " + _("One run in detail"))
    ids = [run.id for run in runs]
    titles = {run.id: run_title(run) for run in runs}
    run_id = st.selectbox(_("Run"), ids, format_func=titles.get, key=PICK_ONE_KEY)
    run = store.get_run(run_id)
    verdict = view.verdict_of(run, ui_i18n.current_language())
    if verdict:
        st.success(verdict, icon=":material/gavel:")
    figure = view.run_figure(run, _, ui_i18n.current_language())
    if figure is not None:
        st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key="history.run_chart")
    if run.rows:
        with st.expander(
            _("Measured rows ({n})").format(n=_number(len(run.rows))), icon=":material/table_rows:"
        ):
            st.dataframe(
                pd.DataFrame([{"#": row.seq, **flatten(row.data)} for row in run.rows]).astype(str),
                hide_index=True,
            )
    downloads(run)


# ------------------------------------------------------------------------------------------ page


def page() -> None:
    _ = ui_i18n.translator()
    st.title(_("History"))
    st.markdown(
        _("Every start and every measurement is kept here, so two runs can be compared side by side.")
    )
    store = state.get_store()
    if store is None:
        st.error(
            _("The history file cannot be opened, so nothing can be shown or kept."), icon=":material/error:"
        )
        return
    runs = store.list_runs(limit=LIST_LIMIT)
    if not runs:
        st.info(
            _("Nothing yet. Start the factory, send a request or run a measurement: it will appear here."),
            icon=":material/inbox:",
        )
        return
    apply_section(runs)
    shown = list_section(runs)
    if shown:
        compare_section(shown, store)
        run_section(shown, store)


page()
