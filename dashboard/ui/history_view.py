"""What the history page shows, worked out from the stored runs: plain data in, plain data out.

No Streamlit here. Key figures of a run, before/after pairs of Apply, which change is better or worse,
the charts of a run, and the bilingual report as a zip with its charts as PNG when plotly can draw them.
"""

from __future__ import annotations

import io
import logging
import shlex
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from babel.dates import format_datetime
from babel.numbers import format_decimal

from dashboard.engine import config as config_mod
from dashboard.engine import flags, models
from dashboard.engine.config import ServerConfig
from dashboard.history import export
from dashboard.history.records import RunRecord, flag_values, flatten, is_number
from dashboard.i18n import N_, translate
from dashboard.measure.compare import BeforeAfter
from dashboard.ui import measure_charts
from dashboard.ui.measure_jobs import chart_row

log = logging.getLogger(__name__)
Translate = Callable[[str], str]

KIND_NAMES = {
    "startup": N_("server start"),
    "probe": N_("probe"),
    "load": N_("load test"),
    "sweep": N_("sweep"),
    "playground": N_("playground"),
    "apply": N_("apply settings"),
    "table": N_("whole table"),
}
STATUS_NAMES = {
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "interrupted": N_("interrupted"),
}
STARTS = ("apply", "startup")
MEASUREMENTS = ("playground", "load", "probe")  # a sweep restarts with other settings: not "under" one start
IGNORED_FLAGS = frozenset({"api_key"})


def _identity(text: str) -> str:
    return text


def when(moment: str | None, lang: str, width: str = "short") -> str:
    """An ISO 8601 UTC text in the reader's local time and language ('' when missing)."""
    if not moment:
        return ""
    try:
        stamp = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    return format_datetime(stamp.astimezone(), width, locale=lang)


# ---------------------------------------------------------------------------------------------- key figures


def key_figures(run: RunRecord) -> dict[str, float]:
    """The few numbers that describe a run at a glance (milliseconds, seconds, tokens), by kind."""
    summary = flatten(run.summary or {})
    picks = {
        "apply": (("ready_s", "ready_s"), ("kv_cache_tokens", "kv_cache_tokens")),
        "startup": (("ready_s", "ready_s"), ("kv_cache_tokens", "kv_cache_tokens")),
        "playground": (("ttft_ms", "ttft_ms"), ("e2e_ms", "e2e_ms")),
        "probe": (("ttft_ms", "ttft_ms_median"), ("e2e_ms", "e2e_ms_median")),
        "load": (("ttft_ms", "ttft_ms.p50"), ("e2e_ms", "e2e_ms.p50"), ("requests_per_s", "requests_per_s")),
        "sweep": (("measured", "measured"),),
    }.get(run.kind, ())
    found = {name: float(summary[key]) for name, key in picks if is_number(summary.get(key))}
    if run.kind == "load" and not found and run.summary and run.summary.get("levels"):
        best = run.summary["levels"][0]
        for name, key in (("ttft_ms", "ttft_p50_ms"), ("e2e_ms", "e2e_p50_ms")):
            if is_number(best.get(key)):
                found[name] = float(best[key])
    return found


FIGURE_FORMATS: dict[str, str] = {
    "ready_s": N_("ready in {value} s"),
    "kv_cache_tokens": N_("{value} KV tokens"),
    "ttft_ms": N_("first token {value} ms"),
    "e2e_ms": N_("answer {value} ms"),
    "requests_per_s": N_("{value} answers/s"),
    "measured": N_("{value} values measured"),
}


def key_figures_text(run: RunRecord, number: Callable[[float, int], str], _: Translate = _identity) -> str:
    parts = []
    for name, value in key_figures(run).items():
        digits = 0 if name in ("kv_cache_tokens", "measured") or value >= 100 else 1
        parts.append(_(FIGURE_FORMATS[name]).format(value=number(value, digits)))
    return " · ".join(parts)


def verdict_of(run: RunRecord, lang: str) -> str:
    """A sweep's verdict in `lang`: from its stored msgid and numbers when it has them (so a run measured
    before a translation existed still reads in the reader's language), else the stored sentence."""
    summary = run.summary or {}
    message = summary.get("verdict_message")
    if isinstance(message, str) and message:
        params = dict(summary.get("verdict_params") or {})
        if is_number(params.get("ratio")):
            params["ratio"] = format_decimal(round(float(params["ratio"]), 1), format="#,##0.0", locale=lang)
        try:
            return translate(message, lang, **params)
        except (KeyError, IndexError, ValueError):
            pass
    return str(summary.get(f"verdict_{lang}") or "")


# ------------------------------------------------------------------------------------------ field labels

