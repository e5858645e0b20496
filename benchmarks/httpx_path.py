"""The load generator's former hot path (httpx), kept only so benchmarks can compare it side by side
with the aiohttp path. Same timing model: the SSE bytes go through the product's `_StreamReader`.

Like the former `loadgen.ClientPool`, each request in flight borrows its own `httpx.AsyncClient`
(unlimited pool, one keep-alive connection each).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

from dashboard.measure.client import (
    CUT_STREAM,
    RequestTiming,
    _failed,
    _http_error,
    _StreamReader,
    _timing_from,
    chat_url,
    request_body,
    request_headers,
    tls_context,
)


def make_client(timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s), verify=tls_context())


async def stream_chat_httpx(
    client: httpx.AsyncClient, base_url: str, payload: dict, api_key: str | None = None, timeout: float = 120
) -> RequestTiming:
    reader = _StreamReader(None)
    started_at, start = time.time(), time.perf_counter()
    headers_at = None
    try:
        async with client.stream(
            "POST",
            chat_url(base_url),
            content=request_body(payload),
            headers=request_headers(api_key),
            timeout=timeout,
        ) as response:
            headers_at = time.perf_counter()
            if response.status_code != 200:
                detail = (await response.aread()).decode("utf-8", "replace")
                return _failed(_http_error(response.status_code, detail), start, started_at)
            async for data in response.aiter_bytes():
                reader.feed_bytes(data, time.perf_counter())
            if reader.pending and reader.done_at is None:
                reader.feed(reader.pending, time.perf_counter())
    except (httpx.HTTPError, OSError) as exc:
        return _failed(f"{type(exc).__name__}: {exc}", start, started_at, reader, headers_at)
    if reader.done_at is None and reader.finish_reason is None:
        return _failed(CUT_STREAM, start, started_at, reader, headers_at)
    end = reader.done_at if reader.done_at is not None else time.perf_counter()
    return _timing_from(reader, start, end, started_at, headers_at)


async def run_closed_loop(
    base_url: str,
    payloads: Sequence[dict],
    concurrency: int,
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> list[RequestTiming]:
    """Send `payloads` with `concurrency` in flight, one client per request in flight."""
    idle: list[httpx.AsyncClient] = []
    every: list[httpx.AsyncClient] = []
    queue = list(reversed(payloads))
    timings: list[RequestTiming] = []

    async def worker() -> None:
        while queue:
            payload = queue.pop()
            if idle:
                client = idle.pop()
            else:
                client = make_client(timeout_s)
                every.append(client)
            try:
                timings.append(await stream_chat_httpx(client, base_url, payload, api_key, timeout_s))
            finally:
                idle.append(client)

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(payloads)))))
    finally:
        for client in every:
            await client.aclose()
    return timings
