"""The carousel's targets, each measured as a ratio in one run on this machine.

Parts (run all, or pick with --part; each prints its own figures, the last line sums them up):
- flip:   A, then B, then back and forth; seconds of each flip to a warm server (target: 2 s CPU, 1 s GPU).
- cold:   a config never seen, started by the factory (forked from the prepared starter) against a bare
          `python -m vllm.entrypoints.openai.api_server` of the same flags, alternately (target: 0.5x).
- sweep:  `enable_prefix_caching` on, off, on: the carousel against a cold start per value, as before
          (target: 0.6x of the wall time).
- idle:   the active server's Pika JSON p50 with two paused carousel servers beside it against alone
          (target: less than 5% apart), and the same with the two left awake, to show why they pause.
- first:  the first Pika JSON order after ready against the median order (target: within 2x).
- speed:  the Pika JSON p50 of a forked server against a bare one of the same flags, alternately: a
          faster start must not change what is measured afterwards (expected: within the noise).

Usage: python benchmarks/carousel.py [--part flip,cold,sweep,idle,first,speed] [--rounds 2] [--orders 9]
       [--warm-cache]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import hardware, presets  # noqa: E402
from dashboard.engine.carousel import Carousel  # noqa: E402
from dashboard.engine.config import ServerConfig, default_config  # noqa: E402
from dashboard.engine.server import ServerManager  # noqa: E402

PARTS = ("flip", "cold", "sweep", "idle", "first", "speed")


def pika_config(backend: str, **values: Any) -> ServerConfig:
    return default_config(backend).with_values({**presets.get("pika-json").flags, **values})


def order_ms(server: Any) -> float:
    payload = presets.get("pika-json").request.payload(server.served_name, stream=False)
    started = time.perf_counter()
    response = httpx.post(
        server.base_url + "/v1/chat/completions", json=payload, timeout=300, trust_env=False
    )
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def p50_ms(server: Any, orders: int) -> float:
    return statistics.median(order_ms(server) for _ in range(orders))


def part_flip(workdir: Path, backend: str, rounds: int) -> dict[str, float]:
    carousel = Carousel(workdir / "flip", backend=backend)
    try:
        a, b = pika_config(backend, max_num_seqs=4), pika_config(backend, max_num_seqs=8)
        for config in (a, b):
            report = carousel.start(config)
            assert report.ok, report.error
        flips = []
        for _ in range(rounds):
            for config in (a, b):
                report = carousel.start(config)
                assert report.server_start["kind"] in ("reused", "woken"), report.server_start
                order_ms(carousel)  # the flipped-to server answers
                flips.append(report.server_start["ready_s"])
        print(f"flip: {len(flips)} flips, median {statistics.median(flips):.2f} s, max {max(flips):.2f} s")
        return {"flip_median_s": statistics.median(flips), "flip_max_s": max(flips)}
    finally:
        carousel.close()


def part_cold(workdir: Path, backend: str, rounds: int, warm_cache: bool = False) -> dict[str, float]:
    """The same flags started bare and by the factory, alternating which goes first. With `warm_cache`,
    one bare start left out of the figures fills vLLM's compile cache first, as on a machine in use (on
    a fresh GPU machine the first start of the day compiles for minutes, whoever starts it)."""
    factory: list[float] = []
    bare: list[float] = []
    if warm_cache:
        first = pika_config(backend, max_num_seqs=19)
        seconds, _report = _bare_start_s(workdir / "warm-cache", backend, first)
        print(f"compile cache filled by a first bare start (left out): {seconds:.1f} s", flush=True)
    for index in range(rounds):
        config = pika_config(backend, max_num_seqs=20 + index)
        order = ("bare", "factory") if index % 2 == 0 else ("factory", "bare")
        for who in order:
            if who == "bare":
                seconds, report = _bare_start_s(workdir / f"bare-{index}", backend, config)
                bare.append(seconds)
            else:
                seconds, kind, report = _factory_start_s(workdir / f"factory-{index}", backend, config)
                factory.append(seconds)
            print(f"  {who} phases: {phase_line(report)}", flush=True)
            for line in vllm_timing_lines(report):
                print(f"    vLLM: {line}", flush=True)
        print(
            f"cold round {index + 1}: bare {bare[-1]:.1f} s, factory {factory[-1]:.1f} s ({kind})", flush=True
        )
    factory_s, bare_s = statistics.median(factory), statistics.median(bare)
    ratio = factory_s / bare_s
    print(f"cold: factory {factory_s:.1f} s, bare {bare_s:.1f} s: {ratio:.2f}x")
    return {"cold_ratio": ratio}


def phase_line(report: Any) -> str:
    """Each startup phase with the seconds it took, in order: where a start spends its time."""
    parts, previous = [], 0.0
    for entry in report.startup:
        parts.append(f"{entry['phase']} {entry['seconds'] - previous:.1f}")
        previous = entry["seconds"]
    return ", ".join(parts)


VLLM_TIMING_WORDS = (
    "took",
    "secs",
    "Dynamo",
    "torch.compile",
    "Graph capturing",
    "compiled graph",
    "Compiling",
)


def vllm_timing_lines(report: Any) -> list[str]:
    """vLLM's own timing lines from the server's log (loading, compiling, graph capture, profiling):
    the detail inside the factory's coarser phases."""
    try:
        text = Path(report.log_path).read_text(errors="replace")
    except OSError:
        return []
    lines = [line.split("] ", 1)[-1] for line in text.splitlines() if "INFO" in line or "WARNING" in line]
    return [line[:200] for line in lines if any(word in line for word in VLLM_TIMING_WORDS)]


