"""Checks made before anything starts: the model can be found, it fits, and every fix offered is valid."""

from __future__ import annotations

import httpx
import pytest

from dashboard.engine import models
from dashboard.engine.config import ModelFacts, default_config, validate
from dashboard.engine.problems import Problem

GIB = 1024**3
SMOL = ModelFacts(backend="cpu", gpu_count=0, max_model_len=8192, model="embedded")


def kv_too_small(suggestion: int) -> Problem:
    """What the memory arithmetic says when the warehouse holds fewer tokens than one request may need."""
    return Problem(
        "kv_cache_too_small_for_length",
        "The warehouse holds {tokens} tokens but one request may need {length}.",
        "max_model_len",
        {"tokens": suggestion + 128, "length": 131072},
        suggestion=suggestion,
    )


def refusal(model: str) -> Problem:
    with pytest.raises(models.ModelUnavailable) as caught:
        models.resolve(model, prepare=False)
    return caught.value.problem


def test_a_length_above_the_model_and_the_warehouse_gets_one_fix_that_is_itself_valid():
    config = default_config("cpu").with_values({"max_model_len": 131072})
    problems = validate(config, SMOL, check_port=False, predicted=[kv_too_small(46464)])
    fixes = [(p.flag, p.suggestion) for p in problems if p.flag == "max_model_len"]
    assert fixes == [("max_model_len", 8192)]
    fixed = config.with_values({"max_model_len": 8192})
    assert validate(fixed, SMOL, check_port=False) == []


def test_when_the_warehouse_is_the_tighter_limit_its_smaller_length_is_the_one_fix():
    facts = ModelFacts(backend="cpu", gpu_count=0, max_model_len=32768)
    config = default_config("cpu").with_values({"max_model_len": 40000})
    problems = validate(config, facts, check_port=False, predicted=[kv_too_small(7936)])
    assert [(p.code, p.suggestion) for p in problems] == [("max_model_len_above_model", 7936)]


def test_a_predicted_problem_alone_keeps_its_own_fix():
    config = default_config("cpu").with_values({"max_model_len": 8192})
    problems = validate(config, SMOL, check_port=False, predicted=[kv_too_small(2688)])
    assert [(p.code, p.suggestion) for p in problems] == [("kv_cache_too_small_for_length", 2688)]


def test_a_fix_that_would_be_refused_is_not_offered():
    config = default_config("cpu").with_values({"max_model_len": 8192})
    problems = validate(config, SMOL, check_port=False, predicted=[kv_too_small(10)])
    assert problems[0].suggestion is None  # below the flag's minimum: no one-click fix


def test_a_model_larger_than_the_machine_is_refused_with_its_name_and_sizes():
    facts = ModelFacts(
        backend="cpu", gpu_count=0, model="big/model", weights_bytes=140 * GIB, memory_bytes=24 * GIB
    )
    problems = validate(default_config("cpu"), facts, check_port=False)
    assert [p.code for p in problems] == ["model_too_big"]
    assert "big/model" in problems[0].text("vi")
    assert "140 GiB" in problems[0].text("en")
    big = ModelFacts(
        backend="cpu", gpu_count=0, model="m", weights_bytes=int(25.5 * GIB), memory_bytes=24 * GIB
    )
    assert "25,5" in validate(default_config("cpu"), big, check_port=False)[0].text("vi")


def test_a_model_name_with_spaces_is_refused_in_the_users_language():
    problem = refusal("my model")
    assert problem.code == "model_name_invalid"
    assert "my model" in problem.text("vi")
    assert "huggingface.co" not in problem.text("vi")


def test_offline_mode_refuses_an_uncached_model_without_asking_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_hub_status", lambda model: pytest.fail("network asked"))
    assert refusal("nonexistent/model").code == "model_not_cached"


def test_an_unreachable_hub_names_the_model_instead_of_blaming_a_url(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise httpx.ConnectError("Name or service not known")

    monkeypatch.setattr(httpx, "get", no_network)
    problem = refusal("nonexistent/model")
    assert problem.code == "model_unreachable"
    assert "nonexistent/model" in problem.text("vi")
    assert "Name or service not known" in problem.root_cause  # vLLM-side detail stays one click away


def test_a_model_the_hub_does_not_know_is_named_as_missing(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(
        httpx, "get", lambda url, **kwargs: httpx.Response(401, request=httpx.Request("GET", url))
    )
    problem = refusal("nonexistent/model")
    assert problem.code == "model_not_found"
    assert "nonexistent/model" in problem.text("en")
