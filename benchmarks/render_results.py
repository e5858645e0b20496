"""Render the charts of a results folder (JSON and logs written by tests/gpu/test_gpu.py and by the CLI's
probe and sweep) as PNG files beside them, with the product's own chart builders.

Files read when present (a chart whose data is missing is skipped with a note):
    pika_json_brief.json  eager.json  prefix_caching.json  memory_utilization.json  nvml_process_tree.json
    probe.json  sweep_O.json  sweep_seqs.json  sweeps.log
Charts written:
    latency_targets.png  eager_vs_graphs.png  prefix_caching.png  sweep_optimization_level.png
    sweep_max_num_seqs.png  memory_utilization.png  memory_breakdown.png  startup_probe.png
    startup_compared.png

PNG export needs kaleido and a Chrome or Chromium (BROWSER_PATH is set to `chromium` on PATH when unset).

    python benchmarks/render_results.py docs/results/h100-2026-11-24 [--lang en] [--scale 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import flags, models  # noqa: E402
from dashboard.engine.config import default_config  # noqa: E402
from dashboard.engine.startup_log import PHASE_LABELS  # noqa: E402
from dashboard.i18n import N_, translator  # noqa: E402
from dashboard.measure import predict  # noqa: E402
from dashboard.ui import charts, measure_charts, results_charts  # noqa: E402
from dashboard.ui.measure_jobs import chart_row  # noqa: E402
from dashboard.ui.results_charts import LatencyTarget, UtilizationRow  # noqa: E402

GIB = 1024**3
WIDTH_PX = 1000
Translate = Callable[[str], str]

# Outside figures the report compares with (docs: the brief and the measured reference of the same day).
REFERENCE_JSON_P50_MS = 67.0
REFERENCE_TTFT_P50_MS = 20.0
BRIEF_FREE_TEXT_MS = 170.0
OWNER_HOPE_MS = 10.0

# The brief's server settings, as tests/gpu/test_gpu.py starts them.
BRIEF_VALUES: dict[str, Any] = {
    "dtype": "float16",
    "gpu_memory_utilization": 0.15,
    "max_model_len": 2048,
    "max_num_seqs": 128,
    "enable_prefix_caching": True,
}

LOG_PHASE = re.compile(r"^\[\s*(?P<seconds>\d+(?:\.\d+)?) s\] (?P<label>.+?)(?:\s{2}\(.*\))?$")
LOG_SWEEP_START = re.compile(r"^\[\d+/\d+\] (?P<flag>--[\w-]+) = (?P<value>\S+): starting$")


def read_json(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name
    if not path.exists():
        print(f"skipped: {name} not found")
        return None
    return json.loads(path.read_text())


def save(figure: go.Figure, folder: Path, name: str, scale: float) -> None:
    path = folder / name
    height = int(figure.layout.height or 450)
    # Static export has no room to spare: let every axis push the margins out for its labels.
    figure.update_layout(font={"family": "DejaVu Sans, Noto Sans, sans-serif", "size": 13})
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    margin = figure.layout.margin
    figure.update_layout(margin={"l": max(margin.l or 0, 20), "r": max(margin.r or 0, 30), "b": 20})
    figure.write_image(path, width=WIDTH_PX, height=height, scale=scale)
    print(f"wrote {path.name}")


# ---------------------------------------------------------------------------------------------- latency


def latency_targets(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    brief = read_json(folder, "pika_json_brief.json")
    if brief is None:
        return None
    load = brief["load"]
    targets = [
        LatencyTarget(_("This run: JSON answer, CUDA graphs"), load["e2e_ms"]["p50"], load["ttft_ms"]["p50"]),
        LatencyTarget(_("Outside reference: JSON answer"), REFERENCE_JSON_P50_MS, REFERENCE_TTFT_P50_MS),
        LatencyTarget(_("The brief: free text up to 50 tokens"), BRIEF_FREE_TEXT_MS),
        LatencyTarget(_("The owner's hope"), OWNER_HOPE_MS),
    ]
    return results_charts.latency_targets_figure(targets, _=_, lang=lang)


def eager_vs_graphs(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    eager = read_json(folder, "eager.json")
    if eager is None:
        return None
    settings = [
        (_("CUDA graphs (eager off)"), eager["graphs"]),
        (_("--enforce-eager"), eager["eager"]),
    ]
    title = _("Eager mode against CUDA graphs, one request at a time")
    return results_charts.setting_bars_figure(settings, title, _=_, lang=lang)


def prefix_caching(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    prefix = read_json(folder, "prefix_caching.json")
    if prefix is None:
        return None
    settings = [(_("Prefix caching on"), prefix["on"]), (_("Prefix caching off"), prefix["off"])]
    metrics = (
        ("ttft_p50_ms", N_("First token, median (ms)")),
        ("e2e_p50_ms", N_("Whole answer, median (ms)")),
    )
    title = _("Copying the worksheet (prefix caching), one request at a time")
    return results_charts.setting_bars_figure(settings, title, metrics=metrics, _=_, lang=lang)


def sweep(folder: Path, name: str, _: Translate) -> go.Figure | None:
    data = read_json(folder, name)
    if data is None:
        return None
    cli = flags.get(data["flag"]).cli
    rows = [chart_row(row, str(row["value"])) for row in data["rows"] if row.get("ok")]
    plan = data["plan"]
    title = _(results_charts.SWEEP_TITLE).format(
        flag=cli, requests=plan["requests"], concurrency=plan["concurrency"]
    )
    return measure_charts.sweep_figure(rows, cli, _, title=title)


# ---------------------------------------------------------------------------------------------- memory


def brief_config(**values: Any):
    return default_config("cuda").with_values(BRIEF_VALUES | values)


def embedded_shape() -> models.ModelShape | None:
    try:
        return models.shape(models.resolve("embedded", prepare=False))
    except models.ModelUnavailable:
        return None


def predicted_tokens(fraction: float, total_bytes: int) -> int | None:
    shape = embedded_shape()
    if shape is None:
        return None
    config = brief_config(enforce_eager=True, gpu_memory_utilization=fraction)
    return predict.predict(config, shape, "cuda", total_bytes).kv_tokens


def memory_utilization(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    data = read_json(folder, "memory_utilization.json")
    if data is None:
        return None
    total = data["total_bytes"]
    rows = [
        UtilizationRow(
            fraction=row["fraction"],
            asked_gib=row["fraction"] * total / GIB,
            held_gib=row["held_bytes"] / GIB,
            kv_cache_gib=row["kv_cache_gib"],
            kv_tokens=row["kv_cache_tokens"],
            predicted_kv_tokens=predicted_tokens(row["fraction"], total),
        )
        for row in data["rows"]
    ]
    return results_charts.utilization_memory_figure(rows, _=_, lang=lang)


def memory_breakdown(folder: Path, _: Translate) -> go.Figure | None:
    tree = read_json(folder, "nvml_process_tree.json")
    shape = embedded_shape()
    if tree is None or shape is None:
        return None
    prediction = predict.predict(brief_config(enforce_eager=True), shape, "cuda", tree["total"])
    predicted = measure_charts.Breakdown(
        prediction.weights_gib, prediction.kv_cache_gib, prediction.working_bytes / GIB, None
    )
    measured = measure_charts.measured_breakdown(
        tree["weights_gib"], tree["kv_cache_gib"], None, tree["process"] / GIB
    )
    return measure_charts.memory_breakdown_figure(predicted, measured, _)


# ---------------------------------------------------------------------------------------------- starts


def phases_of(startup: list[Mapping[str, Any]], _: Translate) -> list[tuple[str, float]]:
    ordered = sorted(startup, key=lambda phase: phase["seconds"])
    return [(_(PHASE_LABELS.get(p["phase"], p["phase"])), float(p["seconds"])) for p in ordered]


def sweep_starts(folder: Path, _: Translate) -> list[tuple[str, list[tuple[str, float]]]]:
    """The starts a sweep printed: '[1/2] --flag = value: starting' then '[  24.8 s] Settings read' lines."""
    path = folder / "sweeps.log"
    if not path.exists():
        return []
    key_of = {label: key for key, label in PHASE_LABELS.items()}
    starts: list[tuple[str, list[tuple[str, float]]]] = []
    for line in path.read_text().splitlines():
        header = LOG_SWEEP_START.match(line)
        if header:
            starts.append((f"{header['flag']} {header['value']}", []))
            continue
        phase = LOG_PHASE.match(line)
        if phase and starts and phase["label"] in key_of:
            starts[-1][1].append((_(phase["label"]), float(phase["seconds"])))
    return starts


def startup_probe(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    probe = read_json(folder, "probe.json")
    if probe is None:
        return None
    return charts.startup_phases_figure(phases_of(probe["startup"], _), _, lang=lang)


def startup_compared(folder: Path, _: Translate, lang: str) -> go.Figure | None:
    starts: list[tuple[str, list[tuple[str, float]]]] = []
    probe = read_json(folder, "probe.json")
    if probe is not None:
        starts.append((_("First start (compiles)"), phases_of(probe["startup"], _)))
    brief = read_json(folder, "pika_json_brief.json")
    if brief is not None:
        starts.append((_("Same settings again (compile cached)"), phases_of(brief["startup"], _)))
    starts += sweep_starts(folder, _)
    if not starts:
        return None
    return results_charts.startup_comparison_figure(starts, _=_, lang=lang)


# ---------------------------------------------------------------------------------------------- main


def render(folder: Path, lang: str, scale: float) -> None:
    _ = translator(lang)
    suffix = "" if lang == "en" else f".{lang}"
    figures: dict[str, go.Figure | None] = {
        "latency_targets": latency_targets(folder, _, lang),
        "eager_vs_graphs": eager_vs_graphs(folder, _, lang),
        "prefix_caching": prefix_caching(folder, _, lang),
        "sweep_optimization_level": sweep(folder, "sweep_O.json", _),
        "sweep_max_num_seqs": sweep(folder, "sweep_seqs.json", _),
        "memory_utilization": memory_utilization(folder, _, lang),
        "memory_breakdown": memory_breakdown(folder, _),
        "startup_probe": startup_probe(folder, _, lang),
        "startup_compared": startup_compared(folder, _, lang),
    }
    for name, figure in figures.items():
        if figure is not None:
            save(figure, folder, f"{name}{suffix}.png", scale)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a results folder (JSON and logs of one run)")
    parser.add_argument("--lang", default="en", choices=("en", "vi"))
    parser.add_argument("--scale", type=float, default=2.0, help="pixel density of the PNG files")
    args = parser.parse_args()
    if not os.environ.get("BROWSER_PATH"):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            os.environ["BROWSER_PATH"] = chromium
    render(args.folder, args.lang, args.scale)


if __name__ == "__main__":
    main()
