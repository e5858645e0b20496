"""The before/after card of one Apply: the same order on the old and on the new server, the spread of
each side, the verdict (no red for noise), and whether the answer stayed the same at temperature 0."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard.engine import flags
from dashboard.history.records import flag_values
from dashboard.measure import compare
from dashboard.measure.compare import BeforeAfter, Side
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import widgets

REFUSAL_SHOWN_S = 30.0
VERDICT_COLOURS = {compare.FASTER: "green", compare.SLOWER: "orange", compare.UNCLEAR: "gray"}


def workload_text(entry: BeforeAfter) -> str:
    _ = ui_i18n.translator()
    ngettext = ui_i18n.plural_translator()
    source = (
        _("the last playground order") if entry.probe.source == "playground" else _("a standard short order")
    )
    orders = ngettext("{n} order one at a time", "{n} orders one at a time", entry.probe.orders).format(
        n=ui_i18n.number(entry.probe.orders)
    )
    return _("Same work on both sides: {source}, {orders}, after one warm-up order.").format(
        source=source, orders=orders
    )


def changes_text(entry: BeforeAfter) -> str:
    """`--flag: old → new` for every setting that differs (the model too)."""
    _ = ui_i18n.translator()
    before, after = dict(entry.before_config), dict(entry.after_config)
    parts = []
    if before.get("model") and before.get("model") != after.get("model"):
        parts.append(_("model: {old} → {new}").format(old=before.get("model"), new=after.get("model")))
    old_values, new_values = flag_values(before), flag_values(after)
    for name in sorted((old_values.keys() | new_values.keys()) - {"api_key", "before", "sweep"}):
        if old_values.get(name) == new_values.get(name) or name not in flags.catalog():
            continue
        flag = flags.get(name)
        old = widgets.value_text(flag, old_values.get(name))
        new = widgets.value_text(flag, new_values.get(name))
        parts.append(f"`{flag.cli}`: {old} → **{new}**")
    return " · ".join(parts)


def side_metric(column: Any, title: str, side: Side | None) -> None:
    _ = ui_i18n.translator()
    if side is None or not side.measured:
        column.metric(title, "–", help=_("Not measured."))
        return
    low, high = side.spread_ms or (None, None)
    column.metric(
        title,
        ui_i18n.milliseconds(side.median_e2e_ms),
        help=_("Middle answer time of the orders on this side."),
    )
    column.caption(
        _("from {low} to {high} · first token {ttft}").format(
            low=ui_i18n.milliseconds(low),
            high=ui_i18n.milliseconds(high),
            ttft=ui_i18n.milliseconds(side.median_ttft_ms),
        )
    )


def verdict_badge(entry: BeforeAfter) -> None:
    _ = ui_i18n.translator()
    message, params = entry.verdict_text()
    percent = params.get("percent")
    text = _(message).format(percent=ui_i18n.percent(percent / 100 if percent is not None else None))
    st.badge(text, color=VERDICT_COLOURS.get(entry.verdict, "gray"), icon=":material/balance:")


def same_answer_badge(entry: BeforeAfter) -> None:
    _ = ui_i18n.translator()
    same = entry.same_answer
    if same is None:
        return
    if same:
        st.badge(_("Same answer as before"), color="green", icon=":material/check:")
    else:
        st.badge(_("The answer changed"), color="orange", icon=":material/swap_horiz:")
        st.caption(
            _(
                "At temperature 0 the model always picks its most likely next word, so a different answer "
                "means the setting changed the numbers inside (for example another attention backend or "
                "another way of forcing JSON), not chance."
            )
        )


def comparison_card(entry: BeforeAfter, stage: str = "done", key: str = "compare") -> None:
    _ = ui_i18n.translator()
    with st.container(border=True, key=f"{key}.card"):
        st.markdown("**:material/compare_arrows: " + _("Before and after this Apply") + "**")
        changed = changes_text(entry)
        if changed:
            st.markdown(changed)
        st.caption(workload_text(entry))
        before, after = st.columns(2)
        side_metric(before, _("Before"), entry.before)
        if stage in ("waiting", "measuring_after"):
            after.metric(_("After"), "…")
        elif stage == "failed" and entry.after is None:
            after.metric(_("After"), "–")
            after.caption(_("The new settings did not reach ready, so nothing was measured on them."))
        else:
            side_metric(after, _("After"), entry.after)
        if stage == "done" or entry.after is not None:
            with st.container(horizontal=True, gap="small"):
                verdict_badge(entry)
                same_answer_badge(entry)
        if entry.before is None:
            st.caption(_("The factory was not running before this Apply, so there is no before side."))


def from_summary(summary: Mapping[str, Any] | None) -> BeforeAfter | None:
    data = (summary or {}).get("comparison")
    return BeforeAfter.from_dict(data) if isinstance(data, Mapping) else None


def latest_card() -> None:
    """The newest Apply's card on the factory page; it refreshes itself until the after side is in."""
    from dashboard.ui import apply_compare

    tracker = apply_compare.tracker()
    if tracker.entry is None:
        return
    if tracker.stage == "refused":
        if time.time() - tracker.requested_at < REFUSAL_SHOWN_S:
            st.warning(apply_compare.stage_text("refused"), icon=":material/info:")
        return

    @st.fragment(run_every=1.0)
    def _poll() -> None:
        stage, entry = tracker.stage, tracker.entry
        if entry is None:
            return
        note = apply_compare.stage_text(stage)
        if note:
            st.caption(":material/hourglass_top: " + note)
        comparison_card(entry, stage, key="factory.compare")

    if tracker.stage in ("waiting", "measuring_after", "measuring_before"):
        _poll()
    else:
        comparison_card(tracker.entry, tracker.stage, key="factory.compare")
