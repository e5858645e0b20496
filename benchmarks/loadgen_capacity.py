"""How much load the load generator can produce, and how much time it adds to the first token:
the product's aiohttp path next to the former httpx path, in one run, against the same server.

A trivial streaming server (raw asyncio, HTTP/1.1 keep-alive, a canned SSE answer sent at once) runs in
a child process pinned to one core; the load generator runs in this process pinned to another core.
Figures printed (no asserts; targets: >= 3000 requests/s on one core, < 0.5 ms added to the first token):

- requests/s each client sustains at several concurrency levels, by the wall clock and per CPU-second
  of the load generator's process (the second figure holds even when other programs share the cores:
  it is what one core fully given to the load generator sustains);
- the same requests through bare aiohttp (bytes read and dropped): the library's own floor;
- first-token time one request at a time against the instant server: everything the client adds plus
  one loopback round trip. A bare asyncio socket (no HTTP library, no JSON) gives the floor, and the
  difference is what the client adds on top of a minimal one.

The last line reads: `loadgen: N requests/s on one core, first-token overhead X ms` (the product's
path: its best requests per CPU-second over the levels, and its p50 first token minus the floor's).

Usage: python benchmarks/loadgen_capacity.py [--requests 3000] [--levels 1,32,128] [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx_path  # noqa: E402

from dashboard.measure import client, loadgen  # noqa: E402
from dashboard.measure.loadgen import LoadPlan, Workload, percentile  # noqa: E402


def canned_response(chunks: int) -> bytes:
    events = []
    for i in range(chunks):
        piece = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
        events.append("data: " + json.dumps(piece) + "\n\n")
    usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": chunks}}
    events.append("data: " + json.dumps(usage) + "\n\n")
    events.append("data: [DONE]\n\n")
    body = b"".join(f"{len(e.encode()):x}\r\n{e}\r\n".encode() for e in events) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
    )
    return head + body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def serve(port: int, chunks: int, ready) -> None:
    response = canned_response(chunks)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(content_length(head))
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    ready.set()
    async with server:
        await server.serve_forever()


def server_process(port: int, chunks: int, core: int | None, ready) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    asyncio.run(serve(port, chunks, ready))


async def bare_client_ttft(port: int, requests: int) -> list[float]:
    """The floor: one keep-alive socket, a fixed request, time to the first byte of the answer."""
    body = b'{"model":"m","messages":[],"stream":true}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"data: ")
        times.append((time.perf_counter() - start) * 1000)
        await reader.readuntil(b"0\r\n\r\n")
    writer.close()
    return times


async def bare_aiohttp(port: int, concurrency: int, requests: int) -> None:
    """The library alone: the same streamed requests through aiohttp, bytes read and dropped (no SSE
    lines, no JSON, no timings). What is left above it is the product's own work per request."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    remaining = [requests]

    async def worker(session) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            async with session.post(url, data=body) as response:
                async for _piece in response.content.iter_any():
                    pass

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def timed(call):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_token_line(name: str, values: list[float]) -> str:
    return f"  {name:22s}: p50 {percentile(values, 50):.3f} ms   p99 {percentile(values, 99):.3f} ms"


