"""`table`: the brief's table filled headless: the noise of this machine (the same settings started twice),
then each flag's two values on the figure it acts on, with a verdict only where the effect clears the noise.

    python -m dashboard table [--orders N] [--minutes M] --json FILE [--markdown FILE] [--handout FILE.png]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.cli.bench import open_history
from dashboard.engine import flags
from dashboard.engine.carousel import Carousel
from dashboard.engine.report import mask_config
from dashboard.history import handout
from dashboard.history.store import HistoryStore
from dashboard.i18n import N_, translate
from dashboard.measure import estimate, table
from dashboard.measure.probe import pick_port


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "table",
        help=_(N_("fill the brief's table: each flag's effect on response time, checked against the noise")),
        parents=[common.language_option(_)],
    )
    common.add_config_options(parser, _, preset_required=False)
    parser.add_argument(
        "--orders",
        type=int,
        default=table.DEFAULT_ORDERS,
        help=_(N_("orders per value to begin with (more are added until the verdict is clear)")),
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help=_(N_("time budget for the whole run (default: the estimate and half again)")),
    )
    parser.add_argument(
        "--flags",
        metavar="F1,F2,...",
        help=_(N_("only these rows of the table, e.g. enable_prefix_caching,max_num_seqs")),
    )
    parser.add_argument("--json", type=Path, required=True, help=_(N_("file to write the results to")))
    parser.add_argument("--markdown", type=Path, help=_(N_("also write the table as a Markdown handout")))
    parser.add_argument("--handout", type=Path, help=_(N_("also write a printable handout (.png or .pdf)")))
    parser.add_argument(
        "--no-history", action="store_true", help=_(N_("do not keep the results in the history"))
    )
    parser.set_defaults(func=run)


def chosen_flags(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        found = flags.by_cli(item) if item.startswith("-") else None
        name = found.name if found else item.replace("-", "_")
        if name not in table.table_flags():
            raise common.CliError(
                N_("{name} is not a row of the table. Rows: {rows}"),
                name=item,
                rows=", ".join(table.table_flags()),
            )
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    if args.orders < 2:
        raise common.CliError(
            N_("--orders must be at least 2: one order per value cannot tell an effect from chance.")
        )
    if args.minutes is not None and (not math.isfinite(args.minutes) or args.minutes <= 0):
        raise common.CliError(N_("--minutes must be a positive number of minutes."))
    for path in (args.handout,):
        if path is not None and path.suffix.lower() not in (".png", ".pdf"):
            raise common.CliError(N_("--handout must end in .png or .pdf."))
    backend = common.backend(args)
    base = pick_port(common.build_config(args, backend), common.overrides(args))
    plan = table.table_plan(
        base, backend, chosen_flags(args.flags), args.orders, args.minutes, start_timeout=args.timeout
    )
    store = open_history(args)
    if store is not None:  # time the plan with the starts this machine really measured
        plan = plan.with_measured_starts(estimate.times_from_history(store.list_runs(limit=200), backend))
    print_plan(plan, lang)
    run_id = _create_run(store, plan)
    manager = Carousel(common.workdir(args), backend=backend)  # fresh starts, forked: no vLLM import each
    report = common.JsonReport(
        args.json, lang, kind="table", plan=plan.to_dict(), measured=[], rows=[], history_run_id=run_id
    )
    result = None
    try:
        with report:
            result = table.run_table(
                plan,
                manager,
                on_event=event_printer(lang, store, run_id, report),
                on_phase=common.phase_printer(lang),
            )
    finally:
        manager.close()
        if result is None and store is not None and run_id is not None:
            store.finish_run(run_id, {"plan": plan.to_dict()}, status="failed")
    data = result.to_dict()
    _finish(store, run_id, data, result)
    data["history_run_id"] = run_id
    print_summary(data, lang)
    write_outputs(args, data, lang, report, "interrupted" if result.stopped else "done")
    failed = any(
        row["effect"] == "unclear" and row["verdict_message"].startswith("Not measured")
        for row in data["rows"]
    )
    return common.EXIT_FAILED if failed or result.stopped else common.EXIT_OK


# ---------------------------------------------------------------------------------------------- printing


def print_plan(plan: table.TablePlan, lang: str) -> None:
    print(
        translate(
            N_("{starts} server starts, at least {minutes} min; {orders} orders per value to begin with."),
            lang,
            starts=plan.starts,
            minutes=f"{plan.estimate_seconds() / 60:.0f}",
            orders=plan.orders,
        ),
        flush=True,
    )


def event_printer(
    lang: str,
    store: HistoryStore | None,
    run_id: int | None,
    report: common.JsonReport | None = None,
):
    """Print each step; keep each decided row in the history and each measured value and row in the
    --json report as soon as they exist."""

    def show(event: table.TableEvent) -> None:
        step = (
            translate(N_("same settings, start {n} of 2"), lang, n=event.index + 1)
            if event.step == table.AA
            else ""
        )
        if event.step and event.step != table.AA:
            value = table.shown_value(event.step, event.value, lang) if event.value is not None else ""
            step = f"{flags.get(event.step).cli} {value}".strip()
        if event.stage == "starting":
            print(translate(N_("{step}: starting"), lang, step=step), flush=True)
        elif event.stage == "measuring":
            print(translate(N_("{step}: sending orders"), lang, step=step), flush=True)
        elif event.stage in ("done", "failed") and event.measured is not None:
            if report is not None:
                measured = {"step": event.step, "value": event.value} | event.measured.to_dict()
                report.update(measured=[*report.data["measured"], measured])
            print_measured(step, event.measured, lang)
        elif event.stage == "row" and event.row is not None:
            data = event.row.to_dict()
            if report is not None:
                report.update(rows=[*report.data["rows"], data])
            if store is not None and run_id is not None:
                store.add_row(run_id, data)
            print(f"=> {data['cli']}: {data['verdict'][lang]}", flush=True)

    return show


def print_measured(step: str, measured: table.Measured, lang: str) -> None:
    if not measured.ok:
        error = measured.error or {}
        text = error.get(f"text_{lang}") or error.get("message") or "?"
        print(translate(N_("{step}: failed: {error}"), lang, step=step, error=text), flush=True)
        return
    orders = sum(measured.orders(name) for name in measured.samples)
    print(
        translate(
            N_("{step}: ready after {ready} s, {orders} orders measured"),
            lang,
            step=step,
            ready=f"{measured.ready_s or 0:.1f}",
            orders=orders,
        ),
        flush=True,
    )


def print_summary(data: dict[str, Any], lang: str) -> None:
    for row in data["rows"]:
        interval = row["interval"]
        shown = f"{row['ratio']:.2f} [{interval[0]:.2f}, {interval[1]:.2f}] n={row['n']}" if interval else ""
        print(f"{row['cli']:<28} {row['effect']:<20} {shown}")


def write_outputs(
    args: argparse.Namespace, data: dict[str, Any], lang: str, report: common.JsonReport, status: str
) -> None:
    report.finish(data, status)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(handout.table_markdown(data, lang), encoding="utf-8")
        print(translate(N_("Report written to {path}"), lang, path=str(args.markdown)))
    if args.handout is not None:
        args.handout.parent.mkdir(parents=True, exist_ok=True)
        args.handout.write_bytes(handout.table_image(data, lang, args.handout.suffix.lstrip(".").lower()))
        print(translate(N_("Report written to {path}"), lang, path=str(args.handout)))


# ---------------------------------------------------------------------------------------------- history


def _create_run(store: HistoryStore | None, plan: table.TablePlan) -> int | None:
    if store is None:
        return None
    config = mask_config(plan.base)
    config["table"] = plan.to_dict()
    try:
        return store.create_run("table", config, label="table", backend=plan.backend)
    except ValueError:  # a history without the table kind: the results still go to --json
        return None


def _finish(
    store: HistoryStore | None, run_id: int | None, data: dict[str, Any], result: table.TableResult
) -> None:
    if store is None or run_id is None:
        return
    summary = {key: value for key, value in data.items() if key != "rows"}
    summary["effects"] = {row["flag"]: row["effect"] for row in data["rows"]}
    store.finish_run(run_id, common.finite(summary), status="interrupted" if result.stopped else "done")
