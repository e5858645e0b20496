"""The warm-up orders a fresh server answers before the factory calls it ready.

A new vLLM server pays one-time costs on its first answers: the first prefill of a long prompt runs
kernels for the first time, the first request with a JSON schema makes the structured-output backend
read the whole vocabulary, and a long system prompt is read in full until the prefix cache holds it
(measured on the CPU build: the Pika system prompt's first order took 3-5x the next ones, and without
prefix caching every order took as long as the first). Served here, inside the start, those costs
show up as the named start phase "warm-up" instead of on the user's first order. Errors are not
fatal: a model without a chat template, say, simply skips the orders it cannot answer.
"""

from __future__ import annotations

import httpx

from dashboard.engine import presets

WARM_UP_TIMEOUT_S = 120.0
LONG_PROMPT = " ".join(["The factory builds bright bricks for every child in the class."] * 40)
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}


def warm_up_orders(model: str) -> list[dict]:
    """A long prompt with a short answer, a short prompt answered in JSON, then each preset's own request
    cut to one answer token: their long system prompts land in the prefix cache (when it is on), as they
    would after the first order of a class, and their JSON schemas are compiled."""
    return [*_generic_orders(model), *_preset_orders(model)]


def _preset_orders(model: str) -> list[dict]:
    orders = []
    for name in presets.all_presets():
        body = presets.get(name).request.payload(model, stream=False)
        body["max_tokens"] = 1
        orders.append(body)
    return orders


def _generic_orders(model: str) -> list[dict]:
    return [
        {
            "model": model,
            "messages": [{"role": "user", "content": LONG_PROMPT}],
            "max_tokens": 4,
            "temperature": 0,
        },
        {
            "model": model,
            "messages": [{"role": "user", "content": "Are you ready? Answer in JSON."}],
            "max_tokens": 8,
            "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "ready", "schema": SCHEMA}},
        },
    ]


def serve_warm_up_orders(base_url: str, model: str, api_key: str | None) -> int:
    """Send the warm-up orders one after the other; how many were answered."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    answered = 0
    with httpx.Client(trust_env=False, timeout=WARM_UP_TIMEOUT_S) as http:
        for body in warm_up_orders(model):
            try:
                response = http.post(base_url + "/v1/chat/completions", json=body, headers=headers)
            except httpx.HTTPError:
                continue
            answered += response.status_code == 200
    return answered
