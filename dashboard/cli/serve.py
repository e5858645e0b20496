"""`serve`: run one real server in the foreground, print its startup phases, stop it all on Ctrl-C."""

from __future__ import annotations

import argparse
import time

from dashboard.cli import common
from dashboard.engine.carousel import Carousel
from dashboard.i18n import N_, translate

WATCH_EVERY_S = 1.0


def register(subparsers, _) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=_(N_("start a server and keep it running until Ctrl-C")),
        parents=[common.language_option(_)],
    )
    common.add_config_options(parser, _, preset_required=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lang = args.lang
    backend = common.backend(args)
    config = common.build_config(args, backend)
    manager = Carousel(common.workdir(args), backend=backend)
    try:
        report = manager.start(config, timeout=args.timeout, on_phase=common.phase_printer(lang))
        print(report.command_text, flush=True)
        if not report.ok:
            if report.error is not None:
                common.print_problem(report.error, lang)
            if report.log_path:
                print(translate(N_("Server log: {path}"), lang, path=report.log_path))
            return common.EXIT_FAILED
        print(
            translate(
                N_("Ready after {seconds} s at {url} (model name {name}). Press Ctrl-C to stop."),
                lang,
                seconds=f"{report.ready_s:.1f}",
                url=report.base_url,
                name=report.served_name,
            ),
            flush=True,
        )
        return _watch(manager, lang)
    except KeyboardInterrupt:
        print(translate(N_("Stopping the server..."), lang), flush=True)
        return common.EXIT_OK
    finally:
        manager.close()


def _watch(manager: Carousel, lang: str) -> int:
    """Sleep until the server dies on its own (then report it) or Ctrl-C arrives."""
    while True:
        time.sleep(WATCH_EVERY_S)
        snapshot = manager.snapshot()
        if snapshot.status == "failed":
            if snapshot.problem is not None:
                common.print_problem(snapshot.problem, lang)
            return common.EXIT_FAILED
