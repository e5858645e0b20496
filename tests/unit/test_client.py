"""The streamed-request timer: how it reads SSE chunks and how it reports failures (no server needed)."""

from __future__ import annotations

import asyncio
import json

import httpx

from dashboard.measure.client import RequestTiming, stream_chat

BASE = "http://test"


def _sse(*chunks: dict | str) -> bytes:
    lines = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
        lines.append(f"data: {data}\n\n")
    return "".join(lines).encode()


def _content(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def _usage(prompt: int, completion: int) -> dict:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def _run(handler, payload: dict | None = None, **kwargs) -> RequestTiming:
    async def go() -> RequestTiming:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await stream_chat(client, BASE, payload or {"model": "m", "messages": []}, **kwargs)

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
    timing = _run(lambda request: httpx.Response(200, content=body))
    assert timing.ok and timing.error is None
    assert timing.text == "Hello!"
    assert (timing.prompt_tokens, timing.completion_tokens) == (12, 3)
    assert timing.finish_reason == "stop"
    assert timing.content_chunks == 3
    assert len(timing.itl_ms) == 2  # gaps between the three content chunks, the empty role chunk skipped
    assert timing.ttft_ms is not None and timing.ttft_ms <= timing.e2e_ms


def test_sends_stream_flags_and_api_key():
    seen: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers.get("authorization")
        seen["path"] = request.url.path
        return httpx.Response(200, content=_sse(_content("x"), "[DONE]"))

    _run(handler, {"model": "m", "messages": [], "stream": False}, api_key="secret")
    assert seen["body"]["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["auth"] == "Bearer secret"
    assert seen["path"] == "/v1/chat/completions"


def test_on_text_receives_every_piece_in_order():
    pieces: list[str] = []
    body = _sse(_content("a"), _content("b"), _content("c"), "[DONE]")
    _run(lambda request: httpx.Response(200, content=body), on_text=pieces.append)
    assert pieces == ["a", "b", "c"]


def test_http_error_status_is_reported_not_raised():
    error = {"error": {"message": "model not found", "type": "NotFoundError"}}
    timing = _run(lambda request: httpx.Response(404, json=error))
    assert not timing.ok
    assert timing.error == "HTTP 404: model not found"
    assert timing.ttft_ms is None


def test_refused_connection_is_reported_not_raised():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    timing = _run(handler)
    assert not timing.ok
    assert "connection failed" in (timing.error or "")


def test_read_timeout_is_reported_not_raised():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    timing = _run(handler)
    assert not timing.ok
    assert "timeout" in (timing.error or "")


def test_error_event_inside_the_stream_marks_the_request_failed():
    body = _sse(_content("par"), {"error": {"message": "engine died"}}, "[DONE]")
    timing = _run(lambda request: httpx.Response(200, content=body))
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

    async def stream():
        for piece in pieces:
            yield piece

    timing = _run(lambda request: httpx.Response(200, content=stream()))
    assert timing.ok
    assert timing.text == "Xin chào bạn"
    assert timing.completion_tokens == 2
    assert timing.content_chunks == 2


def test_stream_without_done_line_still_counts():
    body = _sse(_content("a"), _content("b")).rstrip(b"\n")  # last line without its newline
    timing = _run(lambda request: httpx.Response(200, content=body))
    assert timing.ok and timing.text == "ab"