def _bare_start_s(workdir: Path, backend: str, config: ServerConfig) -> tuple[float, Any]:
    manager = ServerManager(workdir, backend=backend)
    manager.warm_up = False  # a bare start: the module as people run it, nothing more
    try:
        started = time.perf_counter()
        report = manager.start(config)
        assert report.ok, report.error
        return time.perf_counter() - started, report
    finally:
        manager.close()


def _factory_start_s(workdir: Path, backend: str, config: ServerConfig) -> tuple[float, str, Any]:
    """Apply to ready for a config the carousel never saw, warm-up included; the starter was
    prepared beforehand, as the app prepares it while the user reads the page."""
    carousel = Carousel(workdir, backend=backend)
    try:
        if carousel.starter is None or not carousel.starter.wait_ready(300):
            raise RuntimeError("the starter did not get ready")
        started = time.perf_counter()
        report = carousel.start(config)
        assert report.ok, report.error
        return time.perf_counter() - started, report.server_start["kind"], report
    finally:
        carousel.close()


def part_sweep(workdir: Path, backend: str, orders: int) -> dict[str, float]:
    values = (True, False, True)

    def sweep(server: Any, fresh_each: bool) -> float:
        started = time.perf_counter()
        for value in values:
            config = pika_config(backend, enable_prefix_caching=value)
            report = server.restart(config, fresh=True) if fresh_each else server.restart(config)
            assert report.ok, report.error
            for _ in range(orders):
                order_ms(server)
        return time.perf_counter() - started

    before = ServerManager(workdir / "sweep-before", backend=backend)
    before.warm_up = False  # as before this change: a bare start per value
    old = sweep(before, fresh_each=False)
    before.close()
    carousel = Carousel(workdir / "sweep-carousel", backend=backend)
    carousel.starter.wait_ready(300) if carousel.starter else None
    new = sweep(carousel, fresh_each=False)
    carousel.close()
    print(f"sweep on,off,on: carousel {new:.1f} s vs a cold start per value {old:.1f} s = {new / old:.2f}x")
    return {"sweep_ratio": new / old}


