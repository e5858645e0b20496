"""Streamlit glue for experiment cards: make a card from a finished load test and offer it as a download
(`python -m dashboard replay CARD.json` runs it again on another machine)."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from dashboard.measure import cards
from dashboard.measure.loadgen import LoadPlan, LoadResult, Workload
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import state


def load_card(
    snap: Any, workload: Workload, plan: LoadPlan, result: LoadResult, label: str
) -> dict[str, Any] | None:
    """The card of a load test on the running server, or None when its config is not known."""
    if snap.config is None:
        return None
    report = getattr(snap, "report", None)
    env = cards.environment(state.backend(), snap.served_name, getattr(report, "vllm_version", None) or None)
    return cards.make_card(snap.config, workload, plan, result, env, label=label)


def download_button(card: dict[str, Any] | None, key: str) -> None:
    if not card:
        return
    _ = ui_i18n.translator()
    st.download_button(
        _("Experiment card (JSON)"),
        json.dumps(card, ensure_ascii=False, indent=2),
        file_name="experiment-card.json",
        mime="application/json",
        icon=":material/style:",
        key=key,
        help=_(
            "Settings, orders, machine and results in one file. Another machine runs it again with: {command}"
        ).format(command="python -m dashboard replay experiment-card.json"),
    )
