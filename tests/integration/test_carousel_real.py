"""The carousel against real CPU vLLM servers, in the order a class would meet it: a second setting
starts beside the first, going back is a flip, a full carousel evicts the least recently used server
but never a pinned one, a server killed from outside leaves cleanly, and closing leaves no process.

The tests share one carousel and run in file order (three real starts in all). Ports 8170-8179."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dashboard.engine.carousel import Carousel
from dashboard.engine.config import ServerConfig, default_config
from tests.conftest import SERVER_START_TIMEOUT_S, alive, server_processes_in, wait_for

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PORT = 8170


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("carousel")


@pytest.fixture(scope="module")
def carousel(workdir: Path) -> Iterator[Carousel]:
    carousel = Carousel(workdir, backend="cpu", max_servers=3)
    yield carousel
    carousel.close()


def config_with(**values) -> ServerConfig:
    return default_config("cpu").with_values({"port": PORT, "max_model_len": 1024, **values})


A = {"max_num_seqs": 4}
B = {"max_num_seqs": 8}
C = {"max_num_seqs": 12}
D = {"max_num_seqs": 16}


def slot_of(carousel: Carousel, values: dict) -> object:
    wanted = config_with(**values)
    return next(
        card for card in carousel.cards() if card.config.get("max_num_seqs") == wanted.get("max_num_seqs")
    )


def answers(carousel: Carousel) -> bool:
    payload = {
        "model": carousel.served_name,
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 3,
    }
    response = httpx.post(
        carousel.base_url + "/v1/chat/completions", json=payload, timeout=120, trust_env=False
    )
    return response.status_code == 200


def states(processes: list[psutil.Process]) -> set[str]:
    found = set()
    for process in processes:
        try:
            found.add(process.status())
        except psutil.Error:
            continue
    return found


def test_a_new_setting_starts_beside_the_running_server_which_then_pauses(carousel: Carousel) -> None:
    first = carousel.start(config_with(**A), timeout=SERVER_START_TIMEOUT_S)
    assert first.ok, first.log_tail[-10:]
    assert first.server_start == {"kind": "forked", "ready_s": first.ready_s}  # from the prepared starter
    first_pid = carousel.snapshot().pid

    second = carousel.start(config_with(**B), timeout=SERVER_START_TIMEOUT_S)
    assert second.ok, second.log_tail[-10:]
    assert second.server_start["kind"] == "forked"
    assert carousel.snapshot().pid != first_pid
    assert answers(carousel)

    paused = slot_of(carousel, A)
    assert paused.state == "paused"
    assert paused.base_url != carousel.base_url  # each server has its own port
    processes = [p for p in carousel.all_processes() if os.getsid(p.pid) == first_pid]
    assert processes and states(processes) == {psutil.STATUS_STOPPED}


def test_a_forked_model_worker_keeps_the_cores_vllm_gives_it(carousel: Carousel) -> None:
    workers = [p for p in carousel.process_tree() if "Worker" in " ".join(p.cmdline())]
    assert workers, [p.cmdline() for p in carousel.process_tree()]
    placements = {frozenset(os.sched_getaffinity(t.id)) for w in workers for t in w.threads()}
    machine = set(os.sched_getaffinity(0))
    assert len(placements) == 1  # every thread of the worker on the same cores, as in a new process
    if len(machine) > 1:
        assert next(iter(placements)) < machine  # vLLM keeps a core for the engine and the API server


def test_going_back_to_a_warm_setting_is_a_flip_to_the_same_server(carousel: Carousel) -> None:
    paused = slot_of(carousel, A)
    before = {card.slot_id for card in carousel.cards()}
    report = carousel.start(config_with(**A))
    assert report.ok
    assert report.server_start["kind"] == "reused"
    assert report.server_start["ready_s"] < 30  # a flip, not a start (the timing target is a benchmark's)
    assert {card.slot_id for card in carousel.cards()} == before
    assert slot_of(carousel, A).state == "active" and slot_of(carousel, B).state == "paused"
    assert slot_of(carousel, A).slot_id == paused.slot_id
    assert answers(carousel)
    assert carousel.is_warm(config_with(**B)) and not carousel.is_warm(config_with(**C))
    assert carousel.preview(config_with(**B)).kind == "flip"
    assert carousel.preview(config_with(**C)).kind == "start"


def test_a_full_carousel_evicts_the_least_recently_used_server_but_never_a_pinned_one(
    carousel: Carousel,
) -> None:
    carousel.pin(slot_of(carousel, B).slot_id)
    carousel.max_servers = 2  # A (in use) and B (pinned) fill it
    a_processes = [p for p in carousel.all_processes() if os.getsid(p.pid) == carousel.snapshot().pid]

    report = carousel.start(config_with(**C), timeout=SERVER_START_TIMEOUT_S)
    assert report.ok, report.log_tail[-10:]

    kept = {card.config.get("max_num_seqs"): card for card in carousel.cards()}
    assert set(kept) == {8, 12}  # A, the least recently used unpinned server, made room
    assert kept[8].pinned and kept[12].state == "active"
    assert wait_for(lambda: not alive(a_processes), 30)  # a zombie waiting for its parent counts as gone
    assert any(event.kind == "evicted" for event in carousel.events())
    footprints = json.loads((carousel.workdir / "footprints.json").read_text())
    assert len(footprints) == 3 and all(entry["measured_bytes"] > 0 for entry in footprints)
    runtime, learned = carousel.runtime_share()
    assert learned and runtime > 0


def affinity_of(processes: list[psutil.Process]) -> set[int]:
    cores: set[int] = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            cores |= set(process.cpu_affinity())
    return cores


def test_a_background_start_runs_on_the_spare_core_waits_parked_and_is_then_a_flip(
    carousel: Carousel,
) -> None:
    carousel.max_servers = 3
    carousel.prestart_cores = 1  # the CPU build has no spare core of its own; this test lends it one
    spare = carousel.spare_cores()
    assert carousel.prestart(config_with(**D), timeout=SERVER_START_TIMEOUT_S)
    assert not carousel.prestart(config_with(**D))  # already on its way
    card = slot_of(carousel, D)
    assert card.background and card.state == "starting"
    assert carousel.snapshot().config.get("max_num_seqs") == C["max_num_seqs"]  # C still serves

    assert wait_for(lambda: slot_of(carousel, D).state == "paused", SERVER_START_TIMEOUT_S, every=1)
    background = carousel._slots[card.slot_id].manager.process_tree()
    assert len(background) >= 2 and affinity_of(background) == set(spare)

    report = carousel.start(config_with(**D))
    assert report.ok and report.server_start["kind"] == "reused"
    assert affinity_of(carousel.process_tree()) == set(os.sched_getaffinity(0))
    assert answers(carousel)
    assert any(event.kind == "prestarted" for event in carousel.events())


def test_a_paused_server_killed_from_outside_is_removed_and_reported(carousel: Carousel) -> None:
    victim = slot_of(carousel, B)
    pids = {p.pid for p in carousel.all_processes()} - {p.pid for p in carousel.process_tree()}
    assert pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: victim.slot_id not in {card.slot_id for card in carousel.cards()}, 30)
    assert any(event.kind == "crashed" for event in carousel.events())
    assert carousel.snapshot().status == "ready" and answers(carousel)


def test_closing_the_carousel_leaves_no_process_of_any_server(carousel: Carousel, workdir: Path) -> None:
    carousel.close()
    assert carousel.cards() == []
    assert wait_for(lambda: server_processes_in(workdir) == [], 30), server_processes_in(workdir)


def test_cli_sweep_revisits_a_warm_value_and_reports_how_each_server_started(tmp_path: Path) -> None:
    report_path = tmp_path / "sweep.json"
    workdir = tmp_path / "runs"
    result = subprocess.run(
        [
            sys.executable, "-m", "dashboard", "--lang", "en", "sweep", "--preset", "pika-json",
            "--flag", "enable_prefix_caching", "--values", "true,false,true", "--requests", "1",
            "--set", "port=8175", "--json", str(report_path), "--workdir", str(workdir),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(report_path.read_text(encoding="utf-8"))["rows"]
    kinds = [row["server_start"]["kind"] for row in rows]
    assert kinds == ["forked", "forked", "reused"]
    assert all(row["server_start"]["ready_s"] > 0 for row in rows)
    assert rows[2]["server_start"]["ready_s"] < rows[0]["server_start"]["ready_s"]
    assert all("vllm.entrypoints.openai.api_server" in row["command"] for row in rows)
    assert server_processes_in(workdir) == []
