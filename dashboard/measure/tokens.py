"""Count a chat request's prompt tokens on the server itself (its /tokenize applies the chat template),
so a prompt that cannot fit --max-model-len is refused before it is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from dashboard.engine.problems import Problem
from dashboard.measure.client import auth_headers, tls_context
from dashboard.measure.request_errors import too_long_problem


@dataclass(frozen=True)
class PromptCount:
    prompt_tokens: int
    max_model_len: int | None

    def problem(self, max_tokens: int | None) -> Problem | None:
        """Why the request cannot fit, with the fix; None when it fits (or the limit is unknown)."""
        limit = self.max_model_len
        if limit is None:
            return None
        if self.prompt_tokens + (max_tokens or 0) <= limit:
            return None
        return too_long_problem(limit, self.prompt_tokens, max_tokens)


def count_prompt(
    base_url: str, payload: Mapping[str, Any], api_key: str | None = None, timeout: float = 10
) -> PromptCount | None:
    """The prompt's token count as the server sees it; None when the server cannot tell."""
    body = {
        "model": payload.get("model"),
        "messages": list(payload.get("messages", [])),
        "add_generation_prompt": True,
    }
    try:
        response = httpx.post(
            base_url.rstrip("/") + "/tokenize",
            json=body,
            headers=auth_headers(api_key),
            timeout=timeout,
            verify=tls_context(),
            trust_env=False,
        )
        response.raise_for_status()
        data = response.json()
        limit = data.get("max_model_len")
        return PromptCount(int(data["count"]), int(limit) if limit else None)
    except (httpx.HTTPError, KeyError, ValueError, TypeError):
        return None
