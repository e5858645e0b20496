"""Exports that travel: labelled commands for this machine and for the Hub, a readable report (translated
labels, no raw keys or templates, ports and dates written as such), a CSV for every kind of run, and
the table's handout."""

from __future__ import annotations

import csv
import io
import re
import shlex

from dashboard.history import export, handout
from dashboard.history.records import RowRecord, RunRecord

LOCAL = "/home/me/.cache/lego-factory/models/smollm2-135m-instruct"
HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
RECORDED = [
    "/opt/venv/bin/python",
    "-m",
    "vllm.entrypoints.openai.api_server",
    "--model",
    LOCAL,
    "--max-model-len",
    "2048",
    "--max-num-seqs",
    "16",
    "--served-model-name",
    HUB,
    "--port",
    "8011",
    "--api-key",
    "sk-secret",
]


def sweep_run() -> RunRecord:
    rows = tuple(
        RowRecord(
            i + 1,
            "2026-12-01T10:00:00+00:00",
            {
                "flag": "max_num_seqs",
                "value": value,
                "ok": True,
                "ready_s": 31.2,
                "ttft_p50_ms": 97.5,
                "e2e_p50_ms": 1234.5,
                "output_tokens_per_s": 30.25,
                "process_rss_bytes": 3 * 1024**3,
                "command": shlex.join([*RECORDED[:8], str(value), *RECORDED[9:]]),
                "load": {
                    "started_at": 1796188772.609,
                    "workload": {
                        "messages": [{"role": "system", "content": "A very long system prompt " * 20}]
                    },
                },
            },
        )
        for i, value in enumerate((4, 16))
    )
    return RunRecord(
        id=3,
        kind="sweep",
        created_at="2026-12-01T10:00:00+00:00",
        status="done",
        config={"model": "embedded", "values": {"max_model_len": 2048, "port": 8011, "api_key": "sk-secret"}},
        label="--max-num-seqs: 4, 16",
        backend="cpu",
        summary={
            "flag": "max_num_seqs",
            "verdict_message": "Turning on {flag} made each answer {ratio}x faster here.",
            "verdict_params": {"flag": "--max-num-seqs", "ratio": 1.2},
            "verdict_vi": "Câu trả lời nhanh hơn.",
            "verdict_en": "Each answer was faster.",
            "duration_s": 96.5,
            "measured": 2,
        },
        rows=rows,
        row_count=2,
    )


def test_recorded_module_command_is_kept_for_this_machine_and_rewritten_for_the_hub():
    run = RunRecord(1, "startup", "2026-12-01T10:00:00+00:00", "done", {}, startup={"command": RECORDED})
    (here_label, here), (hub_label, portable) = export.labelled_commands(run)
    assert here_label != hub_label
    assert here.startswith(
        "VLLM_API_KEY=<your-key> /opt/venv/bin/python -m vllm.entrypoints.openai.api_server"
    )
    assert f"--model {LOCAL}" in here and "--port 8011" in here
    assert portable.startswith(f"VLLM_API_KEY=<your-key> vllm serve {HUB} ")
    assert LOCAL not in portable and "--served-model-name" not in portable
    assert "--max-num-seqs 16" in portable
    assert "sk-secret" not in here + portable and "--api-key" not in here + portable


def test_a_vllm_serve_line_becomes_the_module_form_here():
    run = RunRecord(
        1,
        "load",
        "2026-12-01T10:00:00+00:00",
        "done",
        {},
        summary={"command": f"vllm serve {HUB} --port 8011"},
    )
    (_l, here), (_p, portable) = export.labelled_commands(run)
    assert here == f"python -m vllm.entrypoints.openai.api_server --model {HUB} --port 8011"
    assert portable == f"vllm serve {HUB} --port 8011"


def test_without_a_recorded_command_the_local_model_folder_is_used():
    run = RunRecord(
        1, "apply", "2026-12-01T10:00:00+00:00", "done", {"model": "embedded", "values": {"port": 8011}}
    )
    (_l, here), _portable = export.labelled_commands(run, local_model=LOCAL)
    assert here == f"python -m vllm.entrypoints.openai.api_server --model {LOCAL} --port 8011"
    (_l, here), (_p, portable) = export.labelled_commands(run, local_model=LOCAL, hub_id=HUB)
    assert f"--model {LOCAL} --served-model-name {HUB}" in here
    assert portable == f"vllm serve {HUB} --port 8011"
    report = export.as_markdown(run, "en", local_model=LOCAL, hub_id=HUB)
    assert "embedded" not in report.split("#### Configuration")[0]


