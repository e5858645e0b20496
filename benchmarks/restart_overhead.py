"""How much the ServerManager adds to a start: time from apply() to ready, against a bare
`python -m vllm.entrypoints.openai.api_server` start with the same argv and environment.

Runs alternate (manager, bare, manager, bare, ...) in one process so both see the same machine
load. The bare start is polled on /health every 0.1 s (a lower bound); the manager polls every
0.5 s, tails the log, validates the config and records the process tree: its extra time is the
overhead printed at the end.

    python benchmarks/restart_overhead.py [--runs 2] [--port 8140]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.engine import config as config_mod  # noqa: E402
from dashboard.engine import models  # noqa: E402
from dashboard.engine.config import ServerConfig, default_config  # noqa: E402
from dashboard.engine.server import ServerManager  # noqa: E402

TIMEOUT_S = 600.0


def manager_start(manager: ServerManager, config: ServerConfig) -> float:
    """Seconds from apply() to the manager's snapshot saying ready; stops the server afterwards."""
    start = time.perf_counter()
    if not manager.apply(config, timeout=TIMEOUT_S):
        raise RuntimeError("manager busy")
    while True:
        snapshot = manager.snapshot()
        if snapshot.status == "ready" and snapshot.config == config and not manager.is_busy():
            elapsed = time.perf_counter() - start
            break
        if snapshot.status == "failed" and not manager.is_busy():
            raise RuntimeError(f"manager start failed: {snapshot.problem}")
        if time.perf_counter() - start > TIMEOUT_S:
            raise RuntimeError("manager start timed out")
        time.sleep(0.05)
    manager.stop()
    return elapsed


def bare_start(argv: list[str], port: int, log_path: Path) -> float:
    """Seconds from Popen to /health 200 for the same command, polled every 0.1 s."""
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"bare server exited with {proc.returncode}; see {log_path}")
                try:
                    if http.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - start
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - start > TIMEOUT_S:
                    raise RuntimeError("bare start timed out")
                time.sleep(0.1)
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's group, wait, then SIGKILL whatever of the group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    time.sleep(1.0)  # the engine core leaves after its parent
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="starts of each kind (default 2)")
    parser.add_argument("--port", type=int, default=8140)
    parser.add_argument("--max-model-len", type=int, default=1024)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="restart-overhead-"))
    manager = ServerManager(workdir)
    config = default_config(manager.backend).with_values(
        {"port": args.port, "max_model_len": args.max_model_len}
    )
    resolved = models.resolve(config.model)
    argv = config_mod.argv(config, resolved.path, resolved.served_name, python=sys.executable)
    print("command:", " ".join(argv[1:]))
    print(f"backend: {manager.backend}, runs: {args.runs} of each, alternating\n")

    times: dict[str, list[float]] = {"manager": [], "bare": []}
    try:
        for run in range(args.runs):
            seconds = manager_start(manager, config)
            times["manager"].append(seconds)
            print(f"run {run + 1}  manager apply -> ready: {seconds:6.2f} s", flush=True)
            seconds = bare_start(argv, args.port, workdir / f"bare-{run}.log")
            times["bare"].append(seconds)
            print(f"run {run + 1}  bare start    -> ready: {seconds:6.2f} s", flush=True)
    finally:
        manager.close()

    managed, bare = statistics.mean(times["manager"]), statistics.mean(times["bare"])
    print()
    print(f"manager mean {managed:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['manager'])})")
    print(f"bare    mean {bare:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['bare'])})")
    print(f"overhead     {managed - bare:+6.2f} s  ({(managed - bare) / bare * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
