"""`tune`: find the fastest measured settings for a preset's request, a load and a goal, and explain them.

    python -m dashboard tune --preset pika-json --goal p50-e2e [--limit p90-ttft=50ms]
        [--concurrency N | --rate R] [--memory-gib X] [--minutes M] --json FILE

Every trial is printed and kept in the history as it is measured; the study lives in a SQLite file
beside the history, so running the same question again resumes it. Ctrl-C stops and still writes the
report of what was measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.cli.bench import open_history, workload_of
from dashboard.engine.carousel import Carousel
from dashboard.i18n import N_, translate
from dashboard.measure.probe import pick_port
from dashboard.tune import question as question_mod
from dashboard.tune.intervals import Estimate
from dashboard.tune.runner import WarmAwareView, run_tune
from dashboard.tune.search import TuneSettings
from dashboard.tune.verdict import knob_text


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "tune",
        help=_(
            N_("search the settings that best reach a latency goal for a preset's request, and explain why")
        ),
        parents=[common.language_option(_)],
    )
    common.add_config_options(parser, _, preset_required=True)
    parser.add_argument(
        "--goal", required=True, help=_(N_("what to minimise: p50-e2e, p90-ttft, p50-itl ... or throughput"))
    )
    parser.add_argument("--limit", help=_(N_("a latency every answer must keep, e.g. p90-ttft=50ms")))
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, help=_(N_("requests in flight at once (default 1)")))
    load.add_argument("--rate", type=float, help=_(N_("new requests per second instead")))
    parser.add_argument("--memory-gib", type=float, help=_(N_("memory the server may use (GiB)")))
    parser.add_argument("--minutes", type=float, default=10.0, help=_(N_("time budget in minutes")))
    parser.add_argument(
        "--allow-changed-answers",
        action="store_true",
        help=_(N_("let the best settings answer differently from the starting settings")),
    )
    parser.add_argument(
        "--keep-request",
        action="store_true",
        help=_(N_("never change the request itself (no smaller max_tokens, no compact JSON)")),
    )
    parser.add_argument("--max-trials", type=int, help=_(N_("stop searching after this many trials")))
    parser.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help=_(N_("requests for the confirmation of the best settings (a first look sends a quarter)")),
    )
    parser.add_argument("--json", type=Path, required=True, help=_(N_("file to write the report to")))
    parser.add_argument(
        "--no-history", action="store_true", help=_(N_("do not keep the results in the history"))
    )
    parser.set_defaults(func=run)


def build_question(
    args: argparse.Namespace, backend: str, workload: dict[str, Any]
) -> question_mod.TuneQuestion:
    try:
        return question_mod.TuneQuestion(
            workload=workload,
            goal=question_mod.parse_goal(args.goal),
            load=question_mod.Load(
                concurrency=args.concurrency or (None if args.rate else 1), rate=args.rate
            ),
            limit=question_mod.parse_limit(args.limit) if args.limit else None,
            memory_gib=args.memory_gib,
            minutes=args.minutes,
            allow_request_changes=not args.keep_request,
            allow_changed_answers=args.allow_changed_answers,
            backend=backend,
            model=args.model,
            preset=args.preset,
        )
    except question_mod.QuestionError as exc:
        raise common.CliError(exc.message, **exc.params) from None


def settings_for(args: argparse.Namespace, backend: str) -> TuneSettings:
    changes: dict[str, Any] = {"start_timeout_s": args.timeout, "max_trials": args.max_trials}
    if args.requests is not None:
        if args.requests < 4:
            raise common.CliError(N_("--requests must be at least 4."))
        changes |= {
            "confirm_requests": args.requests,
            "screen_requests": max(2, args.requests // 4),
            "more_requests": max(2, args.requests // 2),
        }
    return TuneSettings.for_backend(backend, **changes)


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    backend = common.backend(args)
    workload = workload_of(args)
    asked = build_question(args, backend, workload.to_dict())
    settings = settings_for(args, backend)
    base = pick_port(common.build_config(args, backend), common.overrides(args))
    store = open_history(args)
    manager = Carousel(common.workdir(args), backend=backend)
    report = common.JsonReport(args.json, lang, question=asked.to_dict(), trials=[], confirmations=[])

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind in ("trial", "confirm"):
            field = "trials" if kind == "trial" else "confirmations"
            report.update(**{field: [*report.data[field], data]})
        _print_event(kind, data, asked.goal.key, lang)

    try:
        with report:
            result = run_tune(
                asked,
                base,
                workload,
                WarmAwareView(manager, on_phase=common.phase_printer(lang)),
                store=store,
                settings=settings,
                on_event=on_event,
            )
    finally:
        manager.close()
    _print_result(result, lang)
    if result.get("stopped"):
        status = common.INTERRUPTED
    else:
        status = common.DONE if result.get("best") else common.FAILED
    report.finish(result, status)
    return common.EXIT_OK if result.get("best") else common.EXIT_FAILED


def _changes_text(changes: dict[str, Any], lang: str) -> str:
    if not changes:
        return translate(N_("starting settings"), lang)
    return ", ".join(knob_text(knob, value, lang) for knob, value in changes.items())


def _print_event(kind: str, data: dict[str, Any], goal_key: str, lang: str) -> None:
    if kind not in ("trial", "confirm"):
        return
    estimate = Estimate.from_dict((data.get("figures") or {}).get(goal_key))
    states = {
        "measured": N_("measured"),
        "stopped_early": N_("stopped early: clearly slower"),
        "failed": N_("failed"),
        "refused": N_("refused before starting"),
    }
    tag = translate(N_("check"), lang) if kind == "confirm" else f"#{data.get('number')}"
    text = translate(
        N_("[{tag}] {changes}: {goal} {value} ms ({state})"),
        lang,
        tag=tag,
        changes=_changes_text(data.get("changes") or {}, lang),
        goal=goal_key,
        value="?" if estimate.value is None else f"{estimate.value:.1f}",
        state=translate(states.get(data.get("state", ""), data.get("state", "")), lang),
    )
    if data.get("answer_matches") is False:
        text += " · " + translate(N_("the answer changed"), lang)
    if data.get("error"):
        text += f" · {data['error'][:200]}"
    print(text, flush=True)


def _print_result(report: dict[str, Any], lang: str) -> None:
    best = report.get("best")
    if best:
        print(translate(N_("Best settings: {changes}"), lang, changes=_changes_text(best["changes"], lang)))
        print(" ".join(best["command"]))
        if best.get("request_fields"):
            print(translate(N_("Request fields: {fields}"), lang, fields=list(best["request_fields"])))
    print(report["verdict"]["vi" if lang == "vi" else "en"])
