"""A prepared starter: one process that has imported vLLM once and forks a new server from itself.

A cold `python -m vllm.entrypoints.openai.api_server` spends its first seconds importing vLLM, PyTorch
and Transformers, and its engine process (spawned on the CPU build) imports them all again. The starter
does those imports once, while the machine is idle, then waits on a Unix socket. For each new server it
forks a child that becomes exactly the process a cold start would run: the same module, the same
arguments and environment, its own session (so the factory stops its whole process group as before),
its output in the server's own log. The child's engine process is forked from it too, so it starts with
everything imported. What the server does once running is vLLM's own code, unchanged.

The protocol is one JSON line each way:
  {"op": "spawn", "argv": [...], "env": {...}, "cwd": "...", "log": "..."} -> {"pid": N}
  {"op": "status", "pid": N} -> {"exit_code": None | int}
  {"op": "ping"} -> {"ok": true}
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SOCKET_NAME = "starter.sock"
STATE_NAME = "starter.json"
READY_TIMEOUT_S = 300.0
PRELOAD = (
    "vllm.entrypoints.openai.api_server",
    "vllm.v1.engine.core",
    "vllm.v1.engine.async_llm",
    "vllm.v1.executor.abstract",
    "vllm.v1.executor.multiproc_executor",
    "vllm.model_executor.models.llama",
    "transformers",
)
# Only on the CPU build: importing its worker replaces torch.cuda's streams with placeholders, and a GPU
# server forked after that fails while it profiles its CUDA graphs.
PRELOAD_CPU = ("vllm.v1.worker.cpu_worker",)


# ------------------------------------------------------------------------------------------ client side


_LAUNCHED: weakref.WeakSet[Starter] = weakref.WeakSet()


def close_all() -> None:
    """Close every starter this process launched (the app's exit on SIGHUP or SIGTERM)."""
    for starter in list(_LAUNCHED):
        with contextlib.suppress(Exception):
            starter.close()


class ForkedProcess:
    """What the server manager needs of a process the starter forked: pid, poll() and wait()."""

    def __init__(self, starter: Starter, pid: int) -> None:
        self._starter = starter
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._starter.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        return int(self.returncode or 0)


class Starter:
    """The starter process of one carousel: launched in the background, used once it says it is ready."""

    def __init__(self, workdir: Path, python: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.workdir / SOCKET_NAME
        self.python = python or sys.executable
        self._proc: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._failed = False
        self._lock = threading.Lock()

    def launch(self, env: dict[str, str]) -> None:
        """Start the starter process (returns at once; it imports vLLM in the background)."""
        reap_starter(self.workdir)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log = open(self.workdir / "starter.log", "wb")  # noqa: SIM115 (the child keeps it)
        self._proc = subprocess.Popen(
            [self.python, "-m", "dashboard.engine.starter", str(self.socket_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _with_project_root(env.get("PYTHONPATH"))},
            cwd=self.workdir,
        )
        log.close()
        state = {"pid": self._proc.pid, "owner_pid": os.getpid()}
        with contextlib.suppress(OSError):
            (self.workdir / STATE_NAME).write_text(json.dumps(state), encoding="utf-8")
        threading.Thread(target=self._wait_ready, name="lego-starter-wait", daemon=True).start()
        atexit.register(self.close)
        _LAUNCHED.add(self)

    def ready(self) -> bool:
        return (
            self._ready.is_set() and not self._failed and self._proc is not None and self._proc.poll() is None
        )

    def wait_ready(self, timeout: float) -> bool:
        self._ready.wait(timeout)
        return self.ready()

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path, cores: list[int] | None = None
    ) -> ForkedProcess:
        """Fork a server; with `cores`, it and every process it starts run on those cores only."""
        request = {"op": "spawn", "argv": argv, "env": env, "cwd": str(cwd), "log": str(log_path)}
        if cores:
            request["cores"] = list(cores)
        reply = self._ask(request)
        return ForkedProcess(self, int(reply["pid"]))

    def exit_code(self, pid: int) -> int | None:
        """None while the forked server runs; its exit code once it ended (-1 when nobody knows). Only
        the starter knows the code (the server is its child): a busy starter is asked again, for longer."""
        for timeout in (10.0, 20.0):
            try:
                return self._ask({"op": "status", "pid": pid}, timeout=timeout)["exit_code"]
            except (OSError, ValueError, KeyError):
                continue
        return None if _running(pid) else -1

    def close(self) -> None:
        proc = self._proc
        self._proc = None
        self._failed = True
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            (self.workdir / STATE_NAME).unlink()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                break
            with contextlib.suppress(OSError, ValueError):
                if self._ask({"op": "ping"}, timeout=2.0).get("ok"):
                    self._ready.set()
                    return
            time.sleep(0.5)
        self._failed = True
        self._ready.set()

    def _ask(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(_read_line(sock))


def _with_project_root(pythonpath: str | None) -> str:
    """The starter runs in the carousel's folder: make sure it finds this package there too."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([root, *([pythonpath] if pythonpath else [])])


def reap_starter(workdir: Path) -> None:
    """Kill a starter left behind by an app that is gone."""
    path = Path(workdir) / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if _running(int(state.get("owner_pid", 0))):
        return
    pid = int(state.get("pid", 0))
    if pid > 0 and _running(pid) and _cmdline_has(pid, "dashboard.engine.starter"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        path.unlink()


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline_has(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return text.encode() in handle.read()
    except OSError:
        return False


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ------------------------------------------------------------------------------------------ starter side


def modules_to_preload() -> tuple[str, ...]:
    return PRELOAD + (PRELOAD_CPU if _is_cpu_build() else ())


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def serve(socket_path: str) -> None:
    """The starter's own loop: preload, then fork a server for each request."""
    for module in modules_to_preload():
        with contextlib.suppress(Exception):
            __import__(module)
    if _cuda_initialized():  # a forked server could not use the GPU: never get ready, starts stay cold
        print("starter: CUDA was initialised while preloading; no server can be forked", flush=True)
        sys.exit(3)
    exit_codes: dict[int, int] = {}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    os.chmod(socket_path, 0o600)
    listener.listen(16)
    print("starter ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                request = json.loads(_read_line(conn))
                reply = _handle(request, listener, exit_codes)
            except Exception as exc:  # a bad request must not end the starter
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")


def _handle(request: dict[str, Any], listener: socket.socket, exit_codes: dict[int, int]) -> dict[str, Any]:
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "status":
        pid = int(request["pid"])
        if pid not in exit_codes:
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    exit_codes[pid] = os.waitstatus_to_exitcode(status)
        if pid not in exit_codes and not _running(pid):
            exit_codes[pid] = -1
        return {"exit_code": exit_codes.get(pid)}
    if op == "spawn":
        pid = os.fork()
        if pid == 0:
            _become_server(request, listener)  # never returns
        return {"pid": pid}
    return {"error": f"unknown op {op!r}"}


def _become_server(request: dict[str, Any], listener: socket.socket) -> None:
    """In the forked child: turn into the server process a cold start would have run."""
    code = 1
    try:
        listener.close()
        os.setsid()
        if request.get("cores"):
            os.sched_setaffinity(0, request["cores"])  # inherited by every thread and process it starts
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        os.chdir(request["cwd"])
        _show_command_line(list(request["argv"]))  # before the environment changes: setproctitle needs it
        os.environ.clear()
        os.environ.update(request["env"])
        argv = list(request["argv"])
        module = argv[argv.index("-m") + 1]
        sys.argv = [module, *argv[argv.index("-m") + 2 :]]
        _fork_engine_processes()
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _show_command_line(argv: list[str]) -> None:
    """Let `ps` show the server's own command line, as a cold start would, not the starter's."""
    with contextlib.suppress(Exception):
        import setproctitle

        setproctitle.setproctitle(" ".join(argv))


def _fork_engine_processes() -> None:
    """Let vLLM fork its engine process from this already-prepared one instead of spawning a fresh
    Python that imports everything again. The CPU build asks for spawn to keep the parent's thread
    pools out of the engine; the starter's child has run no PyTorch work yet, so it has none."""
    import multiprocessing

    def forking() -> multiprocessing.context.BaseContext:
        return multiprocessing.get_context("fork")

    with contextlib.suppress(Exception):
        from vllm.v1.engine import utils as engine_utils

        engine_utils.get_mp_context = forking
    if not _is_cpu_build():  # a GPU worker stays as vLLM starts it
        return
    with contextlib.suppress(Exception):  # the CPU build's model worker, started by the engine process
        from vllm.v1.executor import multiproc_executor

        multiproc_executor.get_mp_context = forking
        worker_main = multiproc_executor.WorkerProc.worker_main

        def placed_worker_main(*args: Any, **kwargs: Any) -> Any:
            _place_threads_like_a_new_process()
            return worker_main(*args, **kwargs)

        multiproc_executor.WorkerProc.worker_main = staticmethod(placed_worker_main)


def _is_cpu_build() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:
        return False


def _place_threads_like_a_new_process() -> None:
    """vLLM's CPU build places a worker's OpenMP threads with variables (OMP_NUM_THREADS and the
    core list) that a new Python reads when it loads OpenMP. A forked worker loaded it long before,
    so apply them here, before its first computation: same thread count, same cores."""
    cores = _cores_from_env(os.environ)
    if cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cores)
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


def _cores_from_env(env: Mapping[str, str]) -> list[int]:
    """The cores vLLM chose for a worker: GOMP_CPU_AFFINITY "0 1", OMP_PLACES "{0,1}" or
    KMP_AFFINITY "...,proclist=[0,1]"."""
    if env.get("GOMP_CPU_AFFINITY"):
        text = env["GOMP_CPU_AFFINITY"]
    elif env.get("OMP_PLACES"):
        text = env["OMP_PLACES"]
    else:
        found = re.search(r"proclist=\[([^\]]*)\]", env.get("KMP_AFFINITY", ""))
        text = found.group(1) if found else ""
    return [int(number) for number in re.findall(r"\d+", text)]


if __name__ == "__main__":
    serve(sys.argv[1])
