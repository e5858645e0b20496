"""`bench`: start a server for a preset, run its request at several concurrency levels, stop.

Each level's figures (p50/p90/p99 of time to first token, time per token and whole answer, answers and
tokens per second, errors) are printed, saved to the history the moment they exist, and written to
--json at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.engine import presets
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import StartupReport, mask_config
from dashboard.engine.server import ServerManager
from dashboard.history.store import HistoryStore
from dashboard.i18n import N_, translate
from dashboard.measure import loadgen
from dashboard.measure.loadgen import LoadResult, Workload
from dashboard.measure.probe import pick_port

REQUEST_TIMEOUT_S = 300.0


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "bench",
        help=_(N_("start a server, measure its preset request at several concurrency levels, stop")),
        parents=[common.language_option(_)],
    )
    common.add_config_options(parser, _, preset_required=True)
    add_load_options(parser, _)
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 4, 16],
        metavar="C1,C2,...",
        help=_(N_("requests in flight at each level, e.g. 1,4,16")),
    )
    parser.set_defaults(func=run)


def add_load_options(parser: argparse.ArgumentParser, _) -> None:
    """Options `bench` and `sweep` share: how many requests, what they ask, where the JSON goes."""
    parser.add_argument("--requests", type=int, default=8, help=_(N_("requests measured at each step")))
    parser.add_argument(
        "--input-tokens",
        type=int,
        help=_(N_("send made-up questions of about this many tokens instead of the preset's request")),
    )
    parser.add_argument(
        "--output-tokens", type=int, default=20, help=_(N_("answer length of the made-up questions"))
    )
    parser.add_argument("--json", type=Path, help=_(N_("file to write the results to")))
    parser.add_argument(
        "--no-history", action="store_true", help=_(N_("do not keep the results in the history"))
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return values


def workload_of(args: argparse.Namespace) -> Workload:
    if getattr(args, "input_tokens", None):
        if args.input_tokens < 1 or args.output_tokens < 1:
            raise common.CliError(N_("--input-tokens and --output-tokens must be at least 1."))
        return Workload.synthetic(args.input_tokens, args.output_tokens, label="synthetic")
    preset = presets.get(args.preset)
    return Workload.from_request(preset.request, label=preset.name)


def open_history(args: argparse.Namespace) -> HistoryStore | None:
    if getattr(args, "no_history", False):
        return None
    try:
        return HistoryStore()
    except Exception:  # the measurement matters more than its archive
        print(translate(N_("The history cannot be opened; results are not kept."), args.lang))
        return None


def level_row(result: LoadResult) -> dict[str, Any]:
    """One concurrency level as a flat, JSON-able row."""
    row: dict[str, Any] = {"concurrency": result.concurrency}
    for name, summary in (("ttft", result.ttft_ms), ("itl", result.itl_ms), ("e2e", result.e2e_ms)):
        for q in ("p50", "p90", "p99"):
            row[f"{name}_{q}_ms"] = _round(getattr(summary, q))
    row["tpot_p50_ms"] = _round(result.tpot_ms.p50)
    row.update(
        {
            "requests_per_s": _round(result.requests_per_s, 3),
            "output_tokens_per_s": _round(result.output_tokens_per_s),
            "sent": result.sent,
            "ok": result.ok,
            "errors": result.errors,
            "error_kinds": result.error_kinds,
            "duration_s": _round(result.duration_s, 3),
            "mean_prompt_tokens": _round(result.mean_prompt_tokens),
            "mean_output_tokens": _round(result.mean_output_tokens),
        }
    )
    return row


def startup_facts(report: StartupReport) -> dict[str, Any]:
    return {
        "ready_s": report.ready_s,
        "kv_cache_tokens": report.kv_cache_tokens,
        "max_concurrency": report.max_concurrency,
        "kv_cache_gib": report.kv_cache_gib,
        "weights_gib": report.weights_gib,
        "command": report.command_text,
        "error": report.error.to_dict() if report.error else None,
    }


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    if args.requests < 1:
        raise common.CliError(N_("--requests must be at least 1."))
    backend = common.backend(args)
    config = pick_port(common.build_config(args, backend), common.overrides(args))
    workload = workload_of(args)
    store = open_history(args)
    manager = ServerManager(common.workdir(args), backend=backend)
    levels: list[dict[str, Any]] = []
    run_id = _create_run(
        store, config, f"bench {args.preset} c={','.join(map(str, args.concurrency))}", backend
    )
    try:
        report = manager.start(config, wait=True, timeout=args.timeout, on_phase=common.phase_printer(lang))
        _set_startup(store, run_id, report)
        if report.ok:
            _run_levels(args, manager, workload, store, run_id, levels)
    finally:
        manager.close()
    failed = not report.ok or any(level["errors"] for level in levels) or len(levels) < len(args.concurrency)
    summary = {"preset": args.preset, **startup_facts(report), "levels": levels}
    _finish(store, run_id, summary, "failed" if failed else "done")
    if not report.ok and report.error is not None:
        common.print_problem(report.error, lang)
    output = {"preset": args.preset, "config": mask_config(config), "workload": workload.to_dict()}
    output.update({"startup": startup_facts(report), "levels": levels, "history_run_id": run_id})
    write_json(args, output)
    return common.EXIT_FAILED if failed else common.EXIT_OK


def _run_levels(
    args: argparse.Namespace,
    manager: ServerManager,
    workload: Workload,
    store: HistoryStore | None,
    run_id: int | None,
    levels: list[dict[str, Any]],
) -> None:
    workload = workload.calibrated(manager.base_url, manager.served_name, manager.api_key)

    def on_level(result: LoadResult) -> None:
        row = level_row(result)
        levels.append(row)
        if store is not None and run_id is not None:
            store.add_row(run_id, row)
        print_level(row, args.lang)

    loadgen.run_levels(
        manager.base_url,
        manager.served_name,
        workload,
        args.concurrency,
        requests_per_level=args.requests,
        api_key=manager.api_key,
        on_level=on_level,
        warmup=1,
    )


def print_level(row: dict[str, Any], lang: str) -> None:
    print(
        translate(
            N_(
                "{concurrency} at once: first token {ttft} ms (p90 {ttft90}), per token {itl} ms, "
                "answer {e2e} ms (p90 {e2e90}, p99 {e2e99}), {rps} answers/s, {tps} tokens/s, {errors} errors"
            ),
            lang,
            concurrency=row["concurrency"],
            ttft=_fmt(row["ttft_p50_ms"]),
            ttft90=_fmt(row["ttft_p90_ms"]),
            itl=_fmt(row["itl_p50_ms"]),
            e2e=_fmt(row["e2e_p50_ms"]),
            e2e90=_fmt(row["e2e_p90_ms"]),
            e2e99=_fmt(row["e2e_p99_ms"]),
            rps=_fmt(row["requests_per_s"], 2),
            tps=_fmt(row["output_tokens_per_s"]),
            errors=row["errors"],
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------------------------- history


def _create_run(store: HistoryStore | None, config: ServerConfig, label: str, backend: str) -> int | None:
    if store is None:
        return None
    return store.create_run("load", mask_config(config), label=label, backend=backend)


def _set_startup(store: HistoryStore | None, run_id: int | None, report: StartupReport) -> None:
    if store is not None and run_id is not None:
        store.set_startup(run_id, report.to_dict())


def _finish(store: HistoryStore | None, run_id: int | None, summary: dict[str, Any], status: str) -> None:
    if store is not None and run_id is not None:
        store.finish_run(run_id, summary, status=status)


def write_json(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json is None:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    print(translate(N_("Report written to {path}"), args.lang, path=str(args.json)))


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}"
