"""Is this machine steady enough to compare settings? The same server and request, measured in blocks.

    python benchmarks/machine_steadiness.py [--blocks 20] [--block-requests 20] [--backend cpu|cuda]
                                            [--port 8363] [--json FILE]

One server with the pika-json preset's settings (on a GPU: float16 and 0.15 of its memory, the brief's)
answers the Pika JSON request one at a time, after three warm-up requests left out, in back-to-back
blocks. Nothing changes between blocks, so any difference between their medians is the machine's own
movement (other work on a shared host, clocks, the operating system). On a lent H200 host the same
settings measured 47 ms and then 64 ms ten minutes apart; the tuner's interleaved confirmation exists
because of that. Each block's p50 whole answer is printed as it is measured; the last line reads
`steadiness: p50 per block from X to Y ms (spread Z%) over N blocks of M answers; all answers p50 W ms`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import hardware, presets  # noqa: E402
from dashboard.engine.carousel import Carousel  # noqa: E402
from dashboard.measure import loadgen  # noqa: E402
from dashboard.measure.cards import environment, environment_line  # noqa: E402
from dashboard.measure.loadgen import LoadPlan, Workload  # noqa: E402
from dashboard.tune.intervals import percentile  # noqa: E402

WARMUP = 3


def block_e2e_ms(manager: Carousel, workload: Workload, requests: int, warmup: int) -> list[float]:
    plan = LoadPlan(concurrency=1, requests=requests, warmup=warmup)
    result = loadgen.run_load(manager.base_url, manager.served_name, workload, plan, manager.api_key)
    return [t.e2e_ms for t in result.timings if t.ok and t.e2e_ms is not None]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block-requests", type=int, default=20)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--port", type=int, default=8363)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backend = args.backend or hardware.detect_backend()
    preset = presets.get("pika-json")
    config = presets.brief_config(backend, port=args.port)
    workload = Workload.from_request(preset.request, label=preset.name)
    manager = Carousel(Path(tempfile.mkdtemp(prefix="steadiness-")), backend=backend)
    report: dict[str, Any] = {"environment": environment(backend, config.model), "blocks": []}
    print(environment_line(report["environment"]))
    try:
        startup = manager.start(config, wait=True, timeout=900)
        if not startup.ok:
            print("the server did not start:", startup.error)
            return 1
        began = time.monotonic()
        for index in range(args.blocks):
            times = block_e2e_ms(manager, workload, args.block_requests, WARMUP if index == 0 else 0)
            block = {
                "block": index,
                "at_s": round(time.monotonic() - began, 1),
                "answers": len(times),
                "p50_ms": percentile(times, 50),
                "e2e_ms": [round(t, 2) for t in times],
            }
            report["blocks"].append(block)
            print(
                f"block {index:2d} at {block['at_s']:6.1f} s: p50 {block['p50_ms'] or 0:.1f} ms "
                f"({len(times)} answers)",
                flush=True,
            )
    finally:
        manager.close()
    medians = [b["p50_ms"] for b in report["blocks"] if b["p50_ms"] is not None]
    if not medians:
        print("no answer came back")
        return 1
    everything = [t for b in report["blocks"] for t in b["e2e_ms"]]
    low, high = min(medians), max(medians)
    report |= {
        "low_ms": low,
        "high_ms": high,
        "spread": (high - low) / low,
        "p50_ms": percentile(everything, 50),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(
        f"steadiness: p50 per block from {low:.1f} to {high:.1f} ms (spread {report['spread'] * 100:.0f}%) "
        f"over {len(medians)} blocks of {args.block_requests} answers; "
        f"all answers p50 {report['p50_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
