"""A small in-process HTTP server (aiohttp.web on 127.0.0.1) for the client and load generator tests.

    async with local_server(handler) as base_url:   # handler(request) -> web.StreamResponse
        ...

`sse_response(request, body_pieces, delay)` streams bytes piece by piece, as a real server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sse(*chunks: dict | str) -> bytes:
    lines = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
        lines.append(f"data: {data}\n\n")
    return "".join(lines).encode()


async def sse_response(
    request: web.Request, pieces: Iterable[bytes], delay: float = 0.0, status: int = 200
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in pieces:
        if delay:
            await asyncio.sleep(delay)
        await response.write(piece)
    await response.write_eof()
    return response


@contextlib.asynccontextmanager
async def local_server(
    handler: Handler, path: str = "/v1/chat/completions", gets: dict[str, Handler] | None = None
) -> AsyncIterator[str]:
    """Serve `handler` for POST `path` (and each of `gets` for GET) on a free port; yields the base URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    for get_path, get_handler in (gets or {}).items():
        app.router.add_get(get_path, get_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
