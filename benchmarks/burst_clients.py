"""The Pika JSON burst (64 requests at once) sent by three clients, alternating, against a running server.

    python benchmarks/burst_clients.py --url http://127.0.0.1:8000 [--api-key-env NAME]
                                       [--requests 64] [--rounds 3] [--preset pika-json]
    python benchmarks/burst_clients.py --simulate 17:2.5    # no GPU: a stand-in server, see below

Clients, each timing every request the same way (the product's SSE reader: first byte, first content
token, each later token, last byte):
- threads: one plain Python thread per request with a blocking `http.client` connection (the outside
  measurement in the reference notes used this kind of client);
- httpx: the load generator's former path (one `httpx.AsyncClient` per request in flight);
- aiohttp: the load generator's path today (`loadgen.run_load`, everything at once).

Printed per client and round: the burst's wall time (first send to last byte), the longest gap between
two tokens of one answer, p50 whole answer, errors, and for the asyncio clients the event loop's
longest stall (a 5 ms ticker that overshoots means per-token work or a blocking call held the loop,
and every token arriving meanwhile is stamped late: pauses made by the client, not by the server),
plus the client's CPU seconds. `--simulate CHUNKS:MS` replaces the server with a stand-in (aiohttp, in its
own process and core) that streams an empty role chunk, then CHUNKS one-token chunks MS apart to every
request at once, like a fast GPU: every gap the clients report beyond MS is the client's (or this
machine's) doing. The server's own view (`vllm:inter_token_latency_seconds`, max over the
round from the histogram's buckets) is printed next to it when /metrics answers.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx_path  # noqa: E402

from dashboard.engine import presets  # noqa: E402
from dashboard.measure import loadgen, metrics  # noqa: E402
from dashboard.measure.attach import AttachError, attach  # noqa: E402
from dashboard.measure.client import (  # noqa: E402
    CHAT_PATH,
    RequestTiming,
    _failed,
    _http_error,
    _StreamReader,
    _timing_from,
    request_body,
    request_headers,
)
from dashboard.measure.loadgen import LoadPlan, Workload  # noqa: E402

# ---------------------------------------------------------------------------------------------- threads


def thread_request(base_url: str, payload: dict, api_key: str | None, go: threading.Barrier) -> RequestTiming:
    parts = urlsplit(base_url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname, parts.port, timeout=300)
    body = request_body(payload)
    headers = request_headers(api_key)
    connection.connect()
    go.wait()
    reader = _StreamReader(None)
    started_at, start = time.time(), time.perf_counter()
    try:
        connection.request("POST", CHAT_PATH, body=body, headers=headers)
        response = connection.getresponse()
        headers_at = time.perf_counter()
        if response.status != 200:
            return _failed(
                _http_error(response.status, response.read().decode("utf-8", "replace")), start, started_at
            )
        while piece := response.read1(65536):
            reader.feed_bytes(piece, time.perf_counter())
    except (OSError, http.client.HTTPException) as exc:
        return _failed(f"{type(exc).__name__}: {exc}", start, started_at, reader)
    finally:
        connection.close()
    end = reader.done_at if reader.done_at is not None else time.perf_counter()
    return _timing_from(reader, start, end, started_at, headers_at)


def run_threads(base_url: str, payloads: list[dict], api_key: str | None) -> list[RequestTiming]:
    go = threading.Barrier(len(payloads))
    timings: list[RequestTiming | None] = [None] * len(payloads)

    def one(index: int) -> None:
        timings[index] = thread_request(base_url, payloads[index], api_key, go)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for t in timings if t is not None]


# ---------------------------------------------------------------------------------------------- asyncio


async def with_loop_watch(work: Coroutine[Any, Any, Any], tick_s: float = 0.005) -> tuple[Any, float]:
    """Run `work` while a ticker measures the event loop's longest stall (ms beyond the tick)."""
    worst = [0.0]
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(tick_s)
            worst[0] = max(worst[0], (time.perf_counter() - before - tick_s) * 1000)

    watcher = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        done.set()
        await watcher
    return result, worst[0]


def run_httpx(base_url: str, payloads: list[dict], api_key: str | None) -> tuple[list[RequestTiming], float]:
    return asyncio.run(
        with_loop_watch(httpx_path.run_closed_loop(base_url, payloads, len(payloads), api_key))
    )


def run_aiohttp(
    base_url: str, model: str, workload: Workload, count: int, api_key: str | None
) -> tuple[list[RequestTiming], float]:
    plan = LoadPlan(concurrency=None, throughput=True, requests=count, timeout_s=300)
    work = loadgen.run_load_async(base_url, model, workload, plan, api_key)
    result, stall = asyncio.run(with_loop_watch(work))
    return result.timings, stall


# ---------------------------------------------------------------------------------------------- stand-in


def simulated_server(port: int, chunks: int, interval_ms: float, ready: Any) -> None:
    """A stand-in for a fast vLLM: /v1/models, and streamed chat answers at a fixed token interval."""
    import json

    from aiohttp import web

    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[-1]})

    def event(delta: dict, finish: str | None = None) -> bytes:
        chunk = {"id": "x", "object": "chat.completion.chunk", "model": "sim",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    async def models_view(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "sim", "max_model_len": 2048}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event({"role": "assistant", "content": ""}))
        for i in range(chunks):
            await asyncio.sleep(interval_ms / 1000)
            await response.write(event({"content": f"t{i} "}, "stop" if i == chunks - 1 else None))
        usage = {"choices": [], "usage": {"prompt_tokens": 400, "completion_tokens": chunks}}
        await response.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models_view)
    app.router.add_post("/v1/chat/completions", chat)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_simulated(spec: str) -> tuple[str, Any]:
    import multiprocessing
    import socket

    chunks, interval = spec.split(":")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready = multiprocessing.Event()
    process = multiprocessing.Process(
        target=simulated_server, args=(port, int(chunks), float(interval), ready), daemon=True
    )
    process.start()
    ready.wait(20)
    return f"http://127.0.0.1:{port}", process


