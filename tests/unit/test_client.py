"""The streamed-request timer: how it reads SSE chunks and how it reports failures (a local aiohttp
server stands in for vLLM)."""

from __future__ import annotations

import asyncio
import json
import socket

from aiohttp import web

from dashboard.measure.client import CUT_STREAM, RequestTiming, make_session, stream_chat
from tests.unit.sse_server import local_server, sse, sse_response

_sse = sse


def _content(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def _usage(prompt: int, completion: int) -> dict:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def _answer(body: bytes, delay: float = 0.0):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, [body], delay)

    return handler


def _run(handler, payload: dict | None = None, base: str | None = None, **kwargs) -> RequestTiming:
    async def go() -> RequestTiming:
        async with make_session() as session:
            if base is not None:
                return await stream_chat(session, base, payload or {"model": "m", "messages": []}, **kwargs)
            async with local_server(handler) as url:
                return await stream_chat(session, url, payload or {"model": "m", "messages": []}, **kwargs)

    return asyncio.run(go())


def test_collects_text_usage_and_finish_reason_from_the_stream():
    body = _sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        _content("Hel"),
        _content("lo"),
        _content("!", finish="stop"),
        _usage(12, 3),
        "[DONE]",
    )
    timing = _run(_answer(body))
    assert timing.ok and timing.error is None
    assert timing.text == "Hello!"
    assert (timing.prompt_tokens, timing.completion_tokens) == (12, 3)
    assert timing.finish_reason == "stop"
    assert timing.content_chunks == 3
    assert len(timing.itl_ms) == 2  # gaps between the three content chunks, the empty role chunk skipped
    assert timing.ttft_ms is not None and timing.ttft_ms <= timing.e2e_ms
    assert timing.headers_ms is not None and timing.first_byte_ms is not None
    assert timing.headers_ms <= timing.first_byte_ms <= timing.ttft_ms


def test_sends_stream_flags_and_api_key():
    seen: dict = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen["body"] = await request.json()
        seen["auth"] = request.headers.get("authorization")
        seen["path"] = request.path
        return await sse_response(request, [_sse(_content("x"), "[DONE]")])

    _run(handler, {"model": "m", "messages": [], "stream": False}, api_key="secret")
    assert seen["body"]["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["auth"] == "Bearer secret"
    assert seen["path"] == "/v1/chat/completions"


def test_on_text_receives_every_piece_in_order():
    pieces: list[str] = []
    body = _sse(_content("a"), _content("b"), _content("c"), "[DONE]")
    _run(_answer(body), on_text=pieces.append)
    assert pieces == ["a", "b", "c"]


def test_http_error_status_is_reported_not_raised():
    error = {"error": {"message": "model not found", "type": "NotFoundError"}}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(error, status=404)

    timing = _run(handler)
    assert not timing.ok
    assert timing.error == "HTTP 404: model not found"
    assert timing.ttft_ms is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_connection_is_reported_not_raised():
    timing = _run(None, base=f"http://127.0.0.1:{_closed_port()}")
    assert not timing.ok
    assert "connection failed" in (timing.error or "")


def test_read_timeout_is_reported_not_raised():
    body = _sse(_content("a"), _content("b"), "[DONE]")
    timing = _run(_answer(body, delay=2.0), timeout=0.3)
    assert not timing.ok
    assert "timeout" in (timing.error or "")


def test_error_event_inside_the_stream_marks_the_request_failed():
    body = _sse(_content("par"), {"error": {"message": "engine died"}}, "[DONE]")
    timing = _run(_answer(body))
    assert not timing.ok
    assert timing.error == "engine died"
    assert timing.text == "par"


def test_mean_itl_uses_token_count_when_chunks_merge_tokens():
    timing = RequestTiming(
        ok=True, error=None, text="", ttft_ms=100.0, itl_ms=[60.0], e2e_ms=160.0, completion_tokens=4
    )
    assert timing.mean_itl_ms() == 20.0  # 60 ms of decode over 3 tokens after the first


def test_mean_itl_falls_back_to_chunk_gaps_without_usage():
    timing = RequestTiming(ok=True, error=None, text="", ttft_ms=10.0, itl_ms=[2.0, 4.0], e2e_ms=16.0)
    assert timing.mean_itl_ms() == 3.0


def test_to_dict_is_json_serializable_and_includes_mean_itl():
    timing = RequestTiming(ok=True, error=None, text="hi", ttft_ms=1.0, itl_ms=[1.0], e2e_ms=2.0)
    data = json.loads(json.dumps(timing.to_dict()))
    assert data["mean_itl_ms"] == 1.0
    assert data["text"] == "hi"


def test_lines_and_characters_split_across_network_reads_are_reassembled():
    body = _sse(_content("Xin chào"), _content(" bạn"), _usage(5, 2), "[DONE]")
    cut_inside_a_character = body.index("à".encode()) + 1
    pieces = [body[:7], body[7:cut_inside_a_character], body[cut_inside_a_character:]]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, pieces, delay=0.01)

    timing = _run(handler)
    assert timing.ok
    assert timing.text == "Xin chào bạn"
    assert timing.completion_tokens == 2
    assert timing.content_chunks == 2


def test_stream_with_a_finish_reason_but_no_done_line_still_counts():
    body = _sse(_content("a"), _content("b", finish="stop")).rstrip(b"\n")  # last line without newline
    timing = _run(_answer(body))
    assert timing.ok and timing.text == "ab"


def test_stream_cut_before_the_end_is_reported_with_what_arrived():
    body = _sse(_content("a"), _content("b"))  # no finish reason, no [DONE]
    timing = _run(_answer(body))
    assert not timing.ok
    assert timing.error == CUT_STREAM
    assert timing.text == "ab" and timing.ttft_ms is not None


def test_connection_dropped_mid_stream_is_reported_as_cut():
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(_sse(_content("a")))
        request.transport.close()  # the server goes away without ending the chunked body
        return response

    timing = _run(handler)
    assert not timing.ok
    assert (timing.error or "").startswith(CUT_STREAM)
    assert timing.text == "a"
