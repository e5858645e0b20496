"""A run, exported: the command that starts the same server, JSON, CSV, and a bilingual Markdown report.

Secrets never leave: every export shows an API key as ***.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from babel.numbers import format_decimal

from dashboard.history import handout
from dashboard.history.records import HIDDEN, SECRET_FLAGS, RunRecord, flag_values, flatten, is_number
from dashboard.i18n import N_, normalize, translate

SECRET_OPTIONS = frozenset({"--api-key"})
API_KEY_ENV = "VLLM_API_KEY"  # how vLLM reads its key (history does not import the engine)
API_KEY_PLACEHOLDER = "<your-key>"
_SECRET_IN_TEXT = re.compile(r"(--api-key)(=|\s+)('[^']*'|\"[^\"]*\"|\S+)")
COMMAND_KEYS = ("command", "argv")  # where a startup report or summary keeps the exact command line
REPORT_LANGUAGES = ("vi", "en")
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}  # each language's name in itself

# Catalog flags whose vLLM option is not simply --name-with-dashes, and how their value is written.
_SPECIAL_OPTIONS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "kv_cache_memory_gib": ("--kv-cache-memory-bytes", lambda gib: str(int(float(gib) * 1024**3))),
}

_KIND_NAMES = {
    "startup": N_("server start"),
    "probe": N_("probe"),
    "load": N_("load test"),
    "sweep": N_("sweep"),
    "playground": N_("playground"),
    "apply": N_("apply settings"),
    "table": N_("whole table"),
}
_STATUS_NAMES = {
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "interrupted": N_("interrupted"),
}


# --- command ---------------------------------------------------------------------------------------


def as_command(run: RunRecord) -> str:
    """The server's exact command line when the run recorded it, else a `vllm serve` line from the config."""
    recorded = recorded_command(run)
    values = flag_values(run.config)
    words = recorded if recorded is not None else command_words(values)
    return key_prefix(values) + shlex.join(mask_words(words))


def key_prefix(values: Mapping[str, Any]) -> str:
    """vLLM gets the API key from VLLM_API_KEY: an exported command says so, with a placeholder."""
    return f"{API_KEY_ENV}={API_KEY_PLACEHOLDER} " if any(values.get(name) for name in SECRET_FLAGS) else ""


def recorded_command(run: RunRecord) -> list[str] | None:
    for source in (run.startup, run.summary, run.config):
        for key in COMMAND_KEYS:
            value = (source or {}).get(key)
            if isinstance(value, str) and value.strip():
                return _split(value)
            if isinstance(value, list) and value:
                return [str(word) for word in value]
    return None


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes: keep the words as they are
        return command.split()


def command_words(values: Mapping[str, Any]) -> list[str]:
    words = ["vllm", "serve"]
    model = values.get("model")
    if model:
        words.append(str(model))
    for name, value in values.items():
        if name != "model" and name not in SECRET_FLAGS:  # secrets go through the environment
            words += option_words(name, value)
    return words


def option_words(name: str, value: Any) -> list[str]:
    """--max-model-len 2048, --enforce-eager / --no-enforce-eager; nothing for an unset value."""
    if value is None or value == "" or value == []:
        return []
    option, write = _SPECIAL_OPTIONS.get(name, ("--" + name.replace("_", "-"), _option_value))
    if isinstance(value, bool):
        return [option] if value else ["--no-" + option.removeprefix("--")]
    if isinstance(value, list | tuple):
        return [option, *(str(item) for item in value)]
    return [option, write(value)]


def _option_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, Mapping) else str(value)


def mask_words(words: Sequence[str]) -> list[str]:
    masked: list[str] = []
    hide_next = False
    for word in words:
        option, sep, _ = word.partition("=")
        if hide_next:
            masked.append(HIDDEN)
        elif sep and option in SECRET_OPTIONS:
            masked.append(f"{option}={HIDDEN}")
        else:
            masked.append(word)
        hide_next = word in SECRET_OPTIONS
    return masked


