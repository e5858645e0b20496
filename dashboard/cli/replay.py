"""`replay CARD.json`: run an experiment card again on this machine and print the comparison."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dashboard.cli import common
from dashboard.i18n import N_, translate
from dashboard.measure import cards


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "replay",
        help=_(N_("run an experiment card again on this machine and compare")),
        parents=[common.language_option(_)],
        allow_abbrev=False,
    )
    parser.add_argument("card", type=Path, help=_(N_("the experiment card (JSON) to run again")))
    parser.add_argument("--port", type=int, default=None, help=_(N_("port for the server started here")))
    parser.add_argument("--card-out", type=Path, default=None, help=_(N_("write this machine's card here")))
    parser.add_argument("--json", type=Path, default=None, help=_(N_("write the comparison as JSON here")))
    parser.add_argument("--workdir", type=Path, default=None, help=_(N_("folder for the server's files")))
    parser.add_argument("--timeout", type=float, default=600.0, help=_(N_("seconds to wait for the server")))
    parser.set_defaults(func=run)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def comparison_lines(theirs: dict[str, Any], ours: dict[str, Any], lang: str) -> list[str]:
    env_a, env_b = theirs.get("environment", {}), ours.get("environment", {})
    lines = [
        translate(
            N_("Their machine: vLLM {version}, {backend}, {model}"),
            lang,
            version=env_a.get("vllm_version", "?"),
            backend=env_a.get("backend", "?"),
            model=env_a.get("model", "?"),
        ),
        translate(
            N_("This machine: vLLM {version}, {backend}, {model}"),
            lang,
            version=env_b.get("vllm_version", "?"),
            backend=env_b.get("backend", "?"),
            model=env_b.get("model", "?"),
        ),
    ]
    heads = [translate(text, lang) for text in (N_("figure"), N_("theirs"), N_("here"), N_("here / theirs"))]
    lines.append(f"{heads[0]:<32} {heads[1]:>12} {heads[2]:>12} {heads[3]:>14}")
    for row in cards.compare(theirs, ours):
        ratio = "–" if row.ratio is None else f"{row.ratio:.2f}x"
        label = translate(row.label, lang)
        lines.append(f"{label:<32} {_fmt(row.theirs):>12} {_fmt(row.ours):>12} {ratio:>14}")
    return lines


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    try:
        theirs = cards.read_card(args.card)
    except cards.CardError as exc:
        common.print_problem(exc.problem, lang, out=sys.stderr)
        return common.EXIT_USAGE
    workdir = common.workdir(args)
    try:
        ours = cards.replay(
            theirs, workdir, port=args.port, on_phase=common.phase_printer(lang), timeout=args.timeout
        )
    except cards.CardError as exc:
        common.print_problem(exc.problem, lang, out=sys.stderr)
        return common.EXIT_FAILED
    if args.card_out:
        cards.write_card(ours, args.card_out)
    lines = comparison_lines(theirs, ours, lang)
    print("\n".join(lines))
    if args.json:
        comparison = {
            "theirs": theirs,
            "ours": ours,
            "rows": [r.to_dict() for r in cards.compare(theirs, ours)],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(comparison, ensure_ascii=False, indent=2), encoding="utf-8")
    return common.EXIT_OK if not ours["results"].get("errors") else common.EXIT_FAILED
