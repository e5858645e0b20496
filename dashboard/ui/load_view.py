"""Streamlit glue for load tests: choosing how the customers arrive (the load shape), the first
token seen by three clocks side by side, with the gap between them explained, and the request X-ray
(every order's timeline from vLLM's own timings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard.i18n import N_
from dashboard.measure import xray
from dashboard.measure.loadgen import LoadPlan, LoadResult
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import measure_charts

SHAPE_KEY = "load.shape"
LANES_KEY = "load.in_flight"
RATE_KEY = "load.rate"
XRAY_WAIT_S = 5.0  # the server sends its request spans in batches every half second
SHAPE_LABELS = {
    "throughput": N_("All at the same moment"),
    "concurrency": N_("A few at a time (a new one when one leaves)"),
    "constant": N_("One after another, evenly spaced"),
    "poisson": N_("One after another, at random moments"),
}


def shape_plan(copies: int, key: str = SHAPE_KEY, timeout_s: float = 300.0) -> LoadPlan:
    """Ask how `copies` customers arrive and return the matching plan (all at once by default)."""
    _ = ui_i18n.translator()
    shape = st.radio(
        _("How they arrive"),
        list(SHAPE_LABELS),
        format_func=lambda name: _(SHAPE_LABELS[name]),
        horizontal=True,
        key=key,
    )
    if shape == "concurrency":
        in_flight = st.number_input(
            _("Customers inside at a time"), 1, max(copies, 1), min(4, copies), key=f"{key}.in_flight"
        )
        return LoadPlan(concurrency=int(in_flight), requests=copies, timeout_s=timeout_s)
    if shape in ("constant", "poisson"):
        rate = st.number_input(_("New customers per second"), 0.1, 1000.0, 4.0, step=0.5, key=f"{key}.rate")
        return LoadPlan.of_shape(shape, rate=float(rate), requests=copies, timeout_s=timeout_s)
    return LoadPlan(concurrency=copies, requests=copies, timeout_s=timeout_s)


def show_clocks(clocks: Mapping[str, Any] | None) -> None:
    """The first token by three clocks: the client's first byte, the client's first text, vLLM's own."""
    _ = ui_i18n.translator()
    st.markdown("**:material/timer: " + _("When did the first word come? Three clocks") + "**")
    if not clocks:
        st.caption(
            _("The server's own clock could not be read (/metrics did not answer): only ours is known.")
        )
        return
    columns = st.columns(3)
    columns[0].metric(
        _("Our clock: first byte"),
        ui_i18n.milliseconds(clocks.get("first_byte_mean_ms")),
        help=_("From sending the order to the first bytes of the answer (often an empty 'role' piece)."),
    )
    columns[1].metric(
        _("Our clock: first word"),
        ui_i18n.milliseconds(clocks.get("first_content_mean_ms")),
        help=_("From sending the order to the first piece that carries text: what people call TTFT."),
    )
    columns[2].metric(
        _("vLLM's own clock"),
        ui_i18n.milliseconds(clocks.get("server_mean_ms")),
        help=_("vllm:time_to_first_token_seconds: from when vLLM took the order in to its first token."),
    )
    st.caption(clock_story(clocks))


def clock_story(clocks: Mapping[str, Any]) -> str:
    """Why the three clocks disagree, with this run's numbers (means over the run)."""
    _ = ui_i18n.translator()
    parts = [
        _(
            "Averages over this run. Our clocks start when we send the order; vLLM's starts when the order "
            "is already inside, so it does not see the trip over HTTP, reading the order and turning it "
            "into tokens: here that was {http}."
        ).format(http=ui_i18n.milliseconds(clocks.get("client_over_server_ms")))
    ]
    parts.append(
        _(
            "The first byte and the first word differ by {gap}: vLLM first sends an empty piece that "
            "only says who is speaking (the 'role' chunk), and a token that is not a whole character "
            "yet has no text."
        ).format(gap=ui_i18n.milliseconds(clocks.get("content_after_byte_ms")))
    )
    if clocks.get("queue_mean_ms") is not None:
        parts.append(
            _(
                "Waiting in line is inside vLLM's clock: {queue} of it was spent in the queue before a "
                "lane was free."
            ).format(queue=ui_i18n.milliseconds(clocks.get("queue_mean_ms")))
        )
    return " ".join(parts)


# ------------------------------------------------------------------------------------------ request X-ray


def collect_xray(result: LoadResult) -> xray.Xray:
    """Right after a load test: its requests joined with the spans the server sent (waits a few seconds
    for the last batch). Keep the answer with the result: a page re-run must not wait again."""
    return xray.for_result(result, xray.shared_receiver(), XRAY_WAIT_S)


def show_xray(view: xray.Xray | None, key: str) -> None:
    """Every order of a load test on one timeline, from vLLM's own timings; says plainly what is missing."""
    _ = ui_i18n.translator()
    ngettext = ui_i18n.plural_translator()
    st.markdown("**:material/radiology: " + _("X-ray of every order") + "**")
    if view is None or not view.rows:
        st.caption(_("No X-ray for this run: it has no orders."))
        return
    st.caption(
        _(
            "One line per order, in the order they were sent. Orange: waiting for a free lane. Yellow: the "
            "work before the first word (reading the whole prompt). Blue: writing the answer one token at a "
            "time. Green: the trip over HTTP and the handling around it. Where many blue bars run side by "
            "side, the lanes are writing together: that is continuous batching. Hover a line for its numbers."
        )
    )
    if not view.receiving:
        st.info(
            _(
                "vLLM's own timings were not collected for this run, so each bar only shows our clock: "
                "from sending the order to its last word."
            ),
            icon=":material/visibility_off:",
        )
    elif view.with_span == 0:
        st.warning(
            _(
                "vLLM's own timings did not arrive for any order of this run (the server sends them after "
                "each order). Each bar only shows our clock: from sending the order to its last word."
            ),
            icon=":material/cloud_off:",
        )
    elif view.missing:
        st.caption(
            ngettext(
                "{n} order has no timings from vLLM: its grey bar is our clock only.",
                "{n} orders have no timings from vLLM: their grey bars are our clock only.",
                view.missing,
            ).format(n=ui_i18n.number(view.missing))
        )
    figure = measure_charts.xray_figure(view, _, ui_i18n.milliseconds)
    st.plotly_chart(figure, width="stretch", config=measure_charts.NO_BAR, key=key)
    st.caption(preemption_line(view))


def preemption_line(view: xray.Xray) -> str:
    _ = ui_i18n.translator()
    if not view.preemptions_seen:
        return _(
            "Whether orders were sent back to wait is not known for this run: the server's counter was "
            "not read."
        )
    if not view.preemptions:
        return _("No order was sent back to wait during this run: the warehouse had room for everyone.")
    total = sum(mark.count for mark in view.preemptions)
    return _(
        "Red bands: moments when vLLM sent {n} orders back to wait (preemption) to free room in the "
        "warehouse; they start again later. vLLM does not say which orders they were."
    ).format(n=ui_i18n.number(total))