def masked(data: Any) -> Any:
    """A copy of JSON-like data with secret values (api_key, --api-key's argument) hidden."""
    if isinstance(data, Mapping):
        return {
            key: (HIDDEN if key in SECRET_FLAGS and value not in (None, "") else masked(value))
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        items = [masked(item) for item in data]
        return mask_words(items) if all(isinstance(item, str) for item in items) else items
    if isinstance(data, str):
        return _SECRET_IN_TEXT.sub(rf"\1\2{HIDDEN}", data)
    return data


# --- commands that travel --------------------------------------------------------------------------

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
KEY_ENV_PLACEHOLDER = "VLLM_API_KEY=<your-key>"
COMMAND_LABELS = {
    "here": N_("On this machine, as it ran here"),
    "portable": N_("On another machine that downloads the model from the Hugging Face Hub"),
}
_MODEL_OPTIONS = ("--model",)
_VALUE_OPTIONS_DROPPED = ("--served-model-name",)


def labelled_commands(
    source: RunRecord | Mapping[str, Any],
    local_model: str | None = None,
    python: str = "python",
    hub_id: str | None = None,
) -> list[tuple[str, str]]:
    """[(label msgid, command)]: the command that starts the same server on this machine (the module
    form and the local model folder, as the server ran), then the portable `vllm serve HUB_ID ...` line.
    The API key never appears: when one was set, the line starts with a VLLM_API_KEY placeholder.
    `source` is a run (its recorded command, else its config) or one stored row with a `command`."""
    words = _recorded_words(source)
    if words is None:
        values = flag_values(source.config if isinstance(source, RunRecord) else source.get("config") or {})
        model = str(values.get("model") or "")
        words = [python, "-m", SERVER_MODULE, "--model", local_model or model]
        if hub_id and not values.get("served_model_name"):  # the name it answers to, and its Hub id
            words += ["--served-model-name", hub_id]
        words += [w for name, value in values.items() if name != "model" for w in option_words(name, value)]
    words, had_key = _without_key(words)
    here = _local_words(words)
    portable = _portable_words(words)
    prefix = KEY_ENV_PLACEHOLDER + " " if had_key else ""
    return [
        (COMMAND_LABELS["here"], prefix + shlex.join(here)),
        (COMMAND_LABELS["portable"], prefix + shlex.join(portable)),
    ]


def _recorded_words(source: RunRecord | Mapping[str, Any]) -> list[str] | None:
    if isinstance(source, RunRecord):
        return recorded_command(source)
    for key in COMMAND_KEYS:
        value = source.get(key)
        if isinstance(value, str) and value.strip():
            return _split(value)
        if isinstance(value, list) and value:
            return [str(word) for word in value]
    return None


def _without_key(words: Sequence[str]) -> tuple[list[str], bool]:
    kept: list[str] = []
    had_key = skip = False
    for word in words:
        if skip:
            skip = False
            continue
        option, sep, _rest = word.partition("=")
        if option in SECRET_OPTIONS:
            had_key = True
            skip = not sep
            continue
        kept.append(word)
    return kept, had_key


def _option_value_of(words: Sequence[str], option: str) -> str | None:
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _local_words(words: list[str]) -> list[str]:
    """`vllm serve MODEL ...` becomes the module form (the CPU build has no `vllm` command); a module
    form stays as it is."""
    if len(words) >= 3 and Path(words[0]).name == "vllm" and words[1] == "serve":
        return ["python", "-m", SERVER_MODULE, "--model", words[2], *words[3:]]
    return list(words)


def _portable_words(words: list[str]) -> list[str]:
    """`vllm serve HUB_ID` and the same options, minus the local folder and the local name."""
    if len(words) >= 3 and Path(words[0]).name == "vllm" and words[1] == "serve":
        return ["vllm", "serve", *words[2:]]
    model = _option_value_of(words, "--model") or ""
    hub_id = _option_value_of(words, "--served-model-name") or model
    rest = words[3:] if len(words) > 2 and words[1] == "-m" else words[1:]
    options: list[str] = []
    skip = False
    for word in rest:
        if skip:
            skip = False
            continue
        option = word.partition("=")[0]
        if option in _MODEL_OPTIONS + _VALUE_OPTIONS_DROPPED:
            skip = "=" not in word
            continue
        options.append(word)
    return ["vllm", "serve", hub_id, *options]


def commands_markdown(
    source: RunRecord | Mapping[str, Any],
    lang: str,
    local_model: str | None = None,
    hub_id: str | None = None,
) -> str:
    """The labelled commands as Markdown: a bold label above each bash block."""
    parts = []
    for label, command in labelled_commands(source, local_model, hub_id=hub_id):
        parts += [f"**{translate(label, lang)}**", f"```bash\n{command}\n```"]
    return "\n\n".join(parts)


# --- JSON and CSV ----------------------------------------------------------------------------------


def as_json(run: RunRecord) -> str:
    """Strict JSON (NaN and infinities become null), secrets hidden."""
    return json.dumps(_finite(masked(run.to_dict())), ensure_ascii=False, indent=2, allow_nan=False)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(item) for item in data]
    return data


