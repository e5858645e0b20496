"""Where the Pika answer's time goes, one request at a time: the client's clock beside vLLM's own.

    python benchmarks/pika_time_split.py [--requests 30] [--backend cpu|cuda] [--port 8362]
                                         [--set FLAG=VALUE ...] [--json FILE]

One server with the pika-json preset's settings (on a GPU: float16 and 0.15 of its memory, the brief's),
started with the request X-ray on (vLLM's own per-request spans). Two workloads, one request at a time,
after three warm-up requests left out: the Pika JSON request as the preset sends it, and the same request
without its JSON schema (free text: how much the structured-output machinery costs per step).

For each it prints the p50 over the requests of: the client's whole answer and first token; vLLM's own
first token and whole answer (from the moment its API server took the request in); the engine's
first-token work (prefill) and its token-by-token work (decode) and the decode divided by the later
tokens (one step); and what is outside vLLM's clock (client whole answer less vLLM's: HTTP, reading
the request, the chat template). The last line reads
`split: whole answer X ms = first token Y ms + N later tokens x Z ms; outside vLLM W ms`
for the Pika JSON request. A figure the spans did not give is printed as "?".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import config as config_mod  # noqa: E402
from dashboard.engine import hardware, presets  # noqa: E402
from dashboard.engine.carousel import Carousel  # noqa: E402
from dashboard.measure import loadgen, xray  # noqa: E402
from dashboard.measure.cards import environment, environment_line  # noqa: E402
from dashboard.measure.loadgen import LoadPlan, Workload  # noqa: E402

WARMUP = 3


def p50(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def per_step(row: xray.XrayRow) -> float | None:
    tokens = row.completion_tokens
    if row.decode_ms is None or tokens is None or tokens < 2:
        return None
    return row.decode_ms / (tokens - 1)


def outside(row: xray.XrayRow) -> float | None:
    return None if row.server_e2e_ms is None else row.client_e2e_ms - row.server_e2e_ms


FIGURES: dict[str, Callable[[xray.XrayRow], float | None]] = {
    "client_e2e_ms": lambda r: r.client_e2e_ms,
    "client_ttft_ms": lambda r: r.client_ttft_ms,
    "server_e2e_ms": lambda r: r.server_e2e_ms,
    "server_ttft_ms": lambda r: r.server_ttft_ms,
    "queue_ms": lambda r: r.queue_ms,
    "prefill_ms": lambda r: r.prefill_ms,
    "decode_ms": lambda r: r.decode_ms,
    "step_ms": per_step,
    "outside_vllm_ms": outside,
    "completion_tokens": lambda r: r.completion_tokens,
}


def split(rows: list[xray.XrayRow]) -> dict[str, Any]:
    answered = [r for r in rows if r.ok]
    figures: dict[str, Any] = {name: p50([read(r) for r in answered]) for name, read in FIGURES.items()}
    figures["requests_ok"] = len(answered)
    figures["requests_failed"] = len(rows) - len(answered)
    figures["with_span"] = sum(1 for r in answered if r.has_span)
    return figures


def shown(value: float | None, unit: str = " ms") -> str:
    return "?" if value is None else f"{value:.1f}{unit}"


def measure(manager: Carousel, workload: Workload, requests: int) -> dict[str, Any]:
    receiver = xray.shared_receiver()
    plan = LoadPlan(concurrency=1, requests=requests, warmup=WARMUP)
    result = loadgen.run_load(manager.base_url, manager.served_name, workload, plan, manager.api_key)
    return split(xray.for_result(result, receiver).rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--port", type=int, default=8362)
    parser.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backend = args.backend or hardware.detect_backend()
    preset = presets.get("pika-json")
    config = presets.brief_config(backend, port=args.port)
    config = config.with_values(config_mod.parse_assignments(args.set))
    receiver = xray.shared_receiver()
    if receiver is None:
        print("the request X-ray is off (LEGO_FACTORY_XRAY=0): vLLM's own figures would be unknown")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="pika-split-"))
    manager = Carousel(
        workdir, backend=backend, extra_argv=receiver.server_args(), extra_env=receiver.server_env()
    )
    report: dict[str, Any] = {"environment": environment(backend, config.model), "config": config.values}
    print(environment_line(report["environment"]))
    try:
        startup = manager.start(config, wait=True, timeout=900)
        if not startup.ok:
            print("the server did not start:", startup.error)
            return 1
        workloads = {
            "pika-json": Workload.from_request(preset.request, label=preset.name),
            "pika-json without its schema": Workload.from_request(preset.request, json_mode=False),
        }
        for name, workload in workloads.items():
            figures = measure(manager, workload, args.requests)
            report[name] = figures
            print(
                f"{name}: client whole answer {shown(figures['client_e2e_ms'])}, first token "
                f"{shown(figures['client_ttft_ms'])}; vLLM whole answer {shown(figures['server_e2e_ms'])}, "
                f"first token {shown(figures['server_ttft_ms'])} (queue {shown(figures['queue_ms'])}, "
                f"prefill {shown(figures['prefill_ms'])}), decode {shown(figures['decode_ms'])} = "
                f"{shown(figures['step_ms'])} a step; outside vLLM {shown(figures['outside_vllm_ms'])}; "
                f"{shown(figures['completion_tokens'], ' tokens')}; "
                f"{figures['requests_ok']} answered, {figures['requests_failed']} failed, "
                f"{figures['with_span']} with vLLM's timings",
                flush=True,
            )
    finally:
        manager.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    pika = report["pika-json"]
    later = None if pika["completion_tokens"] is None else pika["completion_tokens"] - 1
    print(
        f"split: whole answer {shown(pika['client_e2e_ms'])} = first token {shown(pika['client_ttft_ms'])} "
        f"+ {shown(later, '')} later tokens x {shown(pika['step_ms'])}; "
        f"outside vLLM {shown(pika['outside_vllm_ms'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
