"""Streamlit glue for load tests: choosing how the customers arrive (the load shape), and the first
token seen by three clocks side by side, with the gap between them explained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard.i18n import N_
from dashboard.measure.loadgen import LoadPlan
from dashboard.ui import i18n as ui_i18n

SHAPE_KEY = "load.shape"
LANES_KEY = "load.in_flight"
RATE_KEY = "load.rate"
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
