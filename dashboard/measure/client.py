"""One streamed chat request with its timings, read with aiohttp (the client `vllm bench serve` uses).

One timing model for every caller, all on `time.perf_counter()` from the moment the request is sent:
- `headers_ms`: the response's status line and headers arrived;
- `first_byte_ms`: the first bytes of the body arrived (with vLLM, usually an empty "role" chunk);
- `ttft_ms`: the first chunk that carried text (the first content token);
- `itl_ms`: the gaps between later content chunks (a chunk may carry more than one token, so divide
  the decode time by the token count, see `mean_itl_ms`, for a per-token figure);
- `e2e_ms`: the last byte (the `[DONE]` line).
Errors (HTTP status, refused connection, timeout, broken or cut stream) end up in `ok`/`error`, never
raised: a stream that ends before `[DONE]` and before any finish reason is reported as cut.

The body is read in whatever pieces the network delivers (`iter_any`) and split into lines here: that
costs less than reading line by line, and each piece is stamped the moment it arrives.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import aiohttp
import certifi

CHAT_PATH = "/v1/chat/completions"
DATA_PREFIX = b"data:"
DONE_MARK = b"[DONE]"
CUT_STREAM = "stream cut before [DONE]"

T = TypeVar("T")
USE_UVLOOP = False  # measured side by side (benchmarks/loadgen_capacity.py): no gain over asyncio's loop
_decode_json = json.JSONDecoder().decode  # on str: skips json.loads' encoding detection per chunk


@dataclass
class RequestTiming:
    ok: bool
    error: str | None
    text: str
    ttft_ms: float | None  # send -> first chunk with non-empty content
    itl_ms: list[float] = field(default_factory=list)  # gaps between successive content chunks
    e2e_ms: float = 0.0  # send -> end of the stream
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    started_at: float = 0.0  # wall clock (time.time()) when the request was sent
    content_chunks: int = 0  # chunks that carried text; fewer than completion_tokens when chunks merge
    headers_ms: float | None = None  # send -> status line and headers
    first_byte_ms: float | None = None  # send -> first bytes of the body (often an empty role chunk)
    started_perf: float = 0.0  # perf_counter when the request was sent (same clock as the load test)
    request_id: str | None = None  # the answer's id (vLLM: "chatcmpl-..."), as its request spans name it

    def mean_itl_ms(self) -> float | None:
        """Mean time per output token after the first: (e2e - ttft) / (tokens - 1).

        Uses the server's token count when known, so merged chunks do not inflate the figure;
        falls back to the mean gap between content chunks.
        """
        if self.ttft_ms is None:
            return None
        tokens = self.completion_tokens
        if tokens is not None and tokens > 1:
            return (self.e2e_ms - self.ttft_ms) / (tokens - 1)
        if self.itl_ms:
            return sum(self.itl_ms) / len(self.itl_ms)
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean_itl_ms"] = self.mean_itl_ms()
        return data


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context shared by every client: building one loads the CA bundle (tens of ms of CPU)."""
    return ssl.create_default_context(cafile=certifi.where())


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + CHAT_PATH


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _StreamReader:
    """Collects what the SSE lines say, with the perf_counter stamp of each content chunk."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self.on_text = on_text
        self.parts: list[str] = []
        self.content_stamps: list[float] = []
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.server_error: str | None = None
        self.done_at: float | None = None  # perf_counter stamp of the [DONE] line
        self.first_byte_at: float | None = None
        self.request_id: str | None = None
        self.pending = b""  # an incomplete line waiting for the rest of it

    def feed_bytes(self, data: bytes, stamp: float) -> None:
        """Read what arrived in one network read (any number of lines, the last maybe incomplete)."""
        if not data:
            return
        if self.first_byte_at is None:
            self.first_byte_at = stamp
        if self.pending:
            data = self.pending + data
        if data.endswith(b"\n"):
            self.pending = b""
        else:
            cut = data.rfind(b"\n")
            self.pending = data[cut + 1 :]
            if cut < 0:
                return
            data = data[:cut]
        for line in data.split(b"\n"):
            if line and self.done_at is None:  # SSE separates events with empty lines: skip them
                self.feed(line, stamp)

    def feed(self, line: bytes, stamp: float) -> bool:
        """Read one SSE line; return False once the stream says it is done."""
        if not line.startswith(DATA_PREFIX):
            return True
        data = line[len(DATA_PREFIX) :].strip()
        if data == DONE_MARK:
            self.done_at = stamp
            return False
        try:
            chunk = _decode_json(data.decode())
        except ValueError:  # not JSON, or not UTF-8
            return True
        if self.request_id is None and isinstance(chunk.get("id"), str):
            self.request_id = chunk["id"]
        if "error" in chunk and not chunk.get("choices"):
            self.server_error = _error_text(chunk["error"])
            return True
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._read_choice(choice, stamp)
        return True

    def _read_choice(self, choice: dict[str, Any], stamp: float) -> None:
        content = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
        if content:
            self.content_stamps.append(stamp)
            self.parts.append(content)
            if self.on_text is not None:
                self.on_text(content)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return f"connection failed: {exc}" if str(exc) else "connection failed"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timeout ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return f"{CUT_STREAM}: {exc}" if str(exc) else CUT_STREAM
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000.0


def _timing_from(
    reader: _StreamReader, start: float, end: float, started_at: float, headers_at: float | None = None
) -> RequestTiming:
    stamps = reader.content_stamps
    usage = reader.usage or {}
    first_byte = reader.first_byte_at
    return RequestTiming(
        ok=reader.server_error is None,
        error=reader.server_error,
        text="".join(reader.parts),
        ttft_ms=_ms(start, stamps[0]) if stamps else None,
        itl_ms=[_ms(a, b) for a, b in zip(stamps, stamps[1:], strict=False)],
        e2e_ms=_ms(start, end),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=reader.finish_reason,
        started_at=started_at,
        content_chunks=len(stamps),
        headers_ms=_ms(start, headers_at) if headers_at is not None else None,
        first_byte_ms=_ms(start, first_byte) if first_byte is not None else None,
        started_perf=start,
        request_id=reader.request_id,
    )


def _failed(
    error: str,
    start: float,
    started_at: float,
    reader: _StreamReader | None = None,
    headers_at: float | None = None,
) -> RequestTiming:
    end = time.perf_counter()
    if reader is not None:
        timing = _timing_from(reader, start, end, started_at, headers_at)
        timing.ok, timing.error = False, error
        return timing
    return RequestTiming(
        ok=False,
        error=error,
        text="",
        ttft_ms=None,
        e2e_ms=_ms(start, end),
        started_at=started_at,
        started_perf=start,
    )


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end in a fresh event loop (uvloop's only when USE_UVLOOP is set and it is
    installed)."""
    factory = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not USE_UVLOOP:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def make_session(timeout_s: float = 120.0) -> aiohttp.ClientSession:
    """A session whose connection pool never limits the load: no cap on connections (the default
    100 would queue requests silently, and the queueing would look like server latency)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=tls_context(), force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        read_bufsize=2**16,
    )


def request_body(payload: dict) -> bytes:
    body = dict(payload)
    body["stream"] = True
    body.setdefault("stream_options", {"include_usage": True})
    return json.dumps(body).encode()


def request_headers(api_key: str | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **auth_headers(api_key)}


async def stream_chat(
    session: aiohttp.ClientSession,
    base_url: str,
    payload: dict,
    api_key: str | None = None,
    on_text: Callable[[str], None] | None = None,
    timeout: float = 120,
) -> RequestTiming:
    """Send one streamed /v1/chat/completions request and time it. Never raises for request failures."""
    data = request_body(payload)
    headers = request_headers(api_key)
    reader = _StreamReader(on_text)
    headers_at: float | None = None
    started_at = time.time()
    start = time.perf_counter()
    try:
        async with session.post(
            chat_url(base_url), data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            headers_at = time.perf_counter()
            if response.status != 200:
                detail = (await response.read()).decode("utf-8", "replace")
                return _failed(_http_error(response.status, detail), start, started_at)
            # Read to the very end even after [DONE]: a stream left half-read closes the connection
            # instead of returning it to the pool, and every request would pay a connect.
            async for piece in response.content.iter_any():
                reader.feed_bytes(piece, time.perf_counter())
            if reader.pending and reader.done_at is None:
                reader.feed(reader.pending, time.perf_counter())
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _failed(_describe_exception(exc), start, started_at, reader, headers_at)
    if reader.done_at is None and reader.finish_reason is None and reader.server_error is None:
        return _failed(CUT_STREAM, start, started_at, reader, headers_at)
    end = reader.done_at if reader.done_at is not None else time.perf_counter()
    return _timing_from(reader, start, end, started_at, headers_at)


def _http_error(status: int, body: str) -> str:
    message = body.strip()
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            message = _error_text(parsed.get("error", parsed.get("detail", parsed)))
    except json.JSONDecodeError:
        pass
    return f"HTTP {status}: {message[:500]}"


def chat_once(
    base_url: str,
    payload: dict,
    api_key: str | None = None,
    on_text: Callable[[str], None] | None = None,
    timeout: float = 120,
) -> RequestTiming:
    """Blocking wrapper around `stream_chat` (for the CLI and Streamlit worker threads)."""

    async def _run() -> RequestTiming:
        async with make_session(timeout) as session:
            return await stream_chat(session, base_url, payload, api_key, on_text, timeout)

    return run_coroutine(_run())
