"""Errors people meet are told by their known cause in both languages, vLLM's own text kept aside."""

from __future__ import annotations

from dashboard.engine.startup_log import classify_failure
from dashboard.measure import request_errors
from dashboard.measure.tokens import PromptCount

LONG_PROMPT_400 = (
    "HTTP 400: This model's maximum context length is 2048 tokens. However, you requested 2300 tokens "
    "(2250 in the messages, 50 in the completion). Please reduce the length of the messages or completion."
)


def test_a_too_long_prompt_names_the_belt_and_the_fix_in_vietnamese():
    problem = request_errors.explain(LONG_PROMPT_400, max_tokens=50)
    assert problem.code == "prompt_too_long"
    vi = problem.text("vi")
    assert "2.048" in vi and "2.250" in vi
    assert "maximum context length" not in vi
    assert problem.root_cause == LONG_PROMPT_400


def test_a_prompt_that_leaves_room_offers_a_shorter_answer_as_the_fix():
    problem = PromptCount(prompt_tokens=1900, max_model_len=2048).problem(max_tokens=512)
    assert problem is not None and problem.suggestion == 148
    assert PromptCount(prompt_tokens=1900, max_model_len=2048).problem(max_tokens=100) is None
    assert PromptCount(prompt_tokens=1900, max_model_len=None).problem(max_tokens=512) is None


def test_known_request_errors_each_have_their_own_cause():
    cases = {
        "HTTP 401: Unauthorized": "wrong_key",
        "ClientConnectorError: Cannot connect to host 127.0.0.1:8011": "server_unreachable",
        "TimeoutError: read timed out": "request_timeout",
        "HTTP 500: Internal Server Error": "server_error",
        "HTTP 404: The model `pika` does not exist.": "unknown_model_name",
    }
    for text, code in cases.items():
        assert request_errors.explain(text).code == code, text


def test_an_unknown_error_keeps_vllms_words_out_of_the_sentence():
    problem = request_errors.explain("HTTP 400: something new and strange")
    assert "something new" not in problem.text("vi")
    assert problem.root_cause == "HTTP 400: something new and strange"


def test_a_start_that_cannot_reach_the_hub_names_the_model_not_a_url():
    line = (
        "'[Errno -2] Name or service not known' thrown while requesting HEAD "
        "https://huggingface.co/nonexistent/model/resolve/main/config.json"
    )
    problem = classify_failure([line])
    assert problem.code == "model_unreachable"
    assert "nonexistent/model" in problem.text("vi")
    assert "huggingface.co" not in problem.text("vi")


def test_an_unrecognised_start_failure_does_not_paste_english_into_the_message():
    problem = classify_failure(["ValueError: some brand new failure"])
    assert problem.code == "engine_failed"
    assert "brand new" not in problem.text("vi")
    assert "brand new" in problem.root_cause
