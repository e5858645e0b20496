"""The errors people meet when they send a request, mapped to their known causes in plain words.

vLLM answers in English (an HTTP 400 for a prompt that is too long, a 401 for a wrong key...). `explain`
turns that text into a Problem with a bilingual message and, when there is one, the setting to change;
vLLM's own text stays in `root_cause`, one click away on the page.
"""

from __future__ import annotations

import re

from dashboard.engine.problems import Problem
from dashboard.i18n import N_

_CONTEXT_LIMIT = re.compile(r"maximum (?:context|model) length (?:is|of) (\d+)", re.IGNORECASE)
_INPUT_TOKENS = re.compile(
    r"(\d+) (?:tokens )?in the messages|has (\d+) input tokens|prompt \(length (\d+)\)|(\d+) input tokens",
    re.IGNORECASE,
)


def _first_number(pattern: re.Pattern, text: str) -> int | None:
    found = pattern.search(text)
    if not found:
        return None
    return next((int(group) for group in found.groups() if group), None)


def too_long_problem(limit: int | None, prompt_tokens: int | None, max_tokens: int | None) -> Problem:
    """A question plus its longest answer that do not fit the conveyor belt (--max-model-len)."""
    room = limit - prompt_tokens if limit is not None and prompt_tokens is not None else None
    if room is not None and room > 0 and max_tokens is not None and max_tokens > room:
        return Problem(
            "prompt_too_long",
            N_(
                "The question is {prompt} tokens and the longest answer may be {answer}: together more than "
                "the conveyor belt holds ({limit} tokens, --max-model-len). Lower \u201cLongest answer\u201d "
                "to {room} or less, shorten the question, or lengthen the belt on the factory floor."
            ),
            None,
            {"prompt": prompt_tokens, "answer": max_tokens, "limit": limit, "room": room},
            suggestion=room,
        )
    if limit is not None and prompt_tokens is not None:
        return Problem(
            "prompt_too_long",
            N_(
                "The question alone is {prompt} tokens, more than the conveyor belt holds ({limit} tokens, "
                "--max-model-len). Shorten the question, or lengthen the belt on the factory floor."
            ),
            "max_model_len",
            {"prompt": prompt_tokens, "limit": limit},
        )
    return Problem(
        "prompt_too_long",
        N_(
            "The question and its longest answer do not fit on the conveyor belt (--max-model-len). "
            "Lower \u201cLongest answer\u201d, "
            "shorten the question, or lengthen the belt on the factory floor."
        ),
        "max_model_len",
    )


_SIMPLE = (
    (
        re.compile(r"HTTP 401|Unauthorized|invalid api key", re.IGNORECASE),
        "wrong_key",
        N_("The factory's door key (API key) did not match, so the order was turned away."),
    ),
    (
        re.compile(r"HTTP 404|does not exist", re.IGNORECASE),
        "unknown_model_name",
        N_(
            "The factory does not know the model name this order asked for: it was probably rebuilt "
            "with another model. Send the order again."
        ),
    ),
    (
        re.compile(r"Connect(?:ion)?(?:Error| refused)|Cannot connect|ClientConnector", re.IGNORECASE),
        "server_unreachable",
        N_(
            "Nobody answered at the factory's address: it is stopped or being rebuilt. "
            "Try again when it is ready."
        ),
    ),
    (
        re.compile(r"timed? ?out|Timeout", re.IGNORECASE),
        "request_timeout",
        N_(
            "The answer took too long and the wait was stopped. "
            "A shorter answer or a free factory is quicker."
        ),
    ),
    (
        re.compile(r"json_schema|grammar|structured output|guided", re.IGNORECASE),
        "schema_refused",
        N_(
            "The factory could not follow the JSON form of this order. "
            "Turn off the JSON answer and try again."
        ),
    ),
    (
        re.compile(r"HTTP 5\d\d|Internal Server Error|EngineDeadError", re.IGNORECASE),
        "server_error",
        N_(
            "The factory broke down while working on this order. "
            "Look at the factory floor: it may need a restart."
        ),
    ),
)


def explain(error: str | None, max_tokens: int | None = None) -> Problem:
    """The known cause of a failed request, in both languages, with vLLM's text kept in root_cause."""
    text = (error or "").strip()
    if _CONTEXT_LIMIT.search(text) or re.search(r"too long|too large|reduce the length", text, re.IGNORECASE):
        problem = too_long_problem(
            _first_number(_CONTEXT_LIMIT, text), _first_number(_INPUT_TOKENS, text), max_tokens
        )
        return _with_cause(problem, text)
    for pattern, code, message in _SIMPLE:
        if pattern.search(text):
            return Problem(code, message, root_cause=text)
    return Problem(
        "request_failed",
        N_("The factory turned this order away. vLLM's own words are below."),
        root_cause=text,
    )


def _with_cause(problem: Problem, text: str) -> Problem:
    return Problem(problem.code, problem.message, problem.flag, problem.params, problem.suggestion, text)
