"""A card measured on another machine, run again here by `python -m dashboard replay` against a real
vLLM server (one start): the comparison is printed, this machine's card is real and complete, and the
server is gone afterwards."""

from __future__ import annotations

import json

import pytest

from dashboard.cli import main
from dashboard.engine import hardware, presets
from dashboard.engine.config import default_config
from dashboard.measure import cards
from dashboard.measure.loadgen import LoadPlan, Workload
from tests.conftest import free_port, server_processes_in

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]


def their_card(port: int) -> dict:
    """A card as a GPU machine of another class wrote it (its figures are theirs, not measured here)."""
    config = default_config("cpu").with_values({"max_num_seqs": 4, "max_model_len": 1024, "port": port})
    workload = Workload.from_request(presets.get("pika").request, label="pika")
    return {
        "card": cards.CARD_KIND,
        "version": cards.CARD_VERSION,
        "label": "pika on the other class's GPU",
        "created_at": "2026-11-30T10:00:00Z",
        "config": {"model": config.model, "values": {**config.values, "api_key": "***"}},
        "workload": cards.workload_to_dict(workload),
        "plan": cards.plan_to_dict(LoadPlan(concurrency=2, requests=4, timeout_s=240)),
        "environment": {
            "vllm_version": "0.32.0",
            "backend": "cuda",
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        },
        "results": {"ttft_p50_ms": 18.0, "tpot_p50_ms": 4.0, "e2e_p50_ms": 210.0, "requests_per_s": 9.5},
    }


def test_replay_runs_a_card_here_and_prints_the_comparison(tmp_path, capsys):
    port = free_port()
    card_path, out_path, json_path = tmp_path / "theirs.json", tmp_path / "ours.json", tmp_path / "cmp.json"
    cards.write_card(their_card(port), card_path)
    workdir = tmp_path / "server"
    code = main(
        [
            "--lang",
            "en",
            "replay",
            str(card_path),
            "--card-out",
            str(out_path),
            "--json",
            str(json_path),
            "--workdir",
            str(workdir),
            "--timeout",
            "400",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Their machine: vLLM 0.32.0, cuda" in printed
    assert f"This machine: vLLM {hardware.vllm_version()}, cpu" in printed
    assert "whole answer, median" in printed

    ours = cards.read_card(out_path)
    assert ours["config"]["values"]["max_num_seqs"] == 4
    assert "api_key" not in ours["config"]["values"]
    assert ours["results"]["sent"] == 4 and ours["results"]["errors"] == 0
    assert ours["results"]["e2e_p50_ms"] > ours["results"]["ttft_p50_ms"] > 0
    assert ours["environment"]["vllm_version"] == hardware.vllm_version()
    rows = {row["figure"]: row for row in json.loads(json_path.read_text())["rows"]}
    assert rows["e2e_p50_ms"]["theirs"] == 210.0
    assert rows["e2e_p50_ms"]["ratio"] == pytest.approx(ours["results"]["e2e_p50_ms"] / 210.0)
    assert server_processes_in(workdir) == [], "the replayed server was left running"
