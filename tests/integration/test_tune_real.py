"""`python -m dashboard tune` against the real CPU server, with a small budget: the report's keys, the
history rows written as trials are measured, and a second run of the same question that resumes the
study instead of measuring its trials again.

Two real starts in all: the first run tries the baseline and two request-side options on one running
server (no restart for request options); the resumed run starts the server once for its confirmation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.engine import hardware, models
from dashboard.history.store import HistoryStore

pytestmark = [pytest.mark.server, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
PORT = 8341
CLI_TIMEOUT_S = 700
ARGS = (
    "tune", "--preset", "pika-json", "--goal", "p50-e2e", "--minutes", "12", "--max-trials", "3",
    "--requests", "6", "--set", f"port={PORT}",
)  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("home")
    shared_models = models.embedded_dir().parent
    if shared_models.exists():
        (folder / "models").symlink_to(shared_models)
    return folder


def tune(home: Path, out: Path, lang: str = "en") -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "LEGO_FACTORY_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "dashboard", "--lang", lang, *ARGS, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    print(done.stdout[-4000:], done.stderr[-3000:])
    return done, json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}


@pytest.fixture(scope="module")
def first(home: Path) -> tuple[subprocess.CompletedProcess, dict]:
    return tune(home, home / "tune1.json")


@pytest.fixture(scope="module")
def resumed(home: Path, first) -> tuple[subprocess.CompletedProcess, dict]:
    return tune(home, home / "tune2.json", lang="vi")


def test_the_report_holds_the_best_the_baseline_the_trials_and_a_verdict_in_both_languages(first):
    done, report = first
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"best", "baseline", "trials", "verdict"} <= set(report)
    trials = report["trials"]
    assert len(trials) == 3 and trials[0]["changes"] == {}
    assert {knob for t in trials[1:] for knob in t["changes"]} <= {"compact_json", "max_tokens"}
    assert all(t["state"] in ("measured", "stopped_early") for t in trials)
    best, base = report["best"], report["baseline"]
    assert best["command"][:2] == ["vllm", "serve"] and "--max-model-len" in best["command"]
    assert isinstance(best["request_fields"], dict)
    assert base["confirmed"] and base["goal"]["value"] > 0 and base["goal"]["n"] == 6
    # the confirmation came in two interleaved turns of 3 answers; the baseline's turns give the drift
    checked = next(c for c in report["confirmations"] if c["changes"] == {})
    assert [turn["answers"] for turn in checked["turns"]] == [3, 3]
    assert report["drift"]["turns"] == [turn["value"] for turn in checked["turns"]]
    assert base["goal"]["low"] <= base["goal"]["value"] <= base["goal"]["high"]
    assert sum(report["server_starts"].values()) == 1  # request options reused the running server
    assert report["verdict"]["en"] and report["verdict"]["vi"] != report["verdict"]["en"]
    assert "10 ms" in report["verdict"]["en"]  # Pika: how far from the owner's hope
    assert base["answers"], "the baseline's answers are kept to compare the others with"
    assert report["environment"]["hardware"]["cpu"] == hardware.cpu_model()  # whose figures these are


def test_every_trial_is_a_history_row_with_its_measured_times(first, home):
    done, report = first
    store = HistoryStore(home / "history.sqlite3")
    run = store.get_run(report["history_run_id"])
    assert run.kind == "tune" and run.status == "done"
    search_rows = [row.data for row in run.rows if row.data["phase"] == "search"]
    assert [row["number"] for row in search_rows] == [t["number"] for t in report["trials"]]
    assert all(row["samples"]["e2e_ms"] for row in search_rows if row["state"] == "measured")
    assert run.summary["verdict_en"] == report["verdict"]["en"]


def test_the_same_question_resumes_the_study_without_measuring_its_trials_again(first, resumed, home):
    done, report = resumed
    assert done.returncode == 0, done.stderr[-2000:]
    assert report["study"]["name"] == first[1]["study"]["name"]
    assert report["study"]["resumed_trials"] == 3
    assert [t["number"] for t in report["trials"]] == [t["number"] for t in first[1]["trials"]]
    store = HistoryStore(home / "history.sqlite3")
    rows = store.get_run(report["history_run_id"]).rows
    assert rows and all(row.data["phase"] == "confirm" for row in rows)  # nothing searched twice
    assert report["verdict"]["vi"] in done.stdout  # --lang vi prints the Vietnamese verdict
