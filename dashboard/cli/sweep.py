"""`sweep`: one flag, several values; the server restarts for each value and the same orders are measured.

Each value's row is printed and saved to the history as soon as it is measured; at the end the verdict
(one sentence in the chosen language) is printed and everything goes to --json.
"""

from __future__ import annotations

import argparse
from typing import Any

from dashboard.cli import common
from dashboard.cli.bench import add_load_options, open_history, workload_of
from dashboard.engine import flags
from dashboard.engine.carousel import Carousel
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import mask_config
from dashboard.history.store import HistoryStore
from dashboard.i18n import N_, translate
from dashboard.measure.loadgen import LoadPlan
from dashboard.measure.probe import pick_port
from dashboard.measure.sweep import ManagerView, SweepResult, SweepRow, run_sweep, verdict, verdict_message


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help=_(N_("restart the server with each value of one flag and measure the same orders each time")),
        parents=[common.language_option(_)],
    )
    common.add_config_options(parser, _, preset_required=True)
    parser.add_argument(
        "--flag", required=True, help=_(N_("the flag to move, by its name or vLLM option, e.g. max_num_seqs"))
    )
    parser.add_argument(
        "--values",
        required=True,
        metavar="V1,V2,...",
        help=_(N_("the values to try, e.g. 4,16,64 or on,off")),
    )
    parser.add_argument("--concurrency", type=int, default=1, help=_(N_("requests in flight at once")))
    add_load_options(parser, _)
    parser.add_argument(
        "--no-noise-pair",
        action="store_true",
        help=_(N_("do not start the first value again at the end to measure the noise (one start less)")),
    )
    parser.set_defaults(func=run, requests=3)


def flag_name(text: str) -> str:
    """A catalog name from 'max_num_seqs', 'max-num-seqs' or '--max-num-seqs'."""
    found = flags.by_cli(text) if text.startswith("-") else None
    name = found.name if found else text.replace("-", "_")
    if name not in flags.catalog():
        raise common.CliError(N_("Unknown flag: {name}"), name=text)
    return name


def parse_values(name: str, text: str) -> list[Any]:
    flag = flags.get(name)
    values = []
    for item in (part.strip() for part in text.replace(";", ",").split(",")):
        if not item:
            continue
        try:
            values.append(flag.coerce(item))
        except flags.FlagValueError as exc:
            raise common.CliError(
                N_("Bad value for {cli}: {detail}"), cli=flag.cli, detail=exc.reason
            ) from None
    if not values:
        raise common.CliError(N_("--values needs at least one value."))
    return values


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    if args.requests < 1 or args.concurrency < 1:
        raise common.CliError(N_("--requests and --concurrency must be at least 1."))
    name = flag_name(args.flag)
    values = parse_values(name, args.values)
    backend = common.backend(args)
    base = pick_port(common.build_config(args, backend), common.overrides(args))
    workload = workload_of(args)
    store = open_history(args)
    run_id = _create_run(store, name, values, base, workload.to_dict(), backend)
    manager = Carousel(common.workdir(args), backend=backend)
    rows: list[dict[str, Any]] = []
    report = common.JsonReport(
        args.json, lang, flag=name, values=values, rows=rows, base_config=mask_config(base)
    )

    def on_progress(index: int, total: int, stage: str) -> None:
        if stage == "starting":
            cli = flags.get(name).cli
            print(
                translate(
                    N_("[{n}/{total}] {cli} = {value}: starting"),
                    lang,
                    n=index + 1,
                    total=total,
                    cli=cli,
                    value=_shown(values[index]),
                ),
                flush=True,
            )

    def on_row(row: SweepRow) -> None:
        data = row.to_dict()
        rows.append(data)
        report.update(rows=rows)
        if store is not None and run_id is not None:
            store.add_row(run_id, data)
        print_row(row, lang)

    result: SweepResult | None = None
    try:
        with report:
            result = run_sweep(
                name,
                values,
                base,
                workload,
                ManagerView(manager, on_phase=common.phase_printer(lang)),
                on_progress=on_progress,
                on_row=on_row,
                plan=LoadPlan(concurrency=args.concurrency, requests=args.requests, timeout_s=300),
                warmup=1,
                start_timeout=args.timeout,
                noise_pair=not args.no_noise_pair,
            )
    finally:
        manager.close()
        if result is None:
            _finish(store, run_id, name, values, rows, "failed", None)
    measured = [row for row in result.rows if row.measured]
    status = "done" if measured else "failed"
    _finish(store, run_id, name, values, rows, status, result)
    print(result.verdict(lang))
    output = result.to_dict() | {"history_run_id": run_id, "base_config": mask_config(base)}
    report.finish(output, status)
    return common.EXIT_OK if len(measured) == len(values) else common.EXIT_FAILED


def print_row(row: SweepRow, lang: str) -> None:
    cli = flags.get(row.flag).cli
    if not row.measured:
        error = row.error or {}
        text = error.get(f"text_{lang}") or error.get("message") or "?"
        print(
            translate(
                N_("{cli} = {value}: failed: {error}"), lang, cli=cli, value=_shown(row.value), error=text
            )
        )
        return
    memory = row.process_rss_bytes if not row.gpu_used_bytes else sum(row.gpu_used_bytes)
    print(
        translate(
            N_(
                "{cli} = {value}: ready after {ready} s; first token {ttft} ms, per token {itl} ms, "
                "answer {e2e} ms, {tps} tokens/s, memory {memory} GiB"
            ),
            lang,
            cli=cli,
            value=_shown(row.value),
            ready=_fmt(row.ready_s),
            ttft=_fmt(row.ttft_p50_ms),
            itl=_fmt(row.itl_p50_ms),
            e2e=_fmt(row.e2e_p50_ms),
            tps=_fmt(row.output_tokens_per_s),
            memory=_fmt(memory / 1024**3 if memory else None, 2),
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------------------------- history


def _create_run(
    store: HistoryStore | None,
    name: str,
    values: list[Any],
    base: ServerConfig,
    workload: dict[str, Any],
    backend: str,
) -> int | None:
    if store is None:
        return None
    config = mask_config(base)
    config["sweep"] = {"flag": name, "values": values, "workload": workload}
    label = f"{flags.get(name).cli}: " + ", ".join(_shown(v) for v in values)
    return store.create_run("sweep", config, label=label, backend=backend)


def _finish(
    store: HistoryStore | None,
    run_id: int | None,
    name: str,
    values: list[Any],
    rows: list[dict[str, Any]],
    status: str,
    result: SweepResult | None,
) -> None:
    if store is None or run_id is None:
        return
    objects = [SweepRow(**row) for row in rows]
    message, params = verdict_message(objects, name)
    summary = {
        "flag": name,
        "values": values,
        "verdict_message": message,
        "verdict_params": params,
        "verdict_vi": result.verdict("vi") if result else verdict(objects, name, "vi"),
        "verdict_en": result.verdict("en") if result else verdict(objects, name, "en"),
        "noise": result.noise if result else None,
        "duration_s": result.duration_s if result else None,
        "plan": result.plan if result else {},
        "measured": sum(1 for row in objects if row.measured),
    }
    store.finish_run(run_id, summary, status=status)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}"
