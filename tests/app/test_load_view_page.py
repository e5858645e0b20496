"""The playground's load test: how the customers arrive, the first token by three clocks, and the request
X-ray, against a small stand-in server (streamed answers, a /metrics page and, when asked, vLLM-like
request spans posted to the factory's receiver) instead of vLLM."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from dashboard.engine.config import default_config
from dashboard.measure import metrics, xray
from tests.app.conftest import BURST_TIMEOUT_S, StandInManager, open_app, ready_snapshot, texts
from tests.unit.test_xray import export, span

PLAYGROUND = "app_pages/playground.py"


def _event(delta: dict, finish: str | None = None, request_id: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if request_id is not None:
        chunk["id"] = request_id
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class StandInVllm:
    """Streams an empty role chunk then three words; /metrics counts the answers in a TTFT histogram.
    With `spans`, each answer carries an id and, once done, a request span goes to the factory's
    receiver (as vLLM started with --otlp-traces-endpoint does)."""

    def __init__(self, spans: bool = False) -> None:
        self.answered = 0
        self.spans = spans
        self.ids = itertools.count(1)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        arrived = time.time()
        request_id = f"chatcmpl-standin-{next(self.ids)}" if self.spans else None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_event({"role": "assistant", "content": ""}, request_id=request_id))
        await asyncio.sleep(0.02)
        for word in ('{"emotion": ', '"happy", ', '"learn_score": true}'):
            await response.write(_event({"content": word}, request_id=request_id))
            await asyncio.sleep(0.005)
        usage = {"choices": [], "usage": {"prompt_tokens": 400, "completion_tokens": 3}}
        await response.write(_event({}, "stop") + b"data: " + json.dumps(usage).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        self.answered += 1
        if request_id is not None:
            receiver = xray.shared_receiver()
            assert receiver is not None
            body = export(span(request_id, arrived, 0.004, 0.016, 0.015, time.time() - arrived))
            await asyncio.to_thread(httpx.post, receiver.endpoint, content=body, trust_env=False, timeout=5)
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        n = self.answered
        name = metrics.TTFT
        text = f'{name}_bucket{{le="+Inf"}} {n}\n{name}_count {n}\n{name}_sum {n * 0.015}\n'
        return web.Response(text=text)


@pytest.fixture(params=[False], ids=["no-spans"])
def stand_in_url(request) -> Iterator[str]:
    server = StandInVllm(spans=request.param)
    ready = threading.Event()
    box: dict = {}

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.chat)
        app.router.add_get("/metrics", server.metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield box["url"]
    loop.call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def test_customers_arriving_evenly_are_measured_and_the_three_clocks_explained(
    manager: StandInManager, stand_in_url: str
) -> None:
    snapshot = ready_snapshot(default_config("cpu"))
    manager.snap = dataclasses.replace(snapshot, base_url=stand_in_url)
    at = open_app("en", PLAYGROUND)
    assert at.radio(key="load.shape").value == "throughput"  # all at once, as before
    at.slider(key="playground.copies").set_value(3).run()
    at.radio(key="load.shape").set_value("constant").run()
    at.number_input(key="load.shape.rate").set_value(20.0).run()
    at.button(key="playground.burst_button").click().run(timeout=BURST_TIMEOUT_S)
    assert not at.exception, at.exception
    result = at.session_state["playground.burst"]
    assert (result.shape, result.rate, result.ok, result.errors) == ("constant", 20.0, 3, 0)
    shown = {m.label: m.value for m in at.metric}
    assert shown["vLLM's own clock"] == "15.0 ms"  # the stand-in's histogram: 15 ms per answer
    assert shown["Our clock: first byte"].endswith(" ms") and shown["Our clock: first word"].endswith(" ms")
    assert result.clocks["content_after_byte_ms"] >= 15  # the empty role chunk came 20 ms before the text
    assert "role" in texts(at)
    # no request spans came (a server without tracing): the X-ray says so and draws our clock only
    assert "vLLM's own timings did not arrive for any order" in texts(at)
    (chart,) = [c for c in at.get("plotly_chart") if "Our clock only" in c.proto.spec]
    assert "Token-by-token work" not in chart.proto.spec


@pytest.mark.parametrize("stand_in_url", [True], ids=["spans"], indirect=True)
def test_the_xray_draws_every_order_from_the_spans_the_server_sent(
    manager: StandInManager, stand_in_url: str
) -> None:
    snapshot = ready_snapshot(default_config("cpu"))
    manager.snap = dataclasses.replace(snapshot, base_url=stand_in_url)
    at = open_app("en", PLAYGROUND)
    at.slider(key="playground.copies").set_value(4).run()
    at.button(key="playground.burst_button").click().run(timeout=BURST_TIMEOUT_S)
    assert not at.exception, at.exception
    view = at.session_state["playground.xray"]
    assert (len(view.rows), view.with_span, view.missing) == (4, 4, 0)
    assert all(
        row.queue_ms == pytest.approx(4.0) and row.prefill_ms == pytest.approx(16.0) for row in view.rows
    )
    shown = texts(at)
    assert "X-ray of every order" in shown and "did not arrive" not in shown
    (chart,) = [c for c in at.get("plotly_chart") if "Token-by-token work" in c.proto.spec]
    assert "Our clock only" not in chart.proto.spec and "Order #4" in chart.proto.spec
    assert "the server's counter was not read" in shown  # the stand-in's /metrics counts no preemptions
    at.session_state["lang"] = "vi"  # the language switch re-runs the page: the burst and its X-ray stay
    at.run()
    assert not at.exception, at.exception
    assert "Soi chiếu từng đơn hàng" in texts(at)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (xray_spec,) = [
        spec for spec in specs if any("Viết từng chữ một" in t.get("name", "") for t in spec["data"])
    ]
    hovers = [text for trace in xray_spec["data"] for text in trace["hovertext"]]
    assert any(text.startswith("<b>Đơn số 4</b>") for text in hovers)
    assert not any("Token-by-token" in trace["name"] for trace in xray_spec["data"])


def test_the_arrival_choice_speaks_vietnamese(manager: StandInManager) -> None:
    manager.snap = ready_snapshot(default_config("cpu"))
    at = open_app("vi", PLAYGROUND)
    assert not at.exception
    assert "Khách đến như thế nào" in [r.label for r in at.radio]
