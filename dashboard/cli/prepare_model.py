"""`prepare-model`: make the built-in model ready (converted once) and print its folder."""

from __future__ import annotations

import argparse
import sys

from dashboard.cli import common
from dashboard.engine import models
from dashboard.i18n import N_


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "prepare-model",
        help=_(N_("prepare the built-in model and print its folder")),
        parents=[common.language_option(_)],
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        folder = models.prepare_embedded(log=lambda text: print(text, file=sys.stderr))
    except models.ModelUnavailable as exc:
        common.print_problem(exc.problem, args.lang)
        return common.EXIT_FAILED
    print(folder)
    return common.EXIT_OK
