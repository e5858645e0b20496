"""The carousel on a real NVIDIA GPU: inactive servers sleep (vLLM sleep mode, level 1), give the GPU
memory back, and wake on a flip with answers as before. Figures go to GPU_RESULTS_DIR when it is set.

Skipped on machines without an NVIDIA GPU; never part of CI."""

from __future__ import annotations

import time

import httpx
import pytest

from dashboard.engine import hardware, presets
from dashboard.engine.carousel import Carousel
from dashboard.engine.config import ServerConfig, default_config
from tests.gpu.results import save_result

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(hardware.gpu_count() == 0, reason="needs an NVIDIA GPU"),
]

GIB = 1024**3


def pika(**values) -> ServerConfig:
    base = {
        "dtype": "float16",
        "gpu_memory_utilization": 0.15,
        "max_model_len": 2048,
        "max_num_seqs": 128,
        "enable_prefix_caching": True,
        "port": 8760,
    }
    return default_config("cuda").with_values(base | values)


def answer(carousel: Carousel) -> tuple[float, str]:
    payload = presets.get("pika-json").request.payload(carousel.served_name, stream=False)
    started = time.perf_counter()
    response = httpx.post(
        carousel.base_url + "/v1/chat/completions", json=payload, timeout=120, trust_env=False
    )
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def carousel(tmp_path_factory):
    carousel = Carousel(tmp_path_factory.mktemp("gpu-carousel"), backend="cuda")
    yield carousel
    carousel.close()


def test_an_inactive_server_sleeps_gives_its_memory_back_and_wakes_on_a_flip(carousel: Carousel) -> None:
    first = carousel.start(pika(max_num_seqs=128), timeout=900)
    assert first.ok, first.error
    awake_bytes = carousel.cards()[0].memory_bytes
    first_ms = [answer(carousel)[0] for _ in range(5)]
    _, first_text = answer(carousel)

    second = carousel.start(pika(max_num_seqs=64), timeout=900)
    assert second.ok, second.error
    # forked from the starter, not a cold retry after a failed fork
    assert second.server_start["kind"] == "forked", second.server_start
    cards = {card.config.get("max_num_seqs"): card for card in carousel.cards()}
    assert cards[128].state == "asleep" and cards[64].state == "active"
    asleep_bytes = cards[128].memory_bytes
    assert awake_bytes and asleep_bytes is not None and asleep_bytes < awake_bytes / 2

    flips = []
    for config in (pika(max_num_seqs=128), pika(max_num_seqs=64), pika(max_num_seqs=128)):
        report = carousel.start(config)
        assert report.server_start["kind"] == "woken", report.server_start
        flips.append(report.server_start["ready_s"])
    woken_ms = [answer(carousel)[0] for _ in range(5)]
    _, woken_text = answer(carousel)
    assert woken_text == first_text  # temperature 0: the woken server answers as before
    assert max(flips) < 5  # a wake, not a start (the 1 s target is the benchmark's)
    save_result(
        "carousel_sleep",
        {
            "awake_gib": awake_bytes / GIB,
            "asleep_gib": asleep_bytes / GIB,
            "flip_s": flips,
            "first_ready_s": first.ready_s,
            "first_kind": first.server_start,
            "second_ready_s": second.ready_s,
            "second_kind": second.server_start,
            "e2e_ms_before_sleep": first_ms,
            "e2e_ms_after_wake": woken_ms,
            "runtime_share_gib": carousel.runtime_share()[0] / GIB,
        },
    )