FIELD_LABELS: dict[str, str] = {
    "ready_s": N_("Ready after (s)"),
    "kv_cache_tokens": N_("Warehouse tokens"),
    "max_concurrency": N_("Full belts at once"),
    "kv_cache_gib": N_("Warehouse (GiB)"),
    "weights_gib": N_("Model bricks (GiB)"),
    "ttft_ms": N_("First token (ms)"),
    "e2e_ms": N_("Whole answer (ms)"),
    "mean_itl_ms": N_("Time per next token (ms)"),
    "tpot_ms": N_("Time per next token (ms)"),
    "itl_ms": N_("Time per next token (ms)"),
    "requests_per_s": N_("Answers per second"),
    "output_tokens_per_s": N_("Answer tokens per second"),
    "duration_s": N_("Duration (s)"),
    "errors": N_("Failed requests"),
    "sent": N_("Requests sent"),
    "requests_ok": N_("Answered requests"),
    "measured": N_("Values measured"),
}
STAT_LABELS: dict[str, str] = {
    "p50": N_("middle"),
    "median": N_("middle"),
    "mean": N_("mean"),
    "p90": N_("slowest 10%"),
    "p95": N_("slowest 5%"),
    "p99": N_("slowest 1%"),
    "min": N_("lowest"),
    "max": N_("highest"),
}


def field_label(key: str, _: Translate = _identity) -> str | None:
    """A stored figure's name in words ('e2e_ms.p50' -> 'Whole answer (ms) · middle'); None when the
    figure has no label (such figures are not shown, so no raw key reaches a page)."""
    if key in FIELD_LABELS:
        return _(FIELD_LABELS[key])
    base, dot, stat = key.rpartition(".")
    if not dot:
        base, _sep, stat = key.rpartition("_")
    if base in FIELD_LABELS and stat in STAT_LABELS:
        return " · ".join((_(FIELD_LABELS[base]), _(STAT_LABELS[stat])))
    return None


# ------------------------------------------------------------------------------------------ better, worse

LOWER_IS_BETTER = ("_ms", "ready_s", "duration_s", "errors", "failed", "_bytes", "_gib", "seconds")
HIGHER_IS_BETTER = ("per_s", "kv_cache_tokens", "max_concurrency", "hit_rate", "requests_ok", "measured")


def direction(metric: str) -> int:
    """+1 when a bigger number is better, -1 when a smaller one is, 0 when it is neither."""
    name = metric.lower()
    if any(part in name for part in HIGHER_IS_BETTER):
        return 1
    if any(part in name for part in LOWER_IS_BETTER):
        return -1
    return 0


# How much two runs of the same settings differ on this machine, by figure: starts vary by ~15% (41.5 s
# and 45.3 s for the same config), single timings by ~10%; counts computed by vLLM do not vary.
NOISE_TOLERANCE = (("ready_s", 0.15), ("duration_s", 0.15), ("_ms", 0.10), ("per_s", 0.10))


def tolerance_for(metric: str) -> float:
    return next((share for part, share in NOISE_TOLERANCE if part in metric), 0.02)


def judgement(metric: str, a: float, b: float, tolerance: float | None = None) -> str:
    """'better', 'worse' or 'same' for going from a to b; '' when the metric has no good direction.
    A gap inside what noise alone does on this machine is 'same', never painted as worse."""
    sense = direction(metric)
    if sense == 0:
        return ""
    tolerance = tolerance_for(metric) if tolerance is None else tolerance
    scale = max(abs(a), abs(b), 1e-12)
    if abs(b - a) / scale <= tolerance:
        return "same"
    return "better" if (b - a) * sense > 0 else "worse"


@dataclass(frozen=True)
class DeltaRow:
    metric: str
    a: float
    b: float
    delta: float
    percent: float | None
    judgement: str


def delta_rows(run_a: RunRecord, run_b: RunRecord) -> list[DeltaRow]:
    """Every number both runs' summaries share, with its change and whether that change is good."""
    a, b = flatten(run_a.summary or {}), flatten(run_b.summary or {})
    rows = []
    for name in a:
        labelled = field_label(name) is not None
        if labelled and name in b and is_number(a[name]) and is_number(b[name]) and not name.endswith("_at"):
            va, vb = float(a[name]), float(b[name])
            percent = (vb - va) / va * 100 if va else None
            rows.append(DeltaRow(name, va, vb, vb - va, percent, judgement(name, va, vb)))
    return rows