def as_csv(run: RunRecord) -> str:
    """One line per measured row (after a header): seq, created_at and the union of the rows' keys."""
    records = _csv_records(run)
    out = io.StringIO()
    columns = _union_keys([{"seq": None, "created_at": None}, *records] if run.rows else records)
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _csv_cell(value) for key, value in record.items()} for record in records)
    return out.getvalue()


def _csv_records(run: RunRecord) -> list[dict[str, Any]]:
    """One record per row; a table run's rows as the table reads; a run without rows (a start, an
    applied setting) as one line of its own facts and commands."""
    if run.kind == "table" and run.rows:
        return [_table_csv_record(row) for row in run.rows]
    if run.rows:
        return [
            {"seq": row.seq, "created_at": row.created_at, **flatten(masked(row.data))} for row in run.rows
        ]
    record: dict[str, Any] = {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "label": run.label,
        "backend": run.backend,
    }
    for source in (masked(dict(run.startup or {})), masked(dict(run.summary or {}))):
        record.update(
            {
                key: value
                for key, value in flatten(source).items()
                if key in FIGURE_LABELS and not _is_long(value)
            }
        )
    error = (run.startup or {}).get("error")
    if isinstance(error, Mapping):
        record["error"] = error.get("text_en") or error.get("message")
    for (_label, command), name in zip(
        labelled_commands(run), ("command_here", "command_portable"), strict=True
    ):
        record[name] = command
    return [record]


def _table_csv_record(row: Any) -> dict[str, Any]:
    data = row.data
    interval = data.get("interval") or [None, None]
    verdict = data.get("verdict") or {}
    return {
        "seq": row.seq,
        "flag": data.get("flag"),
        "option": data.get("cli"),
        "metric": data.get("metric"),
        "workload": data.get("workload"),
        "first_value": (data.get("values") or [None, None])[0],
        "second_value": (data.get("values") or [None, None])[-1],
        "effect": data.get("effect"),
        "ratio": data.get("ratio"),
        "interval_low": interval[0],
        "interval_high": interval[1],
        "orders_per_value": data.get("n"),
        "noise_percent": data.get("noise_percent"),
        "start_time_s": json.dumps(data.get("start_time_s")),
        "memory_gib": json.dumps(data.get("memory_gib")),
        "verdict_vi": verdict.get("vi"),
        "verdict_en": verdict.get("en"),
    }


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | tuple | Mapping) else value


