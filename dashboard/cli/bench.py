"""`bench`: measure a preset's request (or made-up questions) in one of the load shapes.

Either the factory starts a server for the preset and stops it afterwards, or, with `--url`, it
attaches to a running OpenAI-compatible vLLM server it did not start (the key, if any, comes from the
environment variable named by `--api-key-env`) and never restarts it.

Shapes: fixed concurrency levels (`--concurrency 1,4,16`), Poisson or constant arrival rates
(`--shape poisson|constant --rate 2,5`), everything at once (`--shape throughput`), or a sweep from one
at a time to saturation (`--shape sweep`) that stops by itself when the server is over-saturated.
Each level's figures (p50/p90/p99 of time to first token, time per token and whole answer, answers and
tokens per second, goodput with `--ttft-limit/--tpot-limit/--e2e-limit`, errors, and the first token
by three clocks) are printed, saved to the history the moment they exist, and written to --json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.engine import presets
from dashboard.engine.carousel import Carousel
from dashboard.engine.report import StartupReport, mask_config
from dashboard.history.store import HistoryStore
from dashboard.i18n import N_, translate
from dashboard.measure import loadgen
from dashboard.measure.attach import AttachedServer, AttachError, attach
from dashboard.measure.loadgen import LatencyLimits, LoadPlan, LoadResult, SweepStep, Workload
from dashboard.measure.probe import pick_port

REQUEST_TIMEOUT_S = 300.0
SHAPES = ("concurrency", "poisson", "constant", "throughput", "sweep")


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "bench",
        help=_(N_("measure a preset's request in a load shape, on a server it starts or one at --url")),
        parents=[common.language_option(_)],
        allow_abbrev=False,  # `--api-key KEY` must not pass for `--api-key-env`
    )
    common.add_config_options(parser, _, preset_required=False)
    add_load_options(parser, _)
    add_attach_options(parser, _)
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="concurrency",
        help=_(
            N_("how requests are sent: fixed concurrency, Poisson or constant rate, all at once, or a sweep")
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=None,
        metavar="C1,C2,...",
        help=_(N_("requests in flight at each level, e.g. 1,4,16 (with a rate or all at once: the cap)")),
    )
    parser.add_argument(
        "--rate",
        type=_float_list,
        metavar="R1,R2,...",
        help=_(N_("new requests per second at each level, for the poisson and constant shapes")),
    )
    parser.add_argument(
        "--duration",
        type=float,
        help=_(N_("seconds each level sends for, instead of a number of requests")),
    )
    parser.add_argument(
        "--warmup-s", type=float, default=0.0, help=_(N_("seconds at the start left out of the figures"))
    )
    parser.add_argument(
        "--cooldown-s", type=float, default=0.0, help=_(N_("seconds at the end left out of the figures"))
    )
    parser.add_argument(
        "--ttft-limit", type=float, metavar="MS", help=_(N_("goodput: first-token limit in ms"))
    )
    parser.add_argument(
        "--tpot-limit", type=float, metavar="MS", help=_(N_("goodput: per-token limit in ms"))
    )
    parser.add_argument(
        "--e2e-limit", type=float, metavar="MS", help=_(N_("goodput: whole-answer limit in ms"))
    )
    parser.add_argument(
        "--sweep-rates",
        type=int,
        default=loadgen.SWEEP_RATES,
        help=_(N_("rates tried between the two ends of a sweep")),
    )
    parser.set_defaults(func=run)


def add_attach_options(parser: argparse.ArgumentParser, _) -> None:
    """--url and --api-key-env: measure a running server instead of starting one."""
    parser.add_argument(
        "--url",
        help=_(N_("measure the running OpenAI-compatible server at this address instead of starting one")),
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=_(N_("name of the environment variable that holds the server's API key")),
    )


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


def _float_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
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


# ---------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BenchPlan:
    """What `bench` will do: the shape, its levels (concurrency or rates) and the plan for each."""

    shape: str
    levels: list[float]
    base: LoadPlan

    def label(self, preset: str) -> str:
        if self.shape == "sweep":
            return f"bench {preset} sweep"
        if self.shape == "throughput":
            return f"bench {preset} all at once"
        key = "c" if self.shape == "concurrency" else f"{self.shape} r"
        return f"bench {preset} {key}={','.join(f'{v:g}' for v in self.levels)}"


def limits_of(args: argparse.Namespace) -> LatencyLimits | None:
    values = [getattr(args, name, None) for name in ("ttft_limit", "tpot_limit", "e2e_limit")]
    if all(v is None for v in values):
        return None
    if any(v is not None and v <= 0 for v in values):
        raise common.CliError(N_("Latency limits must be positive numbers of milliseconds."))
    return LatencyLimits(*values)


def bench_plan(args: argparse.Namespace) -> BenchPlan:
    """Check the load options together and turn them into a BenchPlan (CliError says what to change)."""
    try:
        return _bench_plan(args)
    except ValueError as exc:
        raise common.CliError(
            N_("These load options do not fit together: {detail}"), detail=str(exc)
        ) from None


def _bench_plan(args: argparse.Namespace) -> BenchPlan:
    if args.requests < 1:
        raise common.CliError(N_("--requests must be at least 1."))
    if args.duration is not None and args.duration <= 0:
        raise common.CliError(N_("--duration must be a positive number of seconds."))
    if args.warmup_s < 0 or args.cooldown_s < 0:
        raise common.CliError(N_("--warmup-s and --cooldown-s cannot be negative."))
    shape = args.shape
    if shape in ("poisson", "constant") and not args.rate:
        raise common.CliError(N_("The {shape} shape needs --rate, e.g. --rate 2,5."), shape=shape)
    if shape not in ("poisson", "constant") and args.rate:
        raise common.CliError(N_("--rate only goes with --shape poisson or --shape constant."))
    if shape == "sweep" and args.sweep_rates < 1:
        raise common.CliError(N_("--sweep-rates must be at least 1."))
    options: dict[str, Any] = {
        "requests": None if args.duration else args.requests,
        "duration_s": args.duration,
        "warmup_s": args.warmup_s,
        "cooldown_s": args.cooldown_s,
        "limits": limits_of(args),
        "timeout_s": REQUEST_TIMEOUT_S,
    }
    caps = args.concurrency
    if shape == "concurrency":
        levels = [float(c) for c in (caps or [1, 4, 16])]
        return BenchPlan(shape, levels, LoadPlan(concurrency=1, **options))
    cap = caps[0] if caps else None
    if shape in ("poisson", "constant"):
        return BenchPlan(
            shape, list(args.rate), LoadPlan(concurrency=cap, rate=1.0, arrivals=shape, **options)
        )
    if shape == "throughput":
        return BenchPlan(
            shape, [float(cap or args.requests)], LoadPlan(concurrency=cap, throughput=True, **options)
        )
    return BenchPlan(shape, [], LoadPlan(concurrency=1, **options))


# ---------------------------------------------------------------------------------------------- rows


def level_row(result: LoadResult) -> dict[str, Any]:
    """One level as a flat, JSON-able row."""
    row: dict[str, Any] = {"concurrency": result.concurrency, "rate": result.rate, "shape": result.shape}
    for name, summary in (("ttft", result.ttft_ms), ("itl", result.itl_ms), ("e2e", result.e2e_ms)):
        for q in ("p50", "p90", "p99"):
            row[f"{name}_{q}_ms"] = _round(getattr(summary, q))
    row["tpot_p50_ms"] = _round(result.tpot_ms.p50)
    row["first_byte_p50_ms"] = _round(result.first_byte_ms.p50)
    row.update(
        {
            "requests_per_s": _round(result.requests_per_s, 3),
            "output_tokens_per_s": _round(result.output_tokens_per_s),
            "sent": result.sent,
            "ok": result.ok,
            "errors": result.errors,
            "error_kinds": result.error_kinds,
            "measured": result.measured,
            "warmup_excluded": result.warmup_excluded,
            "cooldown_excluded": result.cooldown_excluded,
            "goodput": _round(result.goodput, 4),
            "goodput_per_s": _round(result.goodput_per_s, 3),
            "limits": result.limits,
            "duration_s": _round(result.duration_s, 3),
            "mean_prompt_tokens": _round(result.mean_prompt_tokens),
            "mean_output_tokens": _round(result.mean_output_tokens),
            "clocks": _rounded_dict(result.clocks),
            "max_waiting": max((count for _t, count in result.waiting), default=None),
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


# ---------------------------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    if not args.preset and not args.input_tokens:
        raise common.CliError(N_("Say what to send: --preset NAME or --input-tokens N."))
    plan = bench_plan(args)
    if args.url:
        return run_attached(args, plan)
    if args.api_key_env:
        raise common.CliError(N_("--api-key-env goes with --url."))
    if not args.preset:
        raise common.CliError(N_("Starting a server needs --preset NAME (or measure one with --url)."))
    return run_started(args, plan)


def run_started(args: argparse.Namespace, plan: BenchPlan) -> int:
    lang = args.lang
    backend = common.backend(args)
    config = pick_port(common.build_config(args, backend), common.overrides(args))
    workload = workload_of(args)
    store = open_history(args)
    manager = Carousel(common.workdir(args), backend=backend)
    levels: list[dict[str, Any]] = []
    run_id = _create_run(store, mask_config(config), plan.label(args.preset), backend)
    output = {"preset": args.preset, "config": mask_config(config), "workload": workload.to_dict()}
    output.update({"shape": plan.shape, "levels": levels, "history_run_id": run_id})
    report = common.JsonReport(args.json, lang, **output)
    try:
        with report:
            started = manager.start(
                config, wait=True, timeout=args.timeout, on_phase=common.phase_printer(lang)
            )
            report.update(startup=startup_facts(started))
            _set_startup(store, run_id, started)
            if started.ok:
                target = AttachedServer(manager.base_url, manager.served_name, manager.api_key)
                measure(args, plan, target, workload, store, run_id, levels, report)
    finally:
        manager.close()
    failed = not started.ok or _failed_levels(plan, levels)
    summary = {"preset": args.preset, "shape": plan.shape, **startup_facts(started), "levels": levels}
    _finish(store, run_id, summary, "failed" if failed else "done")
    if not started.ok and started.error is not None:
        common.print_problem(started.error, lang)
    report.finish(report.data, "failed" if failed else "done")
    return common.EXIT_FAILED if failed else common.EXIT_OK


def attach_target(args: argparse.Namespace) -> AttachedServer:
    """The server at --url, its key from --api-key-env; CliError in the user's words when it fails."""
    model = args.model if getattr(args, "model", "embedded") not in (None, "", "embedded") else None
    try:
        return attach(args.url, args.api_key_env, model=model)
    except AttachError as exc:
        raise common.CliError(exc.message, common.EXIT_FAILED, **exc.params) from None