def measure_ttft(base: str, port: int, workload: Workload, requests: int) -> tuple[float, float]:
    """(first-token time the product's path adds, the httpx path adds), p50 over the floor's p50.
    The three clients take turns in five rounds, so a busy moment of the machine hits them alike."""
    floor: list[float] = []
    ours_ttfts: list[float] = []
    old_ttfts: list[float] = []
    batch = max(requests // 5, 1)
    for _ in range(5):
        floor += asyncio.run(bare_client_ttft(port, batch))
        plan = LoadPlan(concurrency=1, requests=batch, warmup=10)
        ours = loadgen.run_load(base, "m", workload, plan)
        ours_ttfts += [t.ttft_ms for t in ours.timings if t.ttft_ms is not None]
        payloads = [workload.payload("m", i) for i in range(batch)]
        old = asyncio.run(httpx_path.run_closed_loop(base, payloads, 1))
        old_ttfts += [t.ttft_ms for t in old if t.ttft_ms is not None]
    print(f"\nFirst token against an instant server, one request at a time ({5 * batch} requests, 5 turns):")
    print(first_token_line("bare asyncio socket", floor))
    print(first_token_line("aiohttp (product)", ours_ttfts))
    print(first_token_line("httpx (former)", old_ttfts))
    floor_p50 = percentile(floor, 50) or 0.0
    added = (percentile(ours_ttfts, 50) or 0.0) - floor_p50
    added_old = (percentile(old_ttfts, 50) or 0.0) - floor_p50
    print(f"  added to the first token (p50): aiohttp {added:.3f} ms, httpx {added_old:.3f} ms")
    print("  (target < 0.5 ms)")
    return added, added_old


def measure_rates(base: str, port: int, workload: Workload, levels: list[int], requests: int) -> float:
    """Print requests/s of both paths at each level, alternating; return the product's best per CPU-s."""
    print("\nSustained requests (target >= 3000 per CPU-second):")
    best = 0.0
    payloads = [workload.payload("m", i) for i in range(requests)]
    for level in levels:
        plan = LoadPlan(concurrency=level, requests=requests, warmup=20)
        for uvloop_on, name in ((False, "aiohttp"), (True, "aiohttp+uvloop")):
            client.USE_UVLOOP = uvloop_on
            result, wall, cpu = timed(lambda plan=plan: loadgen.run_load(base, "m", workload, plan))
            per_cpu = requests / cpu if cpu > 0 else 0.0
            if not uvloop_on:  # the product's path
                best = max(best, per_cpu)
            print(
                f"  {name:14s} {level:4d} at once: {requests / wall:6.0f} req/s wall   {per_cpu:6.0f} req "
                f"per CPU-second   {cpu / requests * 1000:.3f} ms CPU/req   errors {result.errors}"
            )
        client.USE_UVLOOP = False
        _, wall, cpu = timed(lambda level=level: client.run_coroutine(bare_aiohttp(port, level, requests)))
        print(
            f"  {'bare aiohttp':14s} {level:4d} at once: {requests / wall:6.0f} req/s wall   "
            f"{requests / cpu:6.0f} req per CPU-second   {cpu / requests * 1000:.3f} ms CPU/req   (floor)"
        )
        old, wall, cpu = timed(
            lambda level=level: asyncio.run(httpx_path.run_closed_loop(base, payloads, level))
        )
        errors = sum(1 for t in old if not t.ok)
        print(
            f"  {'httpx (former)':14s} {level:4d} at once: {requests / wall:6.0f} req/s wall   "
            f"{requests / cpu:6.0f} req per CPU-second   {cpu / requests * 1000:.3f} ms CPU/req   "
            f"errors {errors}"
        )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,32,128", help="concurrency levels")
    parser.add_argument("--chunks", type=int, default=20, help="streamed chunks per answer")
    parser.add_argument("--ttft-requests", type=int, default=2000, help="requests for the first-token figure")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    client_core, server_core = cores[0], (cores[1] if len(cores) > 1 else None)
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(
        target=server_process, args=(port, args.chunks, server_core, ready), daemon=True
    )
    server.start()
    ready.wait(10)
    os.sched_setaffinity(0, {client_core})
    base = f"http://127.0.0.1:{port}"
    workload = Workload.synthetic(16, args.chunks)
    print(f"cores: load generator on {client_core}, server on {server_core}; {args.chunks} chunks/answer")
    print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        added, _added_old = measure_ttft(base, port, workload, args.ttft_requests)
        best = measure_rates(base, port, workload, [int(x) for x in args.levels.split(",")], args.requests)
    finally:
        server.terminate()
        server.join(5)
    print(f"loadgen: {best:.0f} requests/s on one core, first-token overhead {added:.2f} ms")


if __name__ == "__main__":
    main()
