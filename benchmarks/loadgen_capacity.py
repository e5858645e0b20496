"""How much load the load generator itself can produce, and how much time it adds to TTFT.

A trivial streaming server (raw asyncio, HTTP/1.1 keep-alive, a canned SSE answer sent at once) runs in
a child process pinned to one core; the load generator runs in this process pinned to another core.
Figures printed (no asserts; targets: >= 1000 requests/s sustained, < 1 ms added TTFT):

- requests/s the load generator sustains at several concurrency levels, by the wall clock and per
  CPU-second of the load generator's process (the second figure holds even when other programs share
  the cores: it is what one core fully given to the load generator would sustain);
- TTFT p50/p99 one request at a time against the instant server: everything the client adds plus one
  loopback round trip. A bare asyncio client (no httpx, no JSON) on the same server gives the floor,
  and the difference is what our client adds on top of a minimal one;
- for reference, the same streamed requests through aiohttp (the client vLLM's own bench uses), when
  it is installed: it shows how much of the cost is the HTTP library's.

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

from dashboard.measure import loadgen  # noqa: E402
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


async def aiohttp_reference(port: int, concurrency: int, requests: int) -> list[float] | None:
    """TTFTs of the same requests sent with aiohttp, or None when aiohttp is not installed."""
    try:
        import aiohttp
    except ImportError:
        return None
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "m", "messages": [], "stream": True}
    ttfts: list[float] = []
    remaining = [requests]

    async def worker(session) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            start, first = time.perf_counter(), None
            async with session.post(url, json=body) as response:
                async for line in response.content:
                    if first is None and line.startswith(b"data:") and b"[DONE]" not in line:
                        json.loads(line[5:])
                        first = time.perf_counter()
            ttfts.append(((first or time.perf_counter()) - start) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ttfts


def timed(call):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,32,128", help="concurrency levels")
    parser.add_argument("--chunks", type=int, default=20, help="streamed chunks per answer")
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
    try:
        floor = asyncio.run(bare_client_ttft(port, 2000))
        ours = loadgen.run_load(base, "m", workload, LoadPlan(concurrency=1, requests=2000, warmup=50))
        print("\nTTFT against an instant server, one request at a time (2000 requests):")
        print(
            f"  bare asyncio socket : p50 {percentile(floor, 50):.3f} ms   p99 {percentile(floor, 99):.3f} ms"
        )
        print(f"  load generator      : p50 {ours.ttft_ms.p50:.3f} ms   p99 {ours.ttft_ms.p99:.3f} ms")
        added = ours.ttft_ms.p50 - percentile(floor, 50)
        print(f"  added by httpx + our SSE reading (p50): {added:.3f} ms   (target < 1 ms)")
        print("\nSustained requests/s (target >= 1000):")
        for level in [int(x) for x in args.levels.split(",")]:
            plan = LoadPlan(concurrency=level, requests=args.requests, warmup=20)
            result, _, cpu = timed(lambda plan=plan: loadgen.run_load(base, "m", workload, plan))
            print(
                f"  load generator, concurrency {level:4d}: {result.requests_per_s:6.0f} req/s wall   "
                f"{args.requests / cpu:6.0f} req per CPU-second   "
                f"{cpu / args.requests * 1000:.2f} ms CPU/req   errors {result.errors}"
            )
        for level in [int(x) for x in args.levels.split(",")]:
            ttfts, wall, cpu = timed(
                lambda level=level: asyncio.run(aiohttp_reference(port, level, args.requests))
            )
            if ttfts is None:
                print("  (aiohttp not installed: no reference figures)")
                break
            print(
                f"  aiohttp reference, concurrency {level:4d}: {args.requests / wall:6.0f} req/s wall   "
                f"{args.requests / cpu:6.0f} req per CPU-second   {cpu / args.requests * 1000:.2f} ms CPU/req"
            )
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
