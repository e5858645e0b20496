"""The backend the integration tests run on, and the figures that hold on it.

On the CPU build the KV cache is a fixed 1 GiB (VLLM_CPU_KVCACHE_SPACE), so SmolLM2's token count is an
exact number; on a GPU it follows the card's free memory, so the tests check it against what the
server itself reports instead.
"""

from __future__ import annotations

from dashboard.engine import hardware

BACKEND = hardware.detect_backend()
ON_CPU = BACKEND == "cpu"
CPU_KV_TOKENS = 46_592  # 1 GiB of SmolLM2's 23,040-byte tokens, rounded to whole blocks


def kv_tokens_hold(reported: int | None, max_model_len: int | None = None) -> bool:
    """The exact CPU figure on CPU; on a GPU at least one full-length request's worth of tokens."""
    if reported is None:
        return False
    if ON_CPU:
        return reported == CPU_KV_TOKENS
    return reported >= (max_model_len or 1)
