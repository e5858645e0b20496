"""The whole-table run against the real server, kept short: two rows (prefix caching and a setting that
is not a speed setting), three orders per value to begin with. Then the exported command of one of its
servers is run exactly as written and must answer.

Real server starts: 4 for the table (the A/A pair and prefix caching off and on; trust_remote_code is
never started) and 1 for the exported command: 5 in all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from dashboard.cli import main
from dashboard.history import export, handout

pytestmark = [pytest.mark.server, pytest.mark.timeout(1500)]

EFFECTS = {"faster", "slower", "unclear", "not_a_speed_setting", "not_measured_here"}


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("table")
    out = folder / "table.json"
    code = main(
        [
            "--lang",
            "en",
            "table",
            "--backend",
            "cpu",
            "--flags",
            "enable_prefix_caching,trust_remote_code",
            "--orders",
            "3",
            "--minutes",
            "5",
            "--json",
            str(out),
            "--markdown",
            str(folder / "table.md"),
            "--workdir",
            str(folder / "work"),
            "--no-history",
            "--timeout",
            "300",
        ]
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    data["exit_code"] = code
    data["markdown"] = (folder / "table.md").read_text(encoding="utf-8")
    return data


def test_a_short_table_run_fills_every_asked_row_with_an_honest_verdict(table_run: dict) -> None:
    assert table_run["exit_code"] == 0
    assert table_run["starts"] <= 4
    rows = {row["flag"]: row for row in table_run["rows"]}
    assert list(rows) == ["enable_prefix_caching", "trust_remote_code"]
    for row in rows.values():
        assert row["effect"] in EFFECTS
        assert set(row["verdict"]) == {"vi", "en"} and row["verdict"]["vi"] != row["verdict"]["en"]

    remote = rows["trust_remote_code"]
    assert remote["effect"] == "not_a_speed_setting" and remote["figures"] == []

    caching = rows["enable_prefix_caching"]
    assert caching["metric"] == "ttft_ms" and caching["values"] == [False, True]
    assert caching["n"] >= 3
    low, high = caching["interval"]
    assert low <= caching["ratio"] <= high
    assert caching["effect"] == "faster", caching["verdict"]["en"]
    first, second = caching["figures"]
    assert first["ok"] and second["ok"]
    for figure in (first, second):
        tokens = figure["answer_tokens"]["repeated_long_prompt"]
        assert tokens and set(tokens) == {4}  # fixed-length answers
    assert "--no-enable-prefix-caching" in first["command"]  # on is vLLM's default: no option needed
    assert "--no-enable-prefix-caching" not in second["command"]

    noise = table_run["noise"]
    assert len(noise["starts"]) == 2 and all(start["ok"] for start in noise["starts"])
    measured = [f for f in noise["figures"] if f["measured"]]
    assert any(f["workload"] == "repeated_long_prompt" and f["metric"] == "ttft_ms" for f in measured)
    print(
        f"\nprefix caching first token: ratio {caching['ratio']:.3f} [{low:.3f}, {high:.3f}], "
        f"n={caching['n']}; "
        + ", ".join(f"{f['workload']}.{f['metric']} ±{f['percent']:.0f}%" for f in measured)
    )


def test_the_markdown_handout_has_the_rows_and_the_machine(table_run: dict) -> None:
    text = table_run["markdown"]
    assert "--enable-prefix-caching" in text and "--trust-remote-code" in text
    assert f"vLLM {table_run['vllm_version']}" in text
    vi = handout.table_markdown(table_run, "vi")
    assert "first token" not in vi and "not a speed setting" not in vi


def test_the_exported_command_starts_a_server_that_answers(table_run: dict, tmp_path: Path) -> None:
    row = next(row for row in table_run["rows"] if row["flag"] == "enable_prefix_caching")
    commands = export.labelled_commands(row["figures"][1])
    here = commands[0][1]
    assert "vllm.entrypoints.openai.api_server" in here and "--api-key" not in here
    assert commands[1][1].startswith("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct")
    words = shlex.split(here)
    port = int(words[words.index("--port") + 1])
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", here], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert process.poll() is None, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
        answer = httpx.post(
            base + "/v1/chat/completions",
            json={
                "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 5,
            },
            timeout=120,
        )
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