def part_idle(workdir: Path, backend: str, orders: int, rounds: int = 3) -> dict[str, float]:
    """The active server's p50 alone (before the neighbours start and after they are evicted), and
    beside two inactive servers, paused and awake in turns: turns share the machine's other load."""
    carousel = Carousel(workdir / "idle", backend=backend, max_servers=3)
    try:
        main = pika_config(backend)
        assert carousel.start(main).ok
        order_ms(carousel)
        alone = [p50_ms(carousel, orders)]
        for seqs in (6, 10):
            assert carousel.start(pika_config(backend, max_num_seqs=seqs)).ok
        assert carousel.start(main).server_start["kind"] == "reused"
        order_ms(carousel)
        neighbours = [carousel._slots[c.slot_id] for c in carousel.cards() if c.state != "active"]
        paused: list[float] = []
        awake: list[float] = []
        for _ in range(rounds):
            paused.append(p50_ms(carousel, orders))
            for slot in neighbours:
                carousel._unpark(slot)
            awake.append(p50_ms(carousel, orders))
            for slot in neighbours:
                carousel._park(slot)
        for slot in neighbours:
            carousel.evict(slot.slot_id)
        alone.append(p50_ms(carousel, orders))
        reference = statistics.mean(alone)
        change = (statistics.median(paused) - reference) / reference * 100
        awake_change = (statistics.median(awake) - reference) / reference * 100
        spread = abs(alone[1] - alone[0]) / reference * 100
        print(
            f"idle: p50 {reference:.0f} ms alone (before {alone[0]:.0f}, after {alone[1]:.0f}: "
            f"{spread:.1f}% apart), {statistics.median(paused):.0f} ms beside two paused servers "
            f"({change:+.1f}%), {statistics.median(awake):.0f} ms beside two awake ones "
            f"({awake_change:+.1f}%)"
        )
        return {"idle_change_pct": change, "awake_change_pct": awake_change, "alone_spread_pct": spread}
    finally:
        carousel.close()


def part_first(workdir: Path, backend: str, orders: int) -> dict[str, float]:
    carousel = Carousel(workdir / "first", backend=backend, use_starter=False)
    try:
        assert carousel.start(pika_config(backend, max_num_seqs=30)).ok
        first = order_ms(carousel)
        median = p50_ms(carousel, orders)
        print(f"first order after ready: {first:.0f} ms, median {median:.0f} ms = {first / median:.2f}x")
        return {"first_ratio": first / median}
    finally:
        carousel.close()


def part_speed(workdir: Path, backend: str, rounds: int, orders: int) -> dict[str, float]:
    forked: list[float] = []
    bare: list[float] = []
    for index in range(rounds):
        config = pika_config(backend, max_num_seqs=40 + index)
        order = ("bare", "forked") if index % 2 == 0 else ("forked", "bare")
        for who in order:
            if who == "bare":
                server: Any = ServerManager(workdir / f"speed-bare-{index}", backend=backend)
            else:
                server = Carousel(workdir / f"speed-forked-{index}", backend=backend)
                assert server.starter is not None and server.starter.wait_ready(300)
            try:
                report = server.start(config)
                assert report.ok, report.error
                order_ms(server)
                (bare if who == "bare" else forked).append(p50_ms(server, orders))
            finally:
                server.close()
        print(f"speed round {index + 1}: bare p50 {bare[-1]:.0f} ms, forked {forked[-1]:.0f} ms", flush=True)
    ratio = statistics.median(forked) / statistics.median(bare)
    print(
        f"speed: forked server p50 {statistics.median(forked):.0f} ms, bare "
        f"{statistics.median(bare):.0f} ms: {ratio:.2f}x"
    )
    return {"speed_ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default=",".join(PARTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--orders", type=int, default=9)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--warm-cache", action="store_true", help="cold part: fill the compile cache first")
    args = parser.parse_args()
    backend = args.backend or hardware.detect_backend()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="carousel-bench-") as tmp:
        workdir = Path(tmp)
        for part in args.part.split(","):
            if part == "flip":
                results |= part_flip(workdir, backend, args.rounds)
            elif part == "cold":
                results |= part_cold(workdir, backend, args.rounds, args.warm_cache)
            elif part == "sweep":
                results |= part_sweep(workdir, backend, 1)
            elif part == "idle":
                results |= part_idle(workdir, backend, args.orders)
            elif part == "first":
                results |= part_first(workdir, backend, args.orders)
            elif part == "speed":
                results |= part_speed(workdir, backend, args.rounds, args.orders)
    summary = ", ".join(f"{name} {value:.2f}" for name, value in results.items())
    print(f"carousel ({backend}): {summary}")


if __name__ == "__main__":
    main()
