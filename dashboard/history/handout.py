"""The filled table as a handout: Markdown and a printable PNG or PDF, in Vietnamese or English.

Works on the plain JSON of a table run (`TableResult.to_dict()`, also what the history keeps), so the
history layer needs nothing from the measuring code. Every label is translated; numbers, dates and the
machine are written for the reader's language.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from babel.dates import format_datetime
from babel.numbers import format_decimal

from dashboard.i18n import N_, normalize, translate

EFFECT_NAMES = {
    "faster": N_("faster"),
    "slower": N_("slower"),
    "unclear": N_("no clear change"),
    "not_a_speed_setting": N_("not a speed setting"),
    "not_measured_here": N_("not measured here"),
}
WORKLOAD_NAMES = {
    "short": N_("short questions"),
    "repeated_long_prompt": N_("the same long question again and again"),
    "long_prompts": N_("long questions"),
    "many_at_once": N_("many orders at once"),
}
METRIC_NAMES = {
    "ttft_ms": N_("first token"),
    "tpot_ms": N_("time per token"),
    "e2e_ms": N_("whole answer"),
}


def _tr(lang: str):
    def tr(message: str, **params: object) -> str:
        return translate(message, lang, **params)

    return tr


def number(value: float | None, lang: str, digits: int = 2) -> str:
    if value is None:
        return "—"
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(round(value, digits), format=pattern, locale=lang)


def when(epoch: float | None, lang: str) -> str:
    if not epoch:
        return "—"
    return format_datetime(datetime.fromtimestamp(epoch).astimezone(), "medium", locale=lang)


def value_text(value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return translate(N_("on") if value else N_("off"), lang)
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def machine_line(data: Mapping[str, Any], lang: str) -> str:
    tr = _tr(lang)
    machine = data.get("machine") or {}
    devices = ", ".join(machine.get("devices") or []) or tr(N_("CPU only"))
    return tr(
        N_("Machine: {devices}, {cores} cores, {memory} GiB · vLLM {version} · {date}"),
        devices=devices,
        cores=machine.get("cpu_cores") or "?",
        memory=number(machine.get("memory_gib"), lang, 0),
        version=data.get("vllm_version") or "?",
        date=when(data.get("started_at"), lang),
    )


def noise_line(data: Mapping[str, Any], lang: str) -> str:
    """How far apart the same settings came out, for each figure a row of the table is judged on."""
    tr = _tr(lang)
    used = {(row.get("workload"), row.get("metric")) for row in data.get("rows") or [] if row.get("metric")}
    figures = [
        f
        for f in (data.get("noise") or {}).get("figures") or []
        if f.get("measured") and (not used or (f.get("workload"), f.get("metric")) in used)
    ]
    parts = []
    for f in figures:
        metric = tr(METRIC_NAMES.get(f["metric"], f["metric"]))
        workload = tr(WORKLOAD_NAMES.get(f["workload"], f["workload"]))
        parts.append(f"{metric} ({workload}) ±{number(f['percent'], lang, 0)}%")
    if not parts:
        return tr(N_("The same settings could not be measured twice, so the noise is taken to be ±30%."))
    return tr(
        N_("The same settings, started twice here, differed by up to: {parts}."), parts="; ".join(parts)
    )


def rows_for(data: Mapping[str, Any], lang: str) -> tuple[list[str], list[list[str]]]:
    """The handout's columns and cells (translated, formatted)."""
    tr = _tr(lang)
    header = [
        tr(N_("Flag")),
        tr(N_("Figure")),
        tr(N_("Values")),
        tr(N_("Ratio (interval)")),
        tr(N_("Orders")),
        tr(N_("Effect")),
        tr(N_("How does it affect response time?")),
        tr(N_("Start time")),
        tr(N_("Memory")),
    ]
    cells = []
    for row in data.get("rows") or []:
        interval = row.get("interval")
        ratio = "—"
        if row.get("ratio") is not None:
            ratio = number(row["ratio"], lang)
            if interval:
                ratio += f" ({number(interval[0], lang)}–{number(interval[1], lang)})"
        cells.append(
            [
                f"`{row.get('cli', row['flag'])}`",
                tr(METRIC_NAMES[row["metric"]]) if row.get("metric") in METRIC_NAMES else "—",
                " → ".join(value_text(v, lang) for v in row.get("values") or []) or "—",
                ratio,
                str(row.get("n") or "—"),
                tr(EFFECT_NAMES.get(row["effect"], row["effect"])),
                (row.get("verdict") or {}).get(lang, ""),
                _pair(row.get("start_time_s"), lang, 0, "s"),
                _pair(row.get("memory_gib"), lang, 2, "GiB"),
            ]
        )
    return header, cells


def _pair(values: Sequence[float | None] | None, lang: str, digits: int, unit: str) -> str:
    known = [v for v in values or [] if v is not None]
    if len(known) < 2:
        return "—"
    return f"{number(known[0], lang, digits)} → {number(known[1], lang, digits)} {unit}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(data: Mapping[str, Any], lang: str | None = "vi") -> str:
    lang = normalize(lang)
    tr = _tr(lang)
    header, cells = rows_for(data, lang)
    lines = [
        "# " + tr(N_("How does each setting affect response time?")),
        "",
        machine_line(data, lang),
        "",
        noise_line(data, lang),
        "",
        tr(
            N_(
                "Ratio = the figure at the second value divided by the figure at the first (below 1 is "
                "faster), with its confidence interval (95%). A row says faster or slower only when the "
                "whole interval lies outside the noise."
            )
        ),
        "",
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def table_image(data: Mapping[str, Any], lang: str | None = "vi", fmt: str = "png") -> bytes:
    """A printable page (A4 landscape proportions) of the table: PNG or PDF, drawn with plotly + kaleido."""
    import plotly.graph_objects as go  # heavy: only when a handout is asked for

    lang = normalize(lang)
    tr = _tr(lang)
    header, cells = rows_for(data, lang)
    widths = [16, 9, 11, 14, 6, 10, 46, 10, 12]
    wrapped = [
        [_wrap(cell.strip("`"), width) for cell, width in zip(row, widths, strict=True)] for row in cells
    ]
    columns = [list(column) for column in zip(*wrapped, strict=True)] if wrapped else [[] for _ in header]
    figure = go.Figure(
        go.Table(
            columnwidth=widths,
            header={"values": [f"<b>{h}</b>" for h in header], "align": "left", "fill_color": "#f1c40f"},
            cells={"values": columns, "align": "left", "font": {"size": 10}, "height": 22},
        )
    )
    subtitle = "<br>".join(_wrap(line, 190) for line in (machine_line(data, lang), noise_line(data, lang)))
    title = tr(N_("How does each setting affect response time?"))
    figure.update_layout(
        title={"text": f"<b>{title}</b><br><sup>{subtitle}</sup>"},
        margin={"l": 20, "r": 20, "t": 110, "b": 20},
        width=1500,
        height=180 + 95 * max(1, len(cells)),
    )
    return figure.to_image(format=fmt)


def _wrap(text: str, width: int) -> str:
    return "<br>".join(textwrap.wrap(str(text), width=max(8, int(width * 1.6)))) or " "
