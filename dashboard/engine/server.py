"""One real vLLM server: start it, watch it start, notice when it dies, stop its whole process tree.

Many callers (Streamlit sessions, the CLI, tests) may share one ServerManager. A state lock guards
what the snapshot shows; a restart lock lets only one start or restart run at a time. A monitor
thread per launch tails the log file into a StartupWatcher, polls /health until it answers 200,
and afterwards notices a crash. Stopping sends SIGTERM to the process group, waits, then SIGKILLs
the group, every process recorded in the tree and every process left in the server's session (the
engine core outlives a killed API server). An app that died without stopping its server leaves a
state file in the workdir; the next ServerManager on that folder reaps the orphaned server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import httpx
import psutil

from dashboard.engine import config as config_mod
from dashboard.engine import hardware, models, warmup
from dashboard.engine import starter as starter_mod
from dashboard.engine.config import ServerConfig
from dashboard.engine.problems import Problem
from dashboard.engine.report import ServerSnapshot, StartupReport, mask_config, mask_secrets, refused_report
from dashboard.engine.starter import ForkedProcess, Starter
from dashboard.engine.startup_log import Phase, StartupWatcher
from dashboard.i18n import N_

STATE_FILE = "server.json"
STOP_GRACE_S = 15.0
POLL_S = 0.2
HEALTH_EVERY_S = 0.1  # only polled once our own log says the web server is up
TREE_EVERY_S = 1.0

PhaseCallback = Callable[[Phase], None]


@dataclass
class _Launch:
    """Everything about one launched server process (mutable; guarded by the manager's lock)."""

    generation: int
    config: ServerConfig
    argv: list[str]
    proc: subprocess.Popen | ForkedProcess
    log_path: Path
    watcher: StartupWatcher
    started_at: float
    base_url: str
    served_name: str
    api_key: str | None
    deadline: float
    on_phase: PhaseCallback | None = None
    status: str = "starting"
    problem: Problem | None = None
    ready_at: float | None = None
    tree: dict[int, psutil.Process] = field(default_factory=dict)
    settled: threading.Event = field(default_factory=threading.Event)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # processes gone, monitor done

    @property
    def pid(self) -> int:
        return self.proc.pid


class ServerManager:
    """Owns at most one real vLLM server at a time."""

    shared_starter: ClassVar[Starter | None] = None

    def __init__(self, workdir: Path, backend: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = backend or hardware.detect_backend()
        self._lock = threading.Lock()
        self._restart_lock = threading.Lock()
        self._launch: _Launch | None = None
        self._last_report: StartupReport | None = None
        self._refusal: Problem | None = None
        self._generation = 0
        self._closed = False
        self._vllm_version = hardware.vllm_version()
        self.extra_argv: list[str] = []  # options the carousel adds (sleep mode), kept out of the config
        self.extra_env: dict[str, str] = {}
        # A prepared process to fork servers from: set by the carousel, or shared by every manager of
        # a process that prepared one (the test suite does, so its many starts skip vLLM's imports).
        self.starter: Starter | None = ServerManager.shared_starter
        self.last_start_kind = "cold"
        self.warm_up = True  # serve warm-up orders before declaring ready
        self.cores: list[int] | None = None  # start on these cores only (a background start), else any
        self.reap_orphans()
        _register(self)

    # ------------------------------------------------------------ public API

    def start(
        self,
        config: ServerConfig,
        wait: bool = True,
        timeout: float = 600,
        on_phase: PhaseCallback | None = None,
    ) -> StartupReport:
        """Start a server for `config` (stopping the current one first). With wait=False it returns
        right after launching; the start goes on in the background and counts as busy until settled."""
        self._restart_lock.acquire()
        handed_off = False
        try:
            report, launch = self._start_locked(config, timeout, on_phase)
            if launch is None:
                return report
            if not wait:
                threading.Thread(
                    target=self._release_when_settled, args=(launch,), name="lego-start-wait", daemon=True
                ).start()
                handed_off = True
                return report
            launch.settled.wait()
            return self._final_report(launch)
        finally:
            if not handed_off:
                self._restart_lock.release()

    def restart(
        self,
        config: ServerConfig,
        wait: bool = True,
        timeout: float = 600,
        on_phase: PhaseCallback | None = None,
    ) -> StartupReport:
        """Stop the current server (if any) and start one with `config`."""
        return self.start(config, wait=wait, timeout=timeout, on_phase=on_phase)

    def apply(
        self, config: ServerConfig, timeout: float = 600, on_phase: PhaseCallback | None = None
    ) -> bool:
        """Restart with `config` in the background. False when a start or stop is already under way."""
        if self.is_busy() or not self._restart_lock.acquire(blocking=False):
            return False
        thread = threading.Thread(
            target=self._apply_in_background, args=(config, timeout, on_phase), name="lego-apply", daemon=True
        )
        thread.start()
        return True

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop the server and every process it started; returns when none is left."""
        with self._lock:
            launch = self._launch
            if launch is None:
                return
            launch.stop_requested.set()
            if launch.status in ("starting", "ready"):
                launch.status = "stopping"
        self._terminate(launch, grace)
        launch.finished.wait(timeout=grace + 10)
        with self._lock:
            if launch.status == "stopping":
                launch.status = "stopped"
            launch.settled.set()
            if self._launch is launch:
                self._launch = None
                self._refusal = None
        self._forget_state_file(launch)

    def snapshot(self) -> ServerSnapshot:
        with self._lock:
            launch = self._launch
            if launch is None:
                report = self._last_report
                return ServerSnapshot(status="stopped", report=report, problem=self._refusal)
            report = self._report_locked(launch)
            return ServerSnapshot(
                status=launch.status,
                config=launch.config,
                phases=tuple(launch.watcher.phases()),
                report=report,
                problem=launch.problem or self._refusal,
                base_url=launch.base_url,
                served_name=launch.served_name,
                pid=launch.pid,
                log_path=str(launch.log_path),
                started_at=launch.started_at,
            )

    def is_busy(self) -> bool:
        """True while a start, restart or stop is under way."""
        with self._lock:
            launch = self._launch
            status = launch.status if launch else "stopped"
            cleaning_up = launch is not None and status == "failed" and not launch.finished.is_set()
        return self._restart_lock.locked() or status in ("starting", "stopping") or cleaning_up

    def wait_until_settled(self, timeout: float | None = None) -> StartupReport | None:
        """Wait for the current start to end (ready or failed); the last report, or None."""
        with self._lock:
            launch = self._launch
        if launch is not None:
            launch.settled.wait(timeout)
            return self._final_report(launch)
        return self._last_report

    @property
    def base_url(self) -> str:
        with self._lock:
            return self._launch.base_url if self._launch else ""

    @property
    def served_name(self) -> str:
        with self._lock:
            return self._launch.served_name if self._launch else ""

    @property
    def api_key(self) -> str | None:
        with self._lock:
            return self._launch.api_key if self._launch else None

    @property
    def last_report(self) -> StartupReport | None:
        with self._lock:
            return self._report_locked(self._launch) if self._launch else self._last_report

    def process_tree(self) -> list[psutil.Process]:
        """The server's processes known right now (the recorded tree plus live descendants)."""
        with self._lock:
            launch = self._launch
        return _known_processes(launch) if launch else []

    def close(self) -> None:
        """Stop the server and refuse new starts (used on app exit)."""
        self._closed = True
        self.stop()

    # ------------------------------------------------------------ starting

    def _apply_in_background(
        self, config: ServerConfig, timeout: float, on_phase: PhaseCallback | None
    ) -> None:
        try:
            _, launch = self._start_locked(config, timeout, on_phase)
            if launch is not None:
                launch.settled.wait()
        finally:
            self._restart_lock.release()

    def _release_when_settled(self, launch: _Launch) -> None:
        launch.settled.wait()
        self._restart_lock.release()

    def _refuse(self, config: ServerConfig, problem: Problem, started_at: float, argv=()) -> StartupReport:
        report = refused_report(config, problem, self.backend, started_at, argv)
        with self._lock:
            self._refusal = problem
            if self._launch is None:
                self._last_report = report
        return report

    def _start_locked(
        self, config: ServerConfig, timeout: float, on_phase: PhaseCallback | None
    ) -> tuple[StartupReport, _Launch | None]:
        """Validate, stop the old server, launch. Caller holds the restart lock."""
        now = time.time()
        if self._closed:
            return self._refuse(config, _closed_problem(), now), None
        try:
            resolved = models.resolve(config.model)
        except models.ModelUnavailable as exc:
            return self._refuse(config, exc.problem, now), None
        served_name = config.get("served_model_name") or resolved.served_name
        argv = config_mod.argv(config, resolved.path, resolved.served_name, python=sys.executable)
        argv += self.extra_argv
        facts = hardware.model_facts(config, self.backend, resolved)
        running_port = self._running_port()
        port = config.get("port")
        problems = config_mod.validate(config, facts, check_port=port != running_port)
        if problems:
            return self._refuse(config, problems[0], now, argv), None
        self.stop()
        if port is not None and not config_mod.port_is_free(int(port)):
            return self._refuse(config, _port_problem(int(port)), now, argv), None
        launch = self._launch_process(config, argv, served_name, timeout, on_phase)
        return self._report_now(launch), launch

    def _launch_process(
        self,
        config: ServerConfig,
        argv: list[str],
        served_name: str,
        timeout: float,
        on_phase: PhaseCallback | None,
    ) -> _Launch:
        with self._lock:
            self._generation += 1
            generation = self._generation
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"server-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{generation}.log"
        started_at = time.time()
        proc = self._spawn(argv, log_path, self._child_env(config))
        host = config.get("host") or "127.0.0.1"
        port = int(config.get("port") or config_mod.flags.get("port").vllm_default)
        launch = _Launch(
            generation=generation,
            config=config,
            argv=argv,
            proc=proc,
            log_path=log_path,
            watcher=StartupWatcher(started_at=started_at, backend=self.backend),
            started_at=started_at,
            base_url=f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}",
            served_name=served_name,
            api_key=config.get("api_key") or None,
            deadline=started_at + timeout,
            on_phase=on_phase,
        )
        first = launch.watcher.mark("process_start", started_at, pid=proc.pid)
        with self._lock:
            self._launch = launch
            self._refusal = None
        self._write_state_file(launch)
        _call(on_phase, first)
        threading.Thread(
            target=self._monitor, args=(launch,), name="lego-server-monitor", daemon=True
        ).start()
        return launch

    def _spawn(
        self, argv: list[str], log_path: Path, env: dict[str, str]
    ) -> subprocess.Popen | ForkedProcess:
        """Fork the server from the prepared starter when one is ready, else start a fresh Python."""
        log_path.touch()
        starter = self.starter
        if starter is not None and starter.ready():
            try:
                process = starter.spawn(argv, env, self.workdir, log_path, cores=self.cores)
                self.last_start_kind = "forked"
                return process
            except (OSError, ValueError, KeyError):
                pass  # the starter is gone: a cold start works the same, only slower
        self.last_start_kind = "cold"
        cores = self.cores
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=self.workdir,
                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
            )

    def _child_env(self, config: ServerConfig | None = None) -> dict[str, str]:
        """The server's environment. The API key travels here (vLLM reads VLLM_API_KEY), never on the
        command line, where `ps` would show it to every user of the machine."""
        env = dict(os.environ)
        env.pop(config_mod.API_KEY_ENV, None)  # only the key of this config, never one inherited
        env.update(config_mod.secret_env(config) if config is not None else {})
        env["NCCL_NVLS_ENABLE"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.update(self.extra_env)
        if self.backend == "cuda":
            env["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
        return env

    def _running_port(self) -> int | None:
        with self._lock:
            launch = self._launch
            if launch is None or launch.status not in ("starting", "ready"):
                return None
            port = launch.config.get("port")
        return int(port) if port is not None else None

    # ------------------------------------------------------------ watching

    def _monitor(self, launch: _Launch) -> None:
        """Tail the log, declare ready on /health 200, notice exits; one thread per launch."""
        next_health = next_tree = 0.0
        try:
            with (
                open(launch.log_path, encoding="utf-8", errors="replace") as log,
                httpx.Client(trust_env=False, timeout=1.0) as http,
            ):
                pending = ""
                while True:
                    pending = self._read_log(launch, log, pending)
                    now = time.monotonic()
                    if now >= next_tree:
                        _record_tree(launch)
                        next_tree = now + TREE_EVERY_S
                    exit_code = launch.proc.poll()
                    if launch.stop_requested.is_set():
                        if exit_code is not None:
                            self._read_log(launch, log, pending, final=True)
                            break
                    elif exit_code is not None:
                        self._read_log(launch, log, pending, final=True)
                        self._on_exit(launch, exit_code)
                        break
                    elif launch.status == "starting":
                        if time.time() > launch.deadline:
                            self._on_timeout(launch)
                            break
                        if now >= next_health and _log_says_listening(launch):
                            next_health = now + HEALTH_EVERY_S
                            if _healthy(http, launch.base_url):
                                pending = self._read_log(launch, log, pending)
                                if self.warm_up:
                                    self._warm_up(launch)
                                self._on_ready(launch)
                    time.sleep(POLL_S)
        finally:
            launch.settled.set()
            launch.finished.set()

    def _read_log(self, launch: _Launch, log, pending: str, final: bool = False) -> str:
        text = pending + log.read()
        lines = text.split("\n")
        pending = "" if final else lines.pop()
        reached: list[Phase] = []
        with self._lock:
            for line in lines:
                line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line
                reached += launch.watcher.feed(line)
        for phase in reached:
            _call(launch.on_phase, phase)
        return pending

    def _warm_up(self, launch: _Launch) -> None:
        """Serve the first orders inside the start, so that "ready" means ready at full speed: the first
        answers of a fresh server pay one-time costs (the first prefill's kernels, the structured-output
        backend learning the vocabulary) that would otherwise land on the user's first order."""
        started = time.monotonic()
        answered = warmup.serve_warm_up_orders(launch.base_url, launch.served_name, launch.api_key)
        phase = None
        with self._lock:
            if launch.status == "starting":
                phase = launch.watcher.mark(
                    "warmup", answered=answered, seconds_taken=round(time.monotonic() - started, 3)
                )
        if phase is not None:
            _call(launch.on_phase, phase)

    def _on_ready(self, launch: _Launch) -> None:
        now = time.time()
        with self._lock:
            if launch.status != "starting":
                return
            launch.status = "ready"
            launch.ready_at = now
            phase = launch.watcher.mark("ready", now, base_url=launch.base_url)
            self._last_report = self._report_locked(launch)
        launch.settled.set()
        _call(launch.on_phase, phase)

    def _on_exit(self, launch: _Launch, exit_code: int) -> None:
        with self._lock:
            was_ready = launch.status == "ready"
            if was_ready:
                launch.problem = _crash_problem(exit_code, launch.watcher.problem(exit_code).root_cause)
            else:
                launch.problem = _with_port_suggestion(launch.watcher.problem(exit_code), launch.config)
            launch.status = "failed"
        self._terminate(launch, grace=5.0)
        with self._lock:
            self._last_report = self._report_locked(launch)
        launch.settled.set()

    def _on_timeout(self, launch: _Launch) -> None:
        seconds = round(launch.deadline - launch.started_at)
        with self._lock:
            launch.status = "failed"
            launch.problem = Problem(
                "startup_timeout",
                N_(
                    "The server was not ready after {seconds} seconds, so it was stopped. "
                    "A slow machine or a compile step can take long: try eager mode or wait longer."
                ),
                "enforce_eager",
                {"seconds": seconds},
                suggestion=True,
                root_cause=launch.watcher.problem(None).root_cause,
            )
        self._terminate(launch, STOP_GRACE_S)
        with self._lock:
            self._last_report = self._report_locked(launch)
        launch.settled.set()

    # ------------------------------------------------------------ stopping

    def _terminate(self, launch: _Launch, grace: float) -> None:
        """SIGTERM the group, wait, SIGKILL the group and every known process of this launch."""
        _record_tree(launch)
        processes = _known_processes(launch)
        _signal_group(launch, processes, signal.SIGTERM)
        _signal_group(launch, processes, signal.SIGCONT)  # a paused carousel server acts on it at once
        alive = _wait_gone(processes, grace)
        seen = {process.pid for process in alive}
        late = [p for p in _session_processes(launch.pid, launch.started_at) if p.pid not in seen]
        leftovers = alive + late
        if leftovers:
            _signal_group(launch, leftovers, signal.SIGKILL)
            for process in leftovers:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            _wait_gone(leftovers, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            launch.proc.wait(timeout=5)

    def reap_orphans(self) -> list[int]:
        """Kill a server left behind by an earlier app in this workdir whose process is gone."""
        path = self.workdir / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        owner = state.get("owner_pid")
        if owner and psutil.pid_exists(owner) and _same_start(owner, state):
            return []  # its app is still running: not an orphan
        killed = []
        for process in _session_processes(int(state.get("pid", 0)), float(state.get("started_at", 0))):
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed.append(process.pid)
        with contextlib.suppress(OSError):
            path.unlink()
        return killed

    def _write_state_file(self, launch: _Launch) -> None:
        state = {
            "owner_pid": os.getpid(),
            "owner_started": psutil.Process().create_time(),
            "pid": launch.pid,
            "started_at": launch.started_at,
            "log_path": str(launch.log_path),
        }
        with contextlib.suppress(OSError):
            (self.workdir / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def _forget_state_file(self, launch: _Launch) -> None:
        path = self.workdir / STATE_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == launch.pid:
                path.unlink()

    # ------------------------------------------------------------ reports

    def _report_now(self, launch: _Launch) -> StartupReport:
        with self._lock:
            return self._report_locked(launch)

    def _final_report(self, launch: _Launch) -> StartupReport:
        with self._lock:
            report = self._report_locked(launch)
            if launch.status == "stopped" and report.error is None:
                report = _replace_error(report, _stopped_problem())
            return report

    def _report_locked(self, launch: _Launch) -> StartupReport:
        details = launch.watcher.details()
        ready_s = launch.ready_at - launch.started_at if launch.ready_at else None
        return StartupReport(
            config=mask_config(launch.config),
            command=mask_secrets(launch.argv),
            started_at=launch.started_at,
            backend=self.backend,
            vllm_version=self._vllm_version or details.get("vllm_version", ""),
            ready_s=round(ready_s, 3) if ready_s is not None else None,
            startup=[phase.to_dict() for phase in launch.watcher.phases()],
            kv_cache_tokens=details.get("kv_cache_tokens"),
            max_concurrency=details.get("max_concurrency"),
            kv_cache_gib=details.get("kv_cache_gib"),
            weights_gib=details.get("weights_gib"),
            error=launch.problem,
            log_tail=launch.watcher.tail(),
            log_path=str(launch.log_path),
            base_url=launch.base_url,
            served_name=launch.served_name,
            server_start=(
                {
                    "kind": "forked" if isinstance(launch.proc, ForkedProcess) else "cold",
                    "ready_s": round(ready_s, 3),
                }
                if ready_s is not None
                else None
            ),
        )


# ---------------------------------------------------------------- helpers


def _call(callback: PhaseCallback | None, phase: Phase) -> None:
    if callback is None:
        return
    with contextlib.suppress(Exception):  # a broken listener must not break the monitor
        callback(phase)


def _log_says_listening(launch: _Launch) -> bool:
    """Our own server's log has reached its web-server phase. Until then a 200 from /health on our port
    would come from some other program that took the port meanwhile, not from this server."""
    reached = {phase.name for phase in launch.watcher.phases()}
    return bool(reached & {"engine_ready", "api_ready"})


def _healthy(http: httpx.Client, base_url: str) -> bool:
    try:
        return http.get(base_url + "/health").status_code == 200
    except httpx.HTTPError:
        return False


def _record_tree(launch: _Launch) -> None:
    """Remember every descendant while the parent still knows them (orphans get reparented)."""
    try:
        root = psutil.Process(launch.pid)
        found = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in found:
        launch.tree.setdefault(process.pid, process)


def _known_processes(launch: _Launch) -> list[psutil.Process]:
    known = {p.pid: p for p in list(launch.tree.values()) if _alive(p)}
    for process in _session_processes(launch.pid, launch.started_at):
        known.setdefault(process.pid, process)
    return list(known.values())


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of them runs (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def _session_processes(session: int, started_at: float) -> list[psutil.Process]:
    """Live processes of the server's own session (it was started with start_new_session, so its
    session id is its pid). Found even after reparenting; Linux does not reuse an id while a session
    holds it. vLLM renames its processes (VLLM::EngineCore), which wipes their visible environment,
    so the session is the mark that stays."""
    if session <= 0:
        return []
    found = []
    for process in psutil.process_iter(["pid", "create_time"]):
        if process.pid == os.getpid():
            continue
        try:
            if os.getsid(process.pid) != session or process.info["create_time"] < started_at - 1.0:
                continue
        except (OSError, psutil.Error):
            continue
        if _alive(process):
            found.append(process)
    return found


def _signal_group(launch: _Launch, alive: list[psutil.Process], signum: int) -> None:
    """Signal the server's process group, but only while one of ours is alive in it (no reused ids)."""
    if not any(_alive(p) for p in alive) and launch.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(launch.pid, signum)


def _same_start(pid: int, state: dict) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - float(state.get("owner_started", 0))) < 1.0
    except psutil.Error:
        return False


def _port_problem(port: int) -> Problem:
    return Problem(
        "port_busy",
        N_("Port {port} is already taken by another program. Pick another port."),
        "port",
        {"port": port},
        suggestion=config_mod.next_free_port(port),
    )


def _with_port_suggestion(problem: Problem, config: ServerConfig) -> Problem:
    if problem.code != "port_busy":
        return problem
    port = config.get("port") or problem.params.get("port")
    if not isinstance(port, int):
        return problem
    return Problem(
        problem.code,
        problem.message,
        problem.flag,
        {**problem.params, "port": port},
        suggestion=config_mod.next_free_port(port),
        root_cause=problem.root_cause,
    )


def _crash_problem(exit_code: int, root_cause: str) -> Problem:
    return Problem(
        "server_crashed",
        N_(
            "The server stopped on its own while it was running (exit code {exit_code}). "
            "Its last log lines may say why. Start it again when ready."
        ),
        None,
        {"exit_code": exit_code},
        root_cause=root_cause,
    )


def _stopped_problem() -> Problem:
    return Problem("start_stopped", N_("The start was stopped before the server was ready."))


def _closed_problem() -> Problem:
    return Problem("manager_closed", N_("The app is shutting down, so no server can start now."))


def _replace_error(report: StartupReport, problem: Problem) -> StartupReport:
    return replace(report, error=problem)


# ---------------------------------------------------------------- exit hooks

_MANAGERS: weakref.WeakSet[ServerManager] = weakref.WeakSet()
_hooks_installed = False
_hooks_lock = threading.Lock()


def stop_all() -> None:
    """Stop every server this process started, and the starters it prepared (on exit, on SIGTERM)."""
    for manager in list(_MANAGERS):
        with contextlib.suppress(Exception):
            manager.close()
    starter_mod.close_all()


def _on_sigterm(previous):
    def handler(signum, frame):
        stop_all()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    return handler


def _register(manager: ServerManager) -> None:
    global _hooks_installed
    _MANAGERS.add(manager)
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(stop_all)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, _on_sigterm(signal.getsignal(signal.SIGTERM)))