def run_attached(args: argparse.Namespace, plan: BenchPlan) -> int:
    if args.assignments:
        raise common.CliError(
            N_("--set changes a server the factory starts; it cannot change the one at --url.")
        )
    target = attach_target(args)
    print(
        translate(
            N_("Measuring {model} at {url} (not started by the factory)."),
            args.lang,
            model=target.served_name,
            url=target.base_url,
        ),
        flush=True,
    )
    workload = workload_of(args)
    store = open_history(args)
    label = plan.label(args.preset or "synthetic") + " @ " + target.base_url
    run_id = _create_run(store, target.describe(), label, "attached")
    levels: list[dict[str, Any]] = []
    output = {"preset": args.preset, "attached": target.describe(), "workload": workload.to_dict()}
    output.update({"shape": plan.shape, "levels": levels, "history_run_id": run_id})
    report = common.JsonReport(args.json, args.lang, **output)
    try:
        with report:
            measure(args, plan, target, workload, store, run_id, levels, report)
    finally:
        failed = _failed_levels(plan, levels)
        summary = {
            "preset": args.preset,
            "shape": plan.shape,
            "attached": target.describe(),
            "levels": levels,
        }
        _finish(store, run_id, summary, "failed" if failed else "done")
    report.finish(report.data, "failed" if failed else "done")
    return common.EXIT_FAILED if failed else common.EXIT_OK


