"""What every command shares: the language, config options, the data folder, and printers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from dashboard.engine import config as config_mod
from dashboard.engine import hardware, lifecycle, presets
from dashboard.engine.config import ServerConfig
from dashboard.engine.problems import Problem
from dashboard.engine.startup_log import Phase
from dashboard.i18n import N_, translate

DEFAULT_LANG = "vi"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A message for the user (an English msgid with params) and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE, **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.params = params
        self.exit_code = exit_code

    def text(self, lang: str | None) -> str:
        return translate(self.message, lang, **self.params)


def peek_language(argv: Sequence[str]) -> str:
    """The --lang value wherever it stands (help texts need it before the real parse)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--lang", default=DEFAULT_LANG)
    known, _ = peek.parse_known_args(list(argv))
    return known.lang if known.lang in ("vi", "en") else DEFAULT_LANG


def language_option(_: Callable[[str], str]) -> argparse.ArgumentParser:
    """A parent parser so `--lang` also works after the command name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--lang", choices=("vi", "en"), default=argparse.SUPPRESS, help=_(N_("language of the messages"))
    )
    return parent


def add_config_options(
    parser: argparse.ArgumentParser, _: Callable[[str], str], preset_required: bool
) -> None:
    parser.add_argument(
        "--preset",
        required=preset_required,
        choices=list(presets.all_presets()),
        help=_(N_("named starting point (flags and test request)")),
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help=_(N_("change one flag, by its name or its vLLM option (repeatable), e.g. max_model_len=1024")),
    )
    parser.add_argument(
        "--model",
        default="embedded",
        help=_(N_("model to serve: a Hugging Face id, a local folder, or 'embedded' (the built-in SmolLM2)")),
    )
    parser.add_argument(
        "--backend", choices=("cpu", "cuda"), help=_(N_("force the backend (default: detected)"))
    )
    parser.add_argument(
        "--workdir", type=Path, help=_(N_("folder for server logs (default: the app's data folder)"))
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help=_(N_("seconds to wait for the server to be ready"))
    )


def data_dir() -> Path:
    """Where the CLI's servers keep their records and logs: runs/cli under LEGO_FACTORY_HOME or the
    user's cache folder. The app keeps its own (runs/app), so neither ever reaps the other's server."""
    return lifecycle.cli_runs_dir()


def workdir(args: argparse.Namespace) -> Path:
    """The server folder of this command; old logs rotated, and a closed terminal (SIGHUP) stops the
    server like Ctrl-C does."""
    folder = Path(args.workdir) if getattr(args, "workdir", None) else data_dir()
    lifecycle.rotate_logs(folder)
    lifecycle.install_hangup_handler()
    return folder


def backend(args: argparse.Namespace) -> str:
    return getattr(args, "backend", None) or hardware.detect_backend()


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --set items as typed flag values, or a CliError naming the bad one."""
    try:
        return config_mod.parse_assignments(args.assignments)
    except KeyError as exc:
        raise CliError(N_("Unknown flag in --set: {detail}"), detail=str(exc).strip("'\"")) from None
    except ValueError as exc:
        raise CliError(N_("Bad --set value: {detail}"), detail=str(exc)) from None


def build_config(args: argparse.Namespace, backend_name: str) -> ServerConfig:
    """Starting values for the backend, then the preset's flags, then --set."""
    config = config_mod.default_config(backend_name, model=getattr(args, "model", None) or "embedded")
    if getattr(args, "preset", None):
        config = config.with_values(presets.get(args.preset).flags)
    return config.with_values(overrides(args))


def phase_printer(lang: str, out: TextIO = sys.stdout) -> Callable[[Phase], None]:
    """A callback that prints each startup phase as it is reached: '[  9.4 s] Settings read'."""

    def show(phase: Phase) -> None:
        extra = _phase_numbers(phase, lang)
        line = f"[{phase.seconds:7.1f} s] {translate(phase.label, lang)}"
        print(line + (f"  ({extra})" if extra else ""), file=out, flush=True)

    return show


def _phase_numbers(phase: Phase, lang: str) -> str:
    detail = phase.detail
    if phase.name == "kv_cache" and "kv_cache_tokens" in detail:
        return translate(N_("{tokens} tokens"), lang, tokens=f"{detail['kv_cache_tokens']:,}")
    if phase.name == "weights_loaded" and "weights_s" in detail:
        return f"{detail['weights_s']:g} s"
    if phase.name == "compile" and "compile_s" in detail:
        return f"{detail['compile_s']:g} s"
    if phase.name == "ready":
        return str(detail.get("base_url", ""))
    return ""


def print_problem(problem: Problem, lang: str, out: TextIO = sys.stderr) -> None:
    print(translate(N_("Problem: {text}"), lang, text=problem.text(lang)), file=out)
    if problem.flag:
        cli = config_mod.flags.get(problem.flag).cli
        if problem.suggestion is not None:
            print(
                translate(N_("Change: {cli} -> {value}"), lang, cli=cli, value=problem.suggestion), file=out
            )
        else:
            print(translate(N_("Change: {cli}"), lang, cli=cli), file=out)
    if problem.root_cause:
        print(translate(N_("vLLM said: {line}"), lang, line=problem.root_cause[:500]), file=out)


def finite(data: Any) -> Any:
    """The data with NaN and infinities as None, so the JSON is valid everywhere."""
    import math

    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite(item) for item in data]
    return data


def write_partial(path: Path | None, data: dict[str, Any]) -> None:
    """Write a report as it grows (atomically: a crash mid-write keeps the previous version), so a run
    that fails later keeps what was measured. Quiet: the final write says where the report is."""
    if path is None:
        return
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(
        json.dumps(finite(data), ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    os.replace(temporary, path)


RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"


class JsonReport:
    """The --json report of one CLI run, written as the run goes: `update` after each measured row
    (status "running"); leaving the `with` block on an exception writes what is there with status
    "failed" (or "interrupted" for Ctrl-C and SIGTERM) and lets the exception go on; `finish` writes the final
    report with its status and says where it is. Without --json nothing is written."""

    def __init__(self, path: Path | None, lang: str, **fields: Any) -> None:
        self.path = path
        self.lang = lang
        self.data: dict[str, Any] = dict(fields)

    def __enter__(self) -> JsonReport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> bool:
        if kind is not None:
            # Ctrl-C, or SIGTERM / a closed terminal (they end in SystemExit): stopped, not broken
            status = INTERRUPTED if issubclass(kind, KeyboardInterrupt | SystemExit) else FAILED
            self._write(status)
        return False

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write(RUNNING)

    def finish(self, data: dict[str, Any], status: str) -> None:
        self.data = dict(data)
        if self.path is None:
            return
        write_partial(self.path, self.data | {"status": status})
        print(translate(N_("Report written to {path}"), self.lang, path=str(self.path)), flush=True)

    def _write(self, status: str) -> None:
        import contextlib

        # a report that cannot be written (disk full) must not end the measurement it reports on;
        # the final write says so loudly
        with contextlib.suppress(OSError):
            write_partial(self.path, self.data | {"status": status})