def flag_changes(config_a: Mapping[str, Any], config_b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(flag, before, after) for every flag whose value differs (secrets left out)."""
    a, b = flag_values(config_a), flag_values(config_b)
    names = sorted((a.keys() | b.keys()) - IGNORED_FLAGS - {"sweep"})
    return [(name, a.get(name), b.get(name)) for name in names if a.get(name) != b.get(name)]


# ---------------------------------------------------------------------------------------------- apply cards


def apply_comparisons(runs: Sequence[RunRecord], limit: int = 5) -> list[tuple[RunRecord, BeforeAfter]]:
    """The user's Apply runs that carry a before/after comparison, newest first. A sweep's restarts are
    "startup" runs and never appear here; older Apply runs without a comparison are left out."""
    found = []
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        data = (run.summary or {}).get("comparison")
        if run.kind == "apply" and isinstance(data, Mapping):
            found.append((run, BeforeAfter.from_dict(data)))
        if len(found) >= limit:
            break
    return found


# ---------------------------------------------------------------------------------------------- command


def serve_command(run: RunRecord) -> str:
    """A `vllm serve` line for the run's settings, the built-in model named by its Hugging Face id.
    Built from the flag catalog (which knows vLLM's defaults); secrets hidden."""
    model = str(run.config.get("model") or models.EMBEDDED)
    if model == models.EMBEDDED:
        model = models.EMBEDDED_NAME
    try:
        config = ServerConfig.from_dict({"model": model, "values": run.config.get("values") or {}})
        words = config_mod.argv(config, model, model)
        words = ["vllm", "serve", model, *words[5:]]  # drop "python -m <module> --model <path>"
        return config_mod.command_prefix(config) + shlex.join(export.mask_words(words))
    except (KeyError, ValueError):  # a stored config the catalog no longer knows: plain options
        values = {k: v for k, v in flag_values(run.config).items() if k != "sweep"}
        words = export.command_words({**values, "model": model})
    return export.key_prefix(flag_values(run.config)) + shlex.join(export.mask_words(words))


# ---------------------------------------------------------------------------------------------- charts


def value_label(value: Any, _: Translate = _identity, lang: str | None = None) -> str:
    """A flag's value as the reader writes it: on/off, 0,9 in Vietnamese (0.9 without a language)."""
    if isinstance(value, bool):
        return _("on") if value else _("off")
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, float) and lang:
        return format_decimal(value, locale=lang)
    return str(value)


def run_figure(run: RunRecord, _: Translate = _identity, lang: str | None = None) -> go.Figure | None:
    """The chart that tells a run's story: a sweep against its values, a load test against its levels."""
    rows = [row.data for row in run.rows]
    if run.kind == "sweep" and rows:
        flag = (run.summary or {}).get("flag") or (run.config.get("sweep") or {}).get("flag") or ""
        points = [chart_row(row, value_label(row.get("value"), _, lang)) for row in rows]
        return measure_charts.sweep_figure(points, _cli(flag), _)
    if run.kind == "load" and rows and all("concurrency" in row for row in rows):
        points = [chart_row(row, str(row["concurrency"])) for row in rows]
        return measure_charts.levels_figure(points, _)
    return None


def _cli(flag: str) -> str:
    try:
        return flags.get(flag).cli
    except KeyError:
        return flag


def comparison_figure(rows: Sequence[DeltaRow], _: Translate = _identity) -> go.Figure:
    """Percent change of each shared number, green when better, red when worse, grey otherwise."""
    shown = [r for r in rows if r.percent is not None]
    colours = {"better": measure_charts.LEGO_GREEN, "worse": measure_charts.LEGO_RED}
    figure = go.Figure(
        go.Bar(
            x=[r.percent for r in shown],
            y=[field_label(r.metric, _) or r.metric for r in shown],
            orientation="h",
            marker_color=[colours.get(r.judgement, measure_charts.LEGO_GREY) for r in shown],
            hovertemplate="%{y}: %{x:+.1f} %<extra></extra>",
        )
    )
    figure.update_xaxes(title_text=_("Change from A to B (%)"), zeroline=True)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(
        title={"text": _("What changed from A to B"), "x": 0},
        height=120 + 26 * max(len(shown), 1),
        margin={"l": 10, "r": 10, "t": 48, "b": 10},
    )
    return figure


# ---------------------------------------------------------------------------------------------- report


def model_names(run: RunRecord) -> dict[str, str]:
    """For a run of the built-in model: the folder it loads on this machine and its Hub id, so an
    exported command names a model that exists (never the word "embedded")."""
    if flag_values(run.config).get("model") not in (models.EMBEDDED, models.EMBEDDED_NAME):
        return {}
    folder = models.embedded_dir()
    return {"local_model": str(folder), "hub_id": models.EMBEDDED_NAME}


def chart_pngs(
    run: RunRecord, langs: Sequence[str], translate: Callable[[str], Translate]
) -> dict[str, bytes]:
    """The run's chart as PNG per language ({file name: bytes}); {} when plotly cannot export images here."""
    images: dict[str, bytes] = {}
    for lang in langs:
        figure = run_figure(run, translate(lang), lang)
        if figure is None:
            return {}
        figure.update_layout(margin={"l": 70, "r": 30, "t": 100, "b": 60})  # no automargin in a picture
        try:
            images[f"charts/run-{run.id}-{lang}.png"] = figure.to_image(format="png", width=1200, scale=1)
        except Exception:  # no Chrome for kaleido, or kaleido missing: the report keeps its tables
            log.warning("plotly image export is not available", exc_info=True)
            return {}
    return images


def report_zip(run: RunRecord, images: Mapping[str, bytes]) -> bytes:
    """report.md (Vietnamese then English) with its charts beside it, zipped."""
    sections = []
    for lang in export.REPORT_LANGUAGES:
        charts = {Path(name).stem: Path(name) for name in images if name.endswith(f"-{lang}.png")}
        sections.append(export.as_markdown(run, lang, charts=charts or None, **model_names(run)).rstrip("\n"))
    markdown = "\n\n---\n\n".join(sections) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.md", markdown)
        for name, data in images.items():
            archive.writestr(name, data)
    return buffer.getvalue()
