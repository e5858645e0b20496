"""Experiment cards: what a card holds, that it reads back into the same config, workload and plan,
that secrets stay out, that a bad card is refused with a clear message, and the comparison."""

from __future__ import annotations

import json

import pytest

from dashboard.cli import main
from dashboard.engine import presets
from dashboard.engine.config import default_config
from dashboard.measure import cards
from dashboard.measure.client import RequestTiming
from dashboard.measure.loadgen import LoadPlan, Workload, summarize


def result_of(e2e: list[float], plan: LoadPlan, workload: Workload):
    timings = [
        RequestTiming(
            ok=True, error=None, text="x", ttft_ms=e / 4, e2e_ms=e, completion_tokens=20, prompt_tokens=30
        )
        for e in e2e
    ]
    return summarize(timings, plan, workload, duration_s=sum(e2e) / 1000, started_at=1000.0)


def card(e2e=(900.0, 1000.0, 1100.0), api_key=None):
    config = default_config("cpu").with_values(
        {"max_num_seqs": 8, **({"api_key": api_key} if api_key else {})}
    )
    workload = Workload.from_request(presets.get("pika-json").request, json_mode=True, label="pika-json")
    plan = LoadPlan(concurrency=4, requests=len(e2e))
    env = cards.environment("cpu", "HuggingFaceTB/SmolLM2-135M-Instruct", vllm_version="0.32.0")
    return cards.make_card(config, workload, plan, result_of(list(e2e), plan, workload), env, label="test")


def test_the_environment_line_names_the_processor_cores_devices_and_vllm():
    env = cards.environment("cpu", "HuggingFaceTB/SmolLM2-135M-Instruct", vllm_version="0.32.0")
    env["hardware"] |= {"cpu": "Test CPU", "cpu_cores": 2, "devices": []}
    assert cards.environment_line(env) == "machine: Test CPU, 2 cores, no GPU; vLLM 0.32.0"
    env["hardware"]["devices"] = ["NVIDIA H200"]
    assert cards.environment_line(env).endswith("2 cores, NVIDIA H200; vLLM 0.32.0")


def test_card_holds_config_workload_environment_and_results():
    made = card()
    assert made["config"]["values"]["max_num_seqs"] == 8
    assert made["environment"]["vllm_version"] == "0.32.0"
    assert made["environment"]["hardware"]["memory_gib"] > 0
    assert made["results"]["e2e_p50_ms"] == pytest.approx(1000.0)
    assert made["workload"]["schema"] == presets.get("pika-json").request.schema


def test_card_reads_back_into_the_same_run(tmp_path):
    made = card()
    path = tmp_path / "card.json"
    cards.write_card(made, path)
    back = cards.read_card(path)
    assert cards.card_config(back) == default_config("cpu").with_values({"max_num_seqs": 8})
    assert cards.card_plan(back) == LoadPlan(concurrency=4, requests=3)
    workload = cards.workload_from_dict(back["workload"])
    assert workload.request == presets.get("pika-json").request
    assert workload.json_mode is True


def test_the_api_key_never_enters_a_card(tmp_path):
    made = card(api_key="s3cret-key")
    path = tmp_path / "card.json"
    cards.write_card(made, path)
    assert "s3cret-key" not in path.read_text()
    assert "api_key" not in cards.card_config(cards.read_card(path)).values  # a replay runs without it


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not a JSON experiment card"),
        (json.dumps({"hello": 1}), "is not an experiment card"),
        (json.dumps({"card": cards.CARD_KIND, "version": 99}), "version 99"),
        (json.dumps({"card": cards.CARD_KIND, "version": 1, "config": {}}), "no 'workload' part"),
    ],
)
def test_a_bad_card_is_refused_with_what_is_wrong(tmp_path, content, says):
    path = tmp_path / "card.json"
    path.write_text(content)
    with pytest.raises(cards.CardError) as caught:
        cards.read_card(path)
    assert says in caught.value.problem.text("en")


def test_a_card_with_an_impossible_plan_is_refused(tmp_path):
    made = card()
    made["plan"]["concurrency"] = 0
    path = tmp_path / "card.json"
    cards.write_card(made, path)
    with pytest.raises(cards.CardError) as caught:
        cards.read_card(path)
    assert "cannot use" in caught.value.problem.text("en")


def test_compare_puts_their_figures_beside_ours():
    rows = {r.figure: r for r in cards.compare(card((900, 1000, 1100)), card((1800, 2000, 2200)))}
    assert rows["e2e_p50_ms"].ratio == pytest.approx(2.0)
    assert rows["e2e_p50_ms"].lower_is_better


def test_replay_cli_refuses_a_missing_card_before_starting_anything(tmp_path, capsys):
    code = main(["--lang", "en", "replay", str(tmp_path / "nowhere.json"), "--workdir", str(tmp_path)])
    assert code == 2
    assert "There is no card at" in capsys.readouterr().err