def test_sweep_report_has_one_command_pair_per_row_a_summary_and_no_raw_keys():
    for lang in ("vi", "en"):
        text = export.as_markdown(sweep_run(), lang)
        assert text.count("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct") == 2  # one per row
        assert "--max-num-seqs 4" in text and "--max-num-seqs 16" in text
        assert "{flag}" not in text and "{ratio}" not in text  # no untranslated template
        assert "verdict_" not in text and "e2e_p50_ms" not in text and "`max_model_len`" not in text
        assert "A very long system prompt" not in text  # no repeated prompts
        assert "8,011" not in text and "8.011" not in text  # a port is not a quantity
        assert "1,796,188,772" not in text and "1.796.188.772" not in text
        assert "sk-secret" not in text
        header = next(line for line in text.splitlines() if line.startswith("| # |"))
        assert header.count("|") <= 12  # the figures people compare, not every key


def test_vietnamese_report_has_no_english_labels_or_templates():
    text = export.as_markdown(sweep_run(), "vi")
    assert "Câu trả lời nhanh hơn." in text and "Each answer was faster." not in text
    english = ["Whole answer", "First token", "Start time", "Summary", "Command", "Measured rows", "Verdict"]
    found = [word for word in english if word in text]
    assert not found, found
    assert not re.search(r"\| `?[a-z]+_[a-z_]+`? \|", text)  # no snake_case keys as labels


def test_sweep_csv_keeps_every_row_and_the_table_csv_reads_like_the_table():
    rows = list(csv.DictReader(io.StringIO(export.as_csv(sweep_run()))))
    assert [row["value"] for row in rows] == ["4", "16"]
    table_run = RunRecord(
        5,
        "table",
        "2026-12-01T10:00:00+00:00",
        "done",
        {},
        rows=(RowRecord(1, "2026-12-01T10:00:00+00:00", TABLE["rows"][0]),),
        row_count=1,
    )
    [record] = list(csv.DictReader(io.StringIO(export.as_csv(table_run))))
    assert (
        record["effect"] == "faster" and record["interval_low"] == "0.2" and record["orders_per_value"] == "5"
    )


TABLE = {
    "kind": "table",
    "backend": "cpu",
    "machine": {"backend": "cpu", "devices": [], "memory_gib": 23.5, "cpu_cores": 2},
    "vllm_version": "0.32.0",
    "started_at": 1796188772.609,
    "noise": {
        "figures": [
            {"workload": "repeated_long_prompt", "metric": "ttft_ms", "percent": 12.4, "measured": True}
        ]
    },
    "rows": [
        {
            "flag": "enable_prefix_caching",
            "cli": "--enable-prefix-caching",
            "metric": "ttft_ms",
            "workload": "repeated_long_prompt",
            "values": [False, True],
            "effect": "faster",
            "ratio": 0.23,
            "interval": [0.2, 0.27],
            "n": 5,
            "noise_percent": 12.4,
            "verdict": {"vi": "Nhanh hơn: từ đầu tiên.", "en": "Faster: the first token."},
            "start_time_s": [30.0, 31.0],
            "memory_gib": [3.1, 3.2],
        },
        {
            "flag": "host",
            "cli": "--host",
            "metric": None,
            "values": [],
            "effect": "not_a_speed_setting",
            "ratio": None,
            "interval": None,
            "n": 0,
            "verdict": {"vi": "Không phải cần gạt tốc độ.", "en": "Not a speed setting."},
        },
    ],
}


def test_table_handout_markdown_in_vietnamese_has_machine_version_date_and_no_english():
    text = handout.table_markdown(TABLE, "vi")
    assert "vLLM 0.32.0" in text and "2026" in text and "0,23 (0,20–0,27)" in text
    assert "Nhanh hơn: từ đầu tiên." in text and "Faster" not in text
    assert "±12%" in text
    for english in ("first token", "not a speed setting", "Figure", "Orders", "Machine"):
        assert english not in text, english


def test_table_handout_image_is_a_png():
    image = handout.table_image(TABLE, "en", "png")
    assert image[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_table_run_report_shows_the_table_and_each_servers_commands_never_a_bare_config():
    command = shlex.join(RECORDED[:-2])
    rows = [
        dict(
            TABLE["rows"][0],
            figures=[{"value": False, "command": command}, {"value": True, "command": command}],
        )
    ]
    summary = {key: value for key, value in TABLE.items() if key != "rows"} | {"command": command}
    run = RunRecord(
        9,
        "table",
        "2026-12-01T10:00:00+00:00",
        "done",
        {"model": "embedded", "values": {"port": 8011}},
        summary=summary,
        rows=tuple(RowRecord(i + 1, "2026-12-01T10:00:00+00:00", row) for i, row in enumerate(rows)),
        row_count=1,
    )
    text = export.as_markdown(run, "en")
    assert "--model embedded" not in text and "vllm serve embedded" not in text
    assert "##### --enable-prefix-caching off" in text and "##### --enable-prefix-caching on" in text
    assert "| `--enable-prefix-caching` | first token | off → on | 0.23 (0.20–0.27) | 5 | faster |" in text
