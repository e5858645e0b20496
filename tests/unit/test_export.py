"""Exports of a run: the command line, JSON, CSV and the bilingual Markdown report."""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import pytest

from dashboard.history import export
from dashboard.history.records import RowRecord, RunRecord

SECRET = "sk-do-not-leak"
VALUES = {
    "max_model_len": 2048,
    "max_num_seqs": 8,
    "enforce_eager": True,
    "enable_prefix_caching": False,
    "kv_cache_memory_gib": 1.0,
    "gpu_memory_utilization": 0.92,
    "dtype": "bfloat16",
    "api_key": SECRET,
    "seed": None,
}


def _run(**changes: object) -> RunRecord:
    fields = dict(
        id=7,
        kind="load",
        created_at="2026-11-24T08:42:58.000+00:00",
        finished_at="2026-11-24T08:45:00.000+00:00",
        status="done",
        label="Pika | classroom",
        backend="cpu",
        config={"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "values": VALUES},
        summary={"e2e_p50_ms": 1234.5, "throughput": {"req_s": 7.3}},
        startup={"phases": [{"name": "weights", "seconds": 0.58}], "kv_cache_tokens": 46592},
        rows=(
            RowRecord(1, "2026-11-24T08:43:00.000+00:00", {"level": 1, "latency": {"p50": 97.25}}),
            RowRecord(2, "2026-11-24T08:44:00.000+00:00", {"level": 2, "latency": {"p50": 99, "p90": 120}}),
            RowRecord(3, "2026-11-24T08:45:00.000+00:00", {"level": 4, "errors": ["timeout"]}),
        ),
        row_count=3,
    )
    fields.update(changes)
    return RunRecord(**fields)


def test_command_is_built_from_the_config_flags() -> None:
    words = shlex.split(export.as_command(_run()))

    assert words[:4] == ["VLLM_API_KEY=<your-key>", "vllm", "serve", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    text = " ".join(words)
    assert "--max-model-len 2048" in text
    assert "--max-num-seqs 8" in text
    assert "--gpu-memory-utilization 0.92" in text
    assert "--dtype bfloat16" in text
    assert "--enforce-eager" in words
    assert "--no-enable-prefix-caching" in words
    assert "--kv-cache-memory-bytes 1073741824" in text
    assert "--seed" not in words


def test_command_masks_the_api_key() -> None:
    command = export.as_command(_run())
    assert SECRET not in command
    assert "--api-key" not in command  # vLLM reads the key from VLLM_API_KEY; the line says so
    assert command.startswith("VLLM_API_KEY=<your-key> vllm serve ")


def test_command_recorded_by_the_server_wins_and_is_masked() -> None:
    argv = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--api-key", SECRET]
    run = _run(startup={"argv": argv})
    assert export.as_command(run) == "VLLM_API_KEY=<your-key> " + shlex.join([*argv[:-1], "***"])
    recorded = _run(startup=None, summary={"command": f"vllm serve /m --api-key={SECRET} --port 8000"})
    assert export.as_command(recorded) == "VLLM_API_KEY=<your-key> vllm serve /m '--api-key=***' --port 8000"


def test_command_accepts_a_flat_config() -> None:
    run = _run(config={"model": "/models/smol", "max_model_len": 1024, "trust_remote_code": False})
    assert export.as_command(run) == "vllm serve /models/smol --max-model-len 1024 --no-trust-remote-code"


def test_json_parses_back_to_the_run_without_secrets() -> None:
    text = export.as_json(_run())
    data = json.loads(text)
    assert data["id"] == 7
    assert len(data["rows"]) == 3
    assert data["config"]["values"]["api_key"] == "***"
    assert data["summary"]["throughput"]["req_s"] == 7.3
    assert SECRET not in text


def test_json_is_strict_even_with_missing_measurements() -> None:
    run = _run(summary={"p50_ms": float("nan"), "max_ms": float("inf"), "n": 3})
    text = export.as_json(run)
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["summary"] == {"p50_ms": None, "max_ms": None, "n": 3}


def test_csv_has_a_header_and_one_line_per_row_with_dotted_keys() -> None:
    text = export.as_csv(_run())
    lines = text.splitlines()
    assert len(lines) == 1 + 3
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["seq", "created_at", "level", "latency.p50", "latency.p90", "errors"]
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["latency.p90"] == "120"
    assert rows[0]["latency.p90"] == ""
    assert json.loads(rows[2]["errors"]) == ["timeout"]


def test_csv_of_a_run_without_rows_is_one_line_of_its_facts_and_commands() -> None:
    text = export.as_csv(_run(kind="apply", rows=()))
    [record] = list(csv.DictReader(io.StringIO(text)))
    assert record["kind"] == "apply" and record["kv_cache_tokens"] == "46592"
    assert "vllm.entrypoints.openai.api_server" in record["command_here"]
    assert record["command_portable"].startswith("VLLM_API_KEY=<your-key> vllm serve ")
    assert SECRET not in text


def test_markdown_has_vietnamese_then_english_with_local_number_formats() -> None:
    text = export.as_markdown(_run(), "both", charts={"latency": Path("charts/latency.png")})
    vi, en = text.split("## English")
    assert vi.lstrip().startswith("## Tiếng Việt")
    assert "1.234,5" in vi and "1,234.5" in en  # summary e2e_p50_ms
    assert "46.592" in vi and "46,592" in en  # startup kv cache tokens
    assert "thg 11" in vi and "Nov 24, 2026" in en  # dates
    for section in (vi, en):
        assert "--max-model-len 2048" in section
        assert "![latency](charts/latency.png)" in section
        assert "| weights |" in section
        assert section.count("\n| 1 |") + section.count("\n| 2 |") + section.count("\n| 3 |") == 3
    assert SECRET not in text


def test_markdown_in_one_language_has_only_that_section() -> None:
    text = export.as_markdown(_run(), "en")
    assert "## English" in text
    assert "Tiếng Việt" not in text


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_markdown_escapes_table_pipes_and_reports_no_rows(lang: str) -> None:
    text = export.as_markdown(_run(rows=(), row_count=0), lang)
    assert "Pika \\| classroom" in text
    assert "| # |" not in text


def _startup_report(**changes: object) -> dict:
    """The shape of StartupReport.to_dict() (secrets already masked by the server manager)."""
    report = {
        "config": {"model": "embedded", "values": {"max_model_len": 2048}},
        "command": ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--port", "8011"],
        "command_text": "python -m vllm.entrypoints.openai.api_server --model /m --port 8011",
        "started_at": 1795000000.0,
        "backend": "cpu",
        "vllm_version": "0.32.0",
        "ready_s": 34.5,
        "startup": [
            {"phase": "weights_loaded", "seconds": 21.25, "detail": {"seconds": 0.58}},
            {"phase": "kv_cache", "seconds": 23.0, "detail": {"tokens": 46592}, "label": "Warehouse"},
        ],
        "kv_cache_tokens": 46592,
        "error": None,
        "log_tail": ["line"] * 40,
        "log_path": "/somewhere/server.log",
        "base_url": "http://127.0.0.1:8011",
    }
    report.update(changes)
    return report


def test_markdown_shows_a_startup_report_phases_and_facts_but_no_log_path() -> None:
    run = _run(kind="startup", rows=(), row_count=0, summary=None, startup=_startup_report())
    vi, en = export.as_markdown(run).split("## English")

    assert "| weights_loaded | 21,25 | seconds = 0,58 |" in vi
    assert "| Warehouse | 23 | tokens = 46,592 |" in en
    assert "46.592" in vi
    assert "| vLLM version | 0.32.0 |" in en
    assert "| Start time (s) | 34.5 |" in en and "| 34,5 |" in vi
    started = [line for line in en.splitlines() if line.startswith("| Started |")]
    assert started and all("2026" in line for line in started)  # epoch seconds shown as a date
    assert "/somewhere" not in vi + en
    assert export.as_command(run) == "VLLM_API_KEY=<your-key> " + shlex.join(_startup_report()["command"])


def test_markdown_explains_a_failed_start_with_its_suggestion() -> None:
    error = {
        "code": "kv_cache_too_small",
        "message": "The warehouse holds {tokens} tokens.",
        "flag": "max_model_len",
        "params": {"tokens": 1000},
        "suggestion": 1024,
        "root_cause": "ValueError: estimated maximum model length is 1024",
        "text_vi": "Nhà kho chứa 1000 token.",
        "text_en": "The warehouse holds 1000 tokens.",
    }
    run = _run(kind="startup", status="failed", startup=_startup_report(error=error, ready_s=None))
    vi, en = export.as_markdown(run).split("## English")

    assert "Nhà kho chứa 1000 token." in vi
    assert "The warehouse holds 1000 tokens." in en
    for section in (vi, en):
        assert "`max_model_len`" in section and "`1024`" in section
        assert "estimated maximum model length is 1024" in section
