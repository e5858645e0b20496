"""The headless face of the factory: `python -m dashboard [--lang vi|en] COMMAND ...`.

Adding a command = adding a module to this package that defines

    def register(subparsers, _) -> None:
        parser = subparsers.add_parser("bench", help=_("..."), parents=[common.language_option(_)])
        ...
        parser.set_defaults(func=run)      # run(args) -> int (the exit code)

`_` is the translator for the chosen language (help texts are msgids too). Modules are found by
name, so no list needs editing; COMMAND_ORDER only sorts the help. `common` holds the shared
options (--preset, --set, --backend, --workdir) and printers (phases, problems).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from dashboard.cli import common
from dashboard.i18n import N_, translator

COMMAND_ORDER = ("prepare_model", "serve", "probe", "bench", "sweep")
NOT_COMMANDS = {"common"}


def command_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names = [n for n in names if n not in NOT_COMMANDS]
    order = {name: index for index, name in enumerate(COMMAND_ORDER)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def build_parser(lang: str | None = None) -> argparse.ArgumentParser:
    _ = translator(lang)
    parser = argparse.ArgumentParser(
        prog="python -m dashboard",
        description=_(N_("Start, watch and measure a real vLLM server from the terminal.")),
    )
    parser.add_argument(
        "--lang", choices=("vi", "en"), default=common.DEFAULT_LANG, help=_(N_("language of the messages"))
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers, _)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(common.peek_language(argv))
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except common.CliError as exc:
        print(exc.text(args.lang), file=sys.stderr)
        return exc.exit_code