def _failed_levels(plan: BenchPlan, levels: list[dict[str, Any]]) -> bool:
    if any(level["errors"] for level in levels):
        return True
    return not levels if plan.shape == "sweep" else len(levels) < len(plan.levels)


def measure(
    args: argparse.Namespace,
    plan: BenchPlan,
    target: AttachedServer,
    workload: Workload,
    store: HistoryStore | None,
    run_id: int | None,
    levels: list[dict[str, Any]],
    report: common.JsonReport | None = None,
) -> None:
    """Run the plan against `target`; each level is printed, stored and written to the report as soon
    as it is measured."""
    workload = workload.calibrated(target.base_url, target.served_name, target.api_key)

    def keep(row: dict[str, Any]) -> None:
        levels.append(row)
        if report is not None:
            report.update(levels=levels)
        if store is not None and run_id is not None:
            store.add_row(run_id, row)
        print_level(row, args.lang)

    if plan.shape == "sweep":
        loadgen.run_sweep(
            target.base_url,
            target.served_name,
            workload,
            requests_per_step=plan.base.requests or args.requests,
            rates=args.sweep_rates,
            api_key=target.api_key,
            limits=plan.base.limits,
            step_s=plan.base.duration_s,
            on_step=_sweep_keeper(keep, args.lang),
            timeout_s=REQUEST_TIMEOUT_S,
        )
        return
    loadgen.run_levels(
        target.base_url,
        target.served_name,
        workload,
        [int(v) if plan.shape == "concurrency" else v for v in plan.levels],
        api_key=target.api_key,
        on_level=lambda result: keep(level_row(result)),
        warmup=1,
        plan=plan.base,
        watch_metrics=True,
    )


