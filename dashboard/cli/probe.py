"""`probe`: start a server for a preset, send its request N times, stop, write a JSON report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.cli.bench import add_attach_options, attach_target
from dashboard.engine import presets
from dashboard.i18n import N_, translate
from dashboard.measure.attach import probe_attached
from dashboard.measure.probe import run_probe


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "probe",
        help=_(N_("start a server for a preset, time its request, stop, write JSON")),
        parents=[common.language_option(_)],
        allow_abbrev=False,  # `--api-key KEY` must not pass for `--api-key-env`
    )
    common.add_config_options(parser, _, preset_required=True)
    parser.add_argument("--requests", type=int, default=3, help=_(N_("how many times to send the request")))
    add_attach_options(parser, _)
    parser.add_argument("--json", type=Path, required=True, help=_(N_("file to write the report to")))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    if args.requests < 1:
        raise common.CliError(N_("--requests must be at least 1."))
    common.overrides(args)  # refuse a bad --set before starting anything
    if args.url:
        report = _probe_attached(args)
    elif args.api_key_env:
        raise common.CliError(N_("--api-key-env goes with --url."))
    else:
        report = _probe_started(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    _print_summary(report, lang)
    print(translate(N_("Report written to {path}"), lang, path=str(args.json)))
    return common.EXIT_OK if report["error"] is None else common.EXIT_FAILED


def _probe_attached(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the server at --url (never restarted): the preset's request, a latency budget, /metrics."""
    if args.assignments:
        raise common.CliError(
            N_("--set changes a server the factory starts; it cannot change the one at --url.")
        )
    target = attach_target(args)
    return probe_attached(
        target,
        presets.get(args.preset).request,
        requests=args.requests,
        on_request=lambda index, record: _print_request(index, record, args.lang),
    )


def _probe_started(args: argparse.Namespace) -> dict[str, Any]:
    lang = args.lang
    return run_probe(
        args.preset,
        common.overrides(args),
        common.workdir(args),
        requests=args.requests,
        backend=common.backend(args),
        on_phase=common.phase_printer(lang),
        on_request=lambda index, record: _print_request(index, record, lang),
        timeout=args.timeout,
        model=args.model,
    )


def _print_request(index: int, record: dict[str, Any], lang: str) -> None:
    if not record["ok"]:
        print(
            translate(N_("Request {n}: failed: {error}"), lang, n=index + 1, error=record["error"]),
            flush=True,
        )
        return
    print(
        translate(
            N_("Request {n}: first token {ttft} ms, per token {itl} ms, total {e2e} ms, {tokens} tokens"),
            lang,
            n=index + 1,
            ttft=_fmt(record["ttft_ms"]),
            itl=_fmt(record["itl_ms"]),
            e2e=_fmt(record["e2e_ms"]),
            tokens=record["completion_tokens"],
        ),
        flush=True,
    )


def _print_summary(report: dict[str, Any], lang: str) -> None:
    if report.get("command_text"):
        print(report["command_text"])
    if report.get("ready_s") is not None:
        print(
            translate(
                N_("Ready after {seconds} s; warehouse {tokens} tokens, up to {concurrency} orders at once."),
                lang,
                seconds=f"{report['ready_s']:.1f}",
                tokens=f"{report['kv_cache_tokens']:,}" if report.get("kv_cache_tokens") else "?",
                concurrency=_fmt(report.get("max_concurrency")),
            )
        )
    if report["requests"]:
        summary = report["summary"]
        print(
            translate(
                N_("Median: first token {ttft} ms, per token {itl} ms, total {e2e} ms."),
                lang,
                ttft=_fmt(summary["ttft_ms_median"]),
                itl=_fmt(summary["itl_ms_median"]),
                e2e=_fmt(summary["e2e_ms_median"]),
            )
        )
        print(translate(N_("Last answer: {text}"), lang, text=report["requests"][-1]["text"]))
    budget = report.get("budget")
    if budget:
        parts = [f"{translate(seg['label'], lang)} {_fmt(seg['ms'])} ms" for seg in budget["segments"]]
        print(translate(N_("Where one answer's time went: {parts}"), lang, parts="; ".join(parts)))
    if report["error"] is not None:
        error = report["error"]
        print(error["text_vi"] if lang == "vi" else error["text_en"])
        if error.get("flag"):
            print(
                translate(
                    N_("Change: {flag} -> {value}"), lang, flag=error["flag"], value=error.get("suggestion")
                )
            )
        if error.get("root_cause"):
            print(translate(N_("vLLM said: {line}"), lang, line=error["root_cause"][:500]))


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"