def _union_keys(records: Iterable[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    return list(keys)


# --- Markdown --------------------------------------------------------------------------------------


def as_markdown(
    run: RunRecord,
    lang: str = "both",
    charts: Mapping[str, Path] | None = None,
    local_model: str | None = None,
    hub_id: str | None = None,
) -> str:
    """A report in Vietnamese then English ("both"), or in one language ("vi" or "en"). `local_model`
    and `hub_id`: the folder the server loads here and the model's Hub id, for runs that did not record
    their command line."""
    languages = REPORT_LANGUAGES if lang == "both" else (normalize(lang),)
    safe = _masked_run(run)
    sections = [
        _markdown_section(safe, language, charts or {}, local_model, hub_id) for language in languages
    ]
    return "\n\n---\n\n".join(sections) + "\n"


def _masked_run(run: RunRecord) -> RunRecord:
    data = masked(run.to_dict())
    return replace(run, config=data["config"], summary=data["summary"], startup=data["startup"])


def _markdown_section(
    run: RunRecord,
    lang: str,
    charts: Mapping[str, Path],
    local_model: str | None = None,
    hub_id: str | None = None,
) -> str:
    def tr(message: str, **params: object) -> str:
        return translate(message, lang, **params)

    title = tr(N_("Run #{id}: {kind}"), id=run.id, kind=tr(_KIND_NAMES.get(run.kind, run.kind)))
    parts = [f"## {LANGUAGE_NAMES[lang]}", f"### {title}" + (f" — {_cell(run.label)}" if run.label else "")]
    parts += [_table([tr(N_("Field")), tr(N_("Value"))], _overview(run, lang, tr))]
    summary = _summary_rows(run, lang, tr)
    if summary:
        parts += [_heading(tr(N_("Summary"))), _table([tr(N_("Figure")), tr(N_("Value"))], summary)]
    per_row = _row_commands(run, lang)
    if recorded_command(run) is not None or not per_row:
        parts += [_heading(tr(N_("Command"))), commands_markdown(run, lang, local_model, hub_id)]
    config = {name: value for name, value in flag_values(run.config).items() if _shown_setting(name, value)}
    if config:
        rows = [
            [f"`{_option_name(name)}`", f"`{_cell(_plain_text(value))}`"] for name, value in config.items()
        ]
        parts += [_heading(tr(N_("Configuration"))), _table([tr(N_("Flag")), tr(N_("Value"))], rows)]
    if run.startup:
        parts += [_heading(tr(N_("Server start"))), *_startup_tables(run.startup, lang, tr)]
    parts += [_heading(tr(N_("Measured rows"))), _rows_table(run, lang, tr)]
    if per_row:
        parts += [_heading(tr(N_("Commands for each row"))), per_row]
    if charts:
        parts += [_heading(tr(N_("Charts")))]
        parts += [f"![{_cell(name)}]({Path(path).as_posix()})" for name, path in charts.items()]
    return "\n\n".join(parts)


# Figures people compare, in the order a reader looks for them, with their translated labels.
FIGURE_LABELS: dict[str, str] = {
    "value": N_("Value"),
    "concurrency": N_("Orders at the same time"),
    "ttft_p50_ms": N_("First token (median, ms)"),
    "itl_p50_ms": N_("Per next token (median, ms)"),
    "tpot_p50_ms": N_("Time per token (median, ms)"),
    "e2e_p50_ms": N_("Whole answer (median, ms)"),
    "e2e_ms": N_("Whole answer (ms)"),
    "ttft_ms": N_("First token (ms)"),
    "output_tokens_per_s": N_("Tokens per second"),
    "requests_per_s": N_("Answers per second"),
    "completion_tokens": N_("Answer tokens"),
    "prompt_tokens": N_("Question tokens"),
    "ready_s": N_("Start time (s)"),
    "kv_cache_tokens": N_("KV cache (tokens)"),
    "max_concurrency": N_("Full-length orders at once"),
    "kv_cache_gib": N_("KV cache (GiB)"),
    "weights_gib": N_("Weights (GiB)"),
    "process_rss_bytes": N_("Memory (GiB)"),
    "sent": N_("Orders sent"),
    "errors": N_("Failed orders"),
    "request_errors": N_("Failed orders"),
    "measured": N_("Values measured"),
    "duration_s": N_("Duration (s)"),
    "vllm_version": N_("vLLM version"),
    "started_at": N_("Started"),
    "port": N_("Port"),
    "flag": N_("Flag"),
    "values": N_("Values"),
    "preset": N_("Preset"),
}
_NOT_ROW_COLUMNS = frozenset({"#", "flag", "values", "vllm_version", "started_at", "port", "preset"})
PLAIN_INTEGER_KEYS = frozenset({"port", "pid", "seq", "#", "id", "seed", "generation", "history_run_id"})
_BYTES_SHOWN_IN_GIB = frozenset({"process_rss_bytes"})


def _last(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _summary_rows(run: RunRecord, lang: str, tr: Callable[..., str]) -> list[list[str]]:
    """The run's verdict in this language, then the labelled figures of its summary (no raw keys)."""
    summary = run.summary or {}
    rows = []
    verdict = summary.get(f"verdict_{lang}")
    if isinstance(verdict, str) and verdict:
        rows.append([tr(N_("Verdict")), _cell(verdict)])
    for key, value in flatten(summary).items():
        if key in FIGURE_LABELS and not _is_long(value) and value not in (None, "", [], {}):
            shown = f"`{_option_name(value)}`" if key == "flag" and isinstance(value, str) else None
            rows.append([tr(FIGURE_LABELS[key]), shown or _value(value, lang, tr, key)])
    return rows


def _shown_setting(name: str, value: Any) -> bool:
    return (
        name not in SECRET_FLAGS
        and value is not None
        and value != ""
        and isinstance(value, str | int | float | bool)
    )


def _option_name(name: str) -> str:
    if name == "model":
        return "--model"
    return _SPECIAL_OPTIONS.get(name, ("--" + name.replace("_", "-"), None))[0]


def _row_commands(run: RunRecord, lang: str) -> str:
    """A sweep's rows each ran their own server: one labelled pair of commands per value."""
    parts = []
    if run.kind == "table":  # each figure of each row ran its own server
        for row in run.rows:
            for figure in (row.data.get("figures") or []) if isinstance(row.data, Mapping) else []:
                if isinstance(figure, Mapping) and figure.get("command"):
                    value = handout.value_text(figure.get("value"), lang)
                    name = f"{row.data.get('cli', '')} {value}".strip()
                    parts += [f"##### {_cell(name)}", commands_markdown(figure, lang)]
        return "\n\n".join(parts)
    for row in run.rows:
        if not isinstance(row.data, Mapping) or not row.data.get("command"):
            continue
        name = _cell(_plain_text(row.data.get("value", row.seq)))
        parts += [f"##### {name}", commands_markdown(row.data, lang)]
    return "\n\n".join(parts)


def _heading(text: str) -> str:
    return f"#### {text}"


def _overview(run: RunRecord, lang: str, tr: Callable[..., str]) -> list[list[str]]:
    rows = [
        [tr(N_("Kind")), tr(_KIND_NAMES.get(run.kind, run.kind))],
        [tr(N_("Status")), tr(_STATUS_NAMES.get(run.status, run.status))],
        [tr(N_("Started")), _date(run.created_at, lang)],
        [tr(N_("Finished")), _date(run.finished_at, lang) if run.finished_at else "—"],
        [tr(N_("Measured rows")), _number(run.row_count or len(run.rows), lang)],
    ]
    if run.backend:
        rows.insert(2, [tr(N_("Backend")), _cell(run.backend)])
    return rows


def _startup_tables(report: Mapping[str, Any], lang: str, tr: Callable[..., str]) -> list[str]:
    """The error first (when the start failed), then the phases, then the report's short facts."""
    parts = []
    error = report.get("error")
    if isinstance(error, Mapping):
        parts.append(_error_text(error, lang, tr))
    phases = _phases(report)
    if phases:
        header = [tr(N_("Phase")), tr(N_("Seconds since launch")), tr(N_("Details"))]
        parts.append(_table(header, [_phase_row(phase, lang, tr) for phase in phases]))
    facts = {
        key: value
        for key, value in flatten(report).items()
        if key.split(".")[0] not in _NOT_FACTS and not _is_long(value)
    }
    rows = [
        [tr(FIGURE_LABELS[key]), _value(value, lang, tr, key)]
        for key, value in facts.items()
        if key in FIGURE_LABELS
    ]
    if rows:
        parts.append(_table([tr(N_("Field")), tr(N_("Value"))], rows))
    return parts


# Report fields shown elsewhere (command, config, phases, error) or not fit for a shared report (paths, logs).
_NOT_FACTS = frozenset(
    {*COMMAND_KEYS, "command_text", "config", "startup", "phases", "error", "log_tail", "log_path"}
)


def _phases(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Phases as a StartupReport lists them ({phase, seconds, detail, label?}) or as {name: seconds}."""
    phases = report.get("startup", report.get("phases"))
    if isinstance(phases, Mapping):
        return [{"phase": name, "seconds": seconds} for name, seconds in phases.items()]
    if isinstance(phases, list):
        return [phase for phase in phases if isinstance(phase, Mapping)]
    return []


def _phase_row(phase: Mapping[str, Any], lang: str, tr: Callable[..., str]) -> list[str]:
    name = phase.get("label") or phase.get("phase") or phase.get("name") or ""
    detail = phase.get("detail") or {}
    details = ", ".join(f"{key} = {_value(value, lang, tr)}" for key, value in flatten(detail).items())
    return [_cell(tr(str(name))), _value(phase.get("seconds"), lang, tr), details]


def _error_text(error: Mapping[str, Any], lang: str, tr: Callable[..., str]) -> str:
    text = error.get(f"text_{lang}") or _translated_problem(error, tr)
    failed = tr(N_("The start failed"))
    lines = [f"**{failed}:** {_cell(text)}"]
    if error.get("flag") and error.get("suggestion") is not None:
        suggestion = tr(
            N_("Try {flag} = {value}."), flag=f"`{error['flag']}`", value=f"`{error['suggestion']}`"
        )
        lines.append(suggestion)
    if error.get("root_cause"):
        lines.append(f"```text\n{error['root_cause']}\n```")
    return "\n\n".join(lines)


def _translated_problem(error: Mapping[str, Any], tr: Callable[..., str]) -> str:
    message = str(error.get("message", ""))
    try:
        return tr(message, **(error.get("params") or {}))
    except (KeyError, IndexError, ValueError):  # placeholders and params that do not match
        return message


def _is_long(value: Any) -> bool:
    """Log excerpts and long lists belong in the JSON export, not in a report table."""
    return (isinstance(value, str) and (len(value) > 200 or "\n" in value)) or (
        isinstance(value, list | tuple) and len(value) > 10
    )


def _rows_table(run: RunRecord, lang: str, tr: Callable[..., str]) -> str:
    if not run.rows:
        return tr(N_("No measured rows."))
    if run.kind == "table":  # the filled table, as the handout shows it
        header, cells = handout.rows_for({"rows": [dict(row.data) for row in run.rows]}, lang)
        return _table(header, [[_cell(cell) for cell in row] for row in cells])
    records = [{"#": row.seq, **flatten(row.data)} for row in run.rows]
    return _records_table(records, lang, tr)


def _records_table(records: list[dict[str, Any]], lang: str, tr: Callable[..., str]) -> str:
    """The figures people compare (labelled columns present in some row); everything else is in the
    JSON and CSV exports. A column "Problem" shows a row's error in this language."""
    present = _union_keys(records)
    keys = ["#", *(key for key in FIGURE_LABELS if key in present and key not in _NOT_ROW_COLUMNS)]
    header = [tr(FIGURE_LABELS[key]) if key in FIGURE_LABELS else key for key in keys]
    cells = [[_value(record.get(key), lang, tr, key) for key in keys] for record in records]
    errors = [_row_error(record, lang) for record in records]
    if any(errors):
        header.append(tr(N_("Problem")))
        cells = [row + [error] for row, error in zip(cells, errors, strict=True)]
    return _table(header, cells)


def _row_error(record: Mapping[str, Any], lang: str) -> str:
    text = record.get(f"error.text_{lang}") or record.get("error.message") or record.get("error")
    return _cell(str(text)) if text else ""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _value(value: Any, lang: str, tr: Callable[..., str], key: str = "") -> str:
    if value is None:
        return "—"
    last = _last(key)
    if last.endswith("_at") and (is_number(value) or isinstance(value, str)):
        return _date(value, lang)
    if isinstance(value, bool):
        return tr(N_("yes")) if value else tr(N_("no"))
    if last in PLAIN_INTEGER_KEYS and is_number(value):
        return str(int(value))
    if last in _BYTES_SHOWN_IN_GIB and is_number(value):
        return _number(round(value / 1024**3, 2), lang)
    if is_number(value):
        return _number(round(value, 2) if isinstance(value, float) else value, lang)
    return _cell(_plain_text(value))


def _number(value: float, lang: str) -> str:
    return format_decimal(value, format="#,##0.###", locale=lang)


def _date(moment: str | float, lang: str) -> str:
    """An ISO 8601 text or epoch seconds, in the reader's local time and language."""
    try:
        when = datetime.fromtimestamp(moment) if is_number(moment) else datetime.fromisoformat(str(moment))
    except (TypeError, ValueError, OverflowError, OSError):
        return _cell(str(moment))
    return format_datetime(when.astimezone(), "medium", locale=lang)


def _plain_text(value: Any) -> str:
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