def _sweep_keeper(keep: Callable[[dict[str, Any]], None], lang: str) -> Callable[[SweepStep], None]:
    def on_step(step: SweepStep) -> None:
        row = level_row(step.result) | {
            "step": step.kind,
            "oversaturated": step.oversaturated,
            "saturation_reason": step.reason,
        }
        keep(row)
        if step.oversaturated:
            print(translate(N_("Over-saturated ({reason}): the sweep stops here."), lang, reason=step.reason))

    return on_step


# ---------------------------------------------------------------------------------------------- printing


def print_level(row: dict[str, Any], lang: str) -> None:
    print(f"{_level_name(row, lang)}: " + level_text(row, lang), flush=True)
    clocks = row.get("clocks") or {}
    if clocks:
        print("    " + clocks_text(clocks, lang), flush=True)
    if row.get("goodput") is not None:
        print(
            "    "
            + translate(
                N_("goodput: {share} of requests within the limits ({rate} per second)"),
                lang,
                share=_fmt(row["goodput"] * 100, 0) + "%",
                rate=_fmt(row["goodput_per_s"], 2),
            ),
            flush=True,
        )
    for error, count in (row.get("error_kinds") or {}).items():
        print("    " + translate(N_("{count} x {error}"), lang, count=count, error=error), flush=True)


def _level_name(row: dict[str, Any], lang: str) -> str:
    step = row.get("step")
    if row.get("shape") in ("poisson", "constant"):
        name = translate(N_("{shape} {rate} per second"), lang, shape=row["shape"], rate=f"{row['rate']:g}")
    elif row.get("shape") == "throughput":
        name = translate(N_("all at once"), lang)
        if row.get("concurrency"):
            name += f" (≤ {row['concurrency']})"
    else:
        name = translate(N_("{n} at once"), lang, n=row.get("concurrency"))
    return f"{step}: {name}" if step and step != "rate" else name


def level_text(row: dict[str, Any], lang: str) -> str:
    return translate(
        N_(
            "first token {ttft} ms (p90 {ttft90}), per token {itl} ms, "
            "answer {e2e} ms (p90 {e2e90}, p99 {e2e99}), {rps} answers/s, {tps} tokens/s, {errors} errors"
        ),
        lang,
        ttft=_fmt(row["ttft_p50_ms"]),
        ttft90=_fmt(row["ttft_p90_ms"]),
        itl=_fmt(row["itl_p50_ms"]),
        e2e=_fmt(row["e2e_p50_ms"]),
        e2e90=_fmt(row["e2e_p90_ms"]),
        e2e99=_fmt(row["e2e_p99_ms"]),
        rps=_fmt(row["requests_per_s"], 2),
        tps=_fmt(row["output_tokens_per_s"]),
        errors=row["errors"],
    )


def clocks_text(clocks: dict[str, Any], lang: str) -> str:
    return translate(
        N_(
            "first token by three clocks (means): first byte {byte} ms, first text {content} ms, "
            "vLLM's own {server} ms (of which queue {queue} ms)"
        ),
        lang,
        byte=_fmt(clocks.get("first_byte_mean_ms")),
        content=_fmt(clocks.get("first_content_mean_ms")),
        server=_fmt(clocks.get("server_mean_ms")),
        queue=_fmt(clocks.get("queue_mean_ms")),
    )


# ---------------------------------------------------------------------------------------------- history


def _create_run(store: HistoryStore | None, config: dict[str, Any], label: str, backend: str) -> int | None:
    if store is None:
        return None
    return store.create_run("load", config, label=label, backend=backend)


def _set_startup(store: HistoryStore | None, run_id: int | None, report: StartupReport) -> None:
    if store is not None and run_id is not None:
        store.set_startup(run_id, report.to_dict())


def _finish(store: HistoryStore | None, run_id: int | None, summary: dict[str, Any], status: str) -> None:
    if store is not None and run_id is not None:
        store.finish_run(run_id, summary, status=status)


def _rounded_dict(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in data.items()}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}"