def busy_python() -> None:
    """Pure-Python work forever: holds the GIL except at the interpreter's switch interval (5 ms)."""
    total = 0
    while True:
        for i in range(10_000):
            total += i * i


# ---------------------------------------------------------------------------------------------- figures


def burst_figures(timings: list[RequestTiming]) -> dict[str, float | int | None]:
    ok = [t for t in timings if t.ok]
    starts = [t.started_perf for t in timings]
    ends = [t.started_perf + t.e2e_ms / 1000 for t in timings]
    gaps = [gap for t in ok for gap in t.itl_ms]
    return {
        "wall_s": (max(ends) - min(starts)) if timings else None,
        "max_gap_ms": max(gaps) if gaps else None,
        "p50_e2e_ms": statistics.median([t.e2e_ms for t in ok]) if ok else None,
        "p50_ttft_ms": statistics.median([t.ttft_ms for t in ok if t.ttft_ms is not None]) if ok else None,
        "gaps_over_100ms": sum(1 for gap in gaps if gap > 100),
        "errors": len(timings) - len(ok),
    }


def server_max_itl_ms(before: metrics.MetricsSnapshot | None, after: metrics.MetricsSnapshot | None) -> str:
    if before is None or after is None:
        return "?"
    delta = metrics.histogram_delta(before, after, metrics.ITL)
    if delta is None or delta.count <= 0:
        return "?"
    top = delta.quantile_ms(0.999)
    return f"<= {top:.0f}" if top is not None else "?"


def fmt(value: float | int | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def measure(
    name: str, base_url: str, send: Callable[[], tuple[list[RequestTiming], float | None]]
) -> dict[str, Any]:
    before = metrics.try_scrape(base_url)
    cpu = time.process_time()
    timings, stall = send()
    cpu = time.process_time() - cpu
    after = metrics.try_scrape(base_url)
    figures = burst_figures(timings)
    print(
        f"  {name:8s} burst {fmt(figures['wall_s'], 3)} s   max gap {fmt(figures['max_gap_ms'])} ms"
        f" ({figures['gaps_over_100ms']} gaps > 100 ms)   p50 e2e {fmt(figures['p50_e2e_ms'])} ms"
        f"   p50 ttft {fmt(figures['p50_ttft_ms'])} ms   errors {figures['errors']}"
        f"   loop stall {fmt(stall)} ms   client CPU {cpu:.2f} s"
        f"   server ITL p99.9 {server_max_itl_ms(before, after)} ms",
        flush=True,
    )
    return figures | {"client": name, "loop_stall_ms": stall, "client_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of the running server")
    parser.add_argument("--simulate", metavar="CHUNKS:MS", help="a stand-in server instead of --url")
    parser.add_argument("--api-key-env", help="environment variable holding the API key")
    parser.add_argument("--preset", default="pika-json")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="threads,httpx,aiohttp")
    parser.add_argument(
        "--busy-thread",
        action="store_true",
        help="keep a pure-Python CPU-bound thread running in this process (as a sampler or a page would)",
    )
    args = parser.parse_args()
    stand_in = None
    if args.simulate:
        args.url, stand_in = start_simulated(args.simulate)
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, set(cores[:-1]))  # the clients stay off the stand-in's core
    elif not args.url:
        sys.exit("give --url URL or --simulate CHUNKS:MS")
    try:
        server = attach(args.url, args.api_key_env)
    except AttachError as exc:
        sys.exit(str(exc))
    request = presets.get(args.preset).request
    workload = Workload.from_request(request, label=args.preset)
    payloads = [workload.payload(server.served_name, i) for i in range(args.requests)]
    key = server.api_key
    senders: dict[str, Callable[[], tuple[list[RequestTiming], float | None]]] = {
        "threads": lambda: (run_threads(server.base_url, payloads, key), None),
        "httpx": lambda: run_httpx(server.base_url, payloads, key),
        "aiohttp": lambda: run_aiohttp(server.base_url, server.served_name, workload, args.requests, key),
    }
    chosen = [name for name in args.clients.split(",") if name in senders]
    print(
        f"{args.requests} x {args.preset} at once against {server.base_url} ({server.served_name}),"
        f" {args.rounds} rounds; client machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    run_threads(server.base_url, payloads[:4], key)  # warm-up: grammar compile, first prefill
    if args.busy_thread:
        threading.Thread(target=busy_python, daemon=True).start()
        print("a CPU-bound Python thread runs beside the clients (the GIL is shared)")
    rows = []
    for number in range(args.rounds):
        print(f"round {number + 1}:")
        order = chosen[number % len(chosen) :] + chosen[: number % len(chosen)]  # alternate who goes first
        rows.extend(measure(name, server.base_url, senders[name]) for name in order)
    print("\nmedians over rounds:")
    for name in chosen:
        mine = [row for row in rows if row["client"] == name]
        walls = [row["wall_s"] for row in mine if row["wall_s"] is not None]
        gaps = [row["max_gap_ms"] for row in mine if row["max_gap_ms"] is not None]
        e2es = [row["p50_e2e_ms"] for row in mine if row["p50_e2e_ms"] is not None]
        print(
            f"burst {name}: {fmt(statistics.median(walls) if walls else None, 3)} s wall, "
            f"max gap {fmt(statistics.median(gaps) if gaps else None)} ms, "
            f"p50 e2e {fmt(statistics.median(e2es) if e2es else None)} ms"
        )
    if stand_in is not None:
        stand_in.terminate()


if __name__ == "__main__":
    main()
