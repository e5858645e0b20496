"""The carousel: several real vLLM servers kept warm, one of them active.

Each server ("slot") is one ServerManager with its own folder, port, process group, log and startup
report. The active slot answers the playground, load tests, sweeps and the memory page. Applying a
config that a slot already holds flips to it without a start; a new config starts beside the active
server, which keeps serving until the new one is ready (a start that fails leaves it in charge).

Inactive slots are parked so they cost the active one nothing:
- on CUDA, with vLLM's sleep mode (level 1: weights to CPU memory, KV cache freed), woken on a flip;
- on CPU (no sleep mode), their processes are paused with SIGSTOP and resumed with SIGCONT, so an idle
  server's event loops and threads take no core time while another server is being measured.

Memory is budgeted with the whole footprint of a server: the predictor's weights and KV cache plus the
runtime's share (Python, PyTorch, tokenizer, graphs), learned from what this machine's earlier starts
really held (`footprints.json` in the carousel's folder). Before a server joins, the carousel checks
that it fits beside the others and evicts the least recently used inactive slot that is not pinned.

On machines with room, a config the user is likely to try next (the next value of a sweep) can be
started in the background (`prestart`): only when it fits beside the others without evicting anyone,
and only on spare cores, never on the cores the measurement needs. It waits, parked, until a start asks
for it, which then becomes a flip.

A measurement can claim the carousel: while claimed, starts, flips and stops from anyone but the
claim's owner are refused, so a sweep's rows are always measured on the server they name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from dashboard.engine import config as config_mod
from dashboard.engine import hardware, models
from dashboard.engine.config import ServerConfig
from dashboard.engine.problems import Problem
from dashboard.engine.report import ServerSnapshot, StartupReport, refused_report
from dashboard.engine.server import ServerManager
from dashboard.engine.starter import Starter, reap_starter
from dashboard.i18n import N_

log = logging.getLogger(__name__)

GIB = 1024**3
FOOTPRINTS_FILE = "footprints.json"
FOOTPRINTS_KEPT = 200
DEFAULT_MAX_SERVERS = {"cpu": 3, "cuda": 4}
CPU_BUDGET_SHARE = 0.6  # of the machine's RAM, for all carousel servers together
GPU_BUDGET_SHARE = 0.95  # of the GPUs' memory
# Until this machine has measured a start, the runtime's share is taken from one measured start:
# SmolLM2-135M on the CPU build held 3.7 GiB with 1 GiB of KV cache and 0.25 GiB of weights.
ASSUMED_RUNTIME_BYTES = {"cpu": int(2.4 * GIB), "cuda": int(0.6 * GIB)}
FLIP_HEALTH_TIMEOUT_S = 15.0
STARTER_WAIT_S = 180.0  # a start waits this long for the starter to finish its imports, then goes cold
PARKED_OR_ACTIVE = ("active", "warm", "paused", "asleep")
SLEEP_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # exposes /sleep, /wake_up and /is_sleeping
# Cores a measurement on a GPU keeps busy: the API server, the engine core, the load generator, the app.
# On the CPU build the engine computes on every core, so nothing is spare there.
GPU_MEASUREMENT_CORES = 4

StartKind = str  # "cold" | "forked" | "reused" | "woken"
PhaseCallback = Callable[[Any], None]


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Claim:
    """A measurement that owns the carousel until it ends."""

    owner: str  # a session or job id
    what: str  # e.g. "sweep of max_num_seqs" (shown to others)
    who: str = ""  # a name people recognise ("the presenter", "the CLI")
    started_at: float = field(default_factory=time.time)
    until: float | None = None  # expected end (epoch seconds), when known


@dataclass(frozen=True)
class Footprint:
    """What one server holds or is expected to hold, in bytes of the budgeted memory."""

    total_bytes: int
    weights_bytes: int | None = None
    kv_cache_bytes: int | None = None
    runtime_bytes: int | None = None
    runtime_measured: bool = False  # the runtime share comes from this machine's own starts


@dataclass(frozen=True)
class SlotCard:
    """One carousel server as the page draws it."""

    slot_id: int
    state: str  # "active" | "warm" | "paused" | "asleep" | "starting"
    config: ServerConfig
    base_url: str
    pinned: bool
    last_used: float
    memory_bytes: int | None  # what it holds now (RSS of its processes on CPU, GPU memory on CUDA)
    predicted_bytes: int | None  # the budget's whole-footprint prediction made before it started
    start_kind: StartKind
    ready_s: float | None
    differences: tuple[str, ...] = ()  # flags that differ from the active config
    background: bool = False  # started ahead of need, on spare cores


@dataclass(frozen=True)
class CarouselEvent:
    """Something the carousel did on its own that people should hear about (eviction, crash)."""

    kind: str  # "evicted" | "crashed"
    config: ServerConfig
    at: float
    detail: str = ""


@dataclass(frozen=True)
class StartPreview:
    """What Apply would do for a config, said before the click."""

    kind: str  # "flip" or "start"
    seconds: float | None  # expected seconds (None when this machine has no measurement yet)
    evicts: tuple[int, ...] = ()  # slot ids that would be evicted to make room


@dataclass
class _Slot:
    slot_id: int
    key: str
    manager: ServerManager
    config: ServerConfig
    predicted: Footprint
    state: str = "starting"  # starting | active | warm | paused | asleep
    pinned: bool = False
    last_used: float = field(default_factory=time.time)
    start_kind: StartKind = "cold"
    measured_bytes: int | None = None
    asleep_bytes: int | None = None  # GPU memory still held while asleep
    timeout: float = 600.0
    on_phase: PhaseCallback | None = None
    background: bool = False  # started by `prestart`, confined to spare cores until it is used


def config_key(config: ServerConfig) -> str:
    """Identity of a server in the carousel: every value except the port it listens on."""
    values = {k: v for k, v in sorted(config.values.items()) if k != "port" and v is not None}
    return json.dumps({"model": config.model, "values": values}, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ carousel


class Carousel:
    """Several real vLLM servers, one active. Same methods as ServerManager, plus flips and slots."""

    def __init__(
        self,
        workdir: Path,
        backend: str | None = None,
        budget_bytes: int | None = None,
        max_servers: int | None = None,
        park_inactive: bool = True,
        sleep_mode: bool | None = None,
        use_starter: bool | None = None,
        prestart_cores: int | None = None,
        extra_argv: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """`extra_argv` and `extra_env` go to every server this carousel starts, after its own options:
        what its owner adds (the request X-ray's span endpoint), never a secret (argv is visible)."""
        self.workdir = Path(workdir)
        self.extra_argv = list(extra_argv)
        self.extra_env = dict(extra_env or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = backend or hardware.detect_backend()
        self.max_servers = (
            max_servers or _env_int("LEGO_FACTORY_CAROUSEL_SIZE") or DEFAULT_MAX_SERVERS.get(self.backend, 3)
        )
        self.budget_bytes = budget_bytes or _env_gib("LEGO_FACTORY_CAROUSEL_GIB") or self._default_budget()
        self.park_inactive = park_inactive
        self.sleep_mode = (self.backend == "cuda") if sleep_mode is None else sleep_mode
        self.prestart_cores = _prestart_cores(self.backend) if prestart_cores is None else prestart_cores
        self._lock = threading.RLock()
        self._op_lock = threading.Lock()  # one start or flip at a time
        self._slots: dict[int, _Slot] = {}
        self._reserved_ids: set[int] = set()
        self._active: int | None = None
        self._pending: int | None = None
        self._last_failure: StartupReport | None = None
        self._failure_shown_until: float = 0.0
        self._crashed_active: ServerSnapshot | None = None
        self._claim: Claim | None = None
        self._events: list[CarouselEvent] = []
        self._closed = False
        self.reap_orphans()
        if use_starter is None:
            use_starter = os.environ.get("LEGO_FACTORY_STARTER", "1").strip() not in ("0", "false", "no")
        self.starter: Starter | None = None
        if use_starter:
            self.starter = Starter(self.workdir)
            self.starter.launch(_server_env())

    # -------------------------------------------------------------------- ServerManager's API

    def start(
        self,
        config: ServerConfig,
        wait: bool = True,
        timeout: float = 600,
        on_phase: PhaseCallback | None = None,
        fresh: bool = False,
        owner: str | None = None,
    ) -> StartupReport:
        """Make `config` the active server: a flip when a slot holds it (unless `fresh`), else a start
        beside the active one. With wait=False it returns once the start is under way."""
        refusal = self._refusal(config, owner)
        if refusal is not None:
            return refusal
        asked = time.monotonic()
        self._op_lock.acquire()
        handed_off = False
        try:
            self._drop_dead_slots()
            if not fresh:
                self._await_background_start(config, timeout)
                slot = self._warm_slot_for(config)
                if slot is not None:
                    return self._flip(slot, on_phase, since=asked)
            report, slot = self._launch(config, timeout, on_phase, replace_same=fresh)
            if slot is None:
                return report
            if not wait:
                threading.Thread(
                    target=self._settle_then_release, args=(slot,), name="lego-carousel-start", daemon=True
                ).start()
                handed_off = True
                return report
            return self._settle(slot)
        finally:
            if not handed_off:
                self._op_lock.release()

    def restart(
        self,
        config: ServerConfig,
        wait: bool = True,
        timeout: float = 600,
        on_phase: PhaseCallback | None = None,
        fresh: bool = False,
        owner: str | None = None,
    ) -> StartupReport:
        return self.start(config, wait=wait, timeout=timeout, on_phase=on_phase, fresh=fresh, owner=owner)

    def apply(
        self,
        config: ServerConfig,
        timeout: float = 600,
        on_phase: PhaseCallback | None = None,
        owner: str | None = None,
    ) -> bool:
        """Start or flip in the background. False while another start runs or someone else's claim holds."""
        if self._held_by_other(owner) or self._closed:
            return False
        if not self._op_lock.acquire(blocking=False):
            return False
        self._op_lock.release()
        threading.Thread(
            target=self._apply_in_background,
            args=(config, timeout, on_phase, owner),
            name="lego-carousel-apply",
            daemon=True,
        ).start()
        return True

    def stop(self, grace: float | None = None, owner: str | None = None) -> bool:
        """Stop every server of the carousel; False when a measurement of someone else holds it."""
        if self._held_by_other(owner):
            return False
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
            self._active = None
            self._pending = None
            self._crashed_active = None
        self._stop_slots(slots, grace)
        return True

    def close(self) -> None:
        """Stop everything, the starter too, and refuse new starts (app exit)."""
        self._closed = True
        with self._lock:
            self._claim = None
        self.stop()
        if self.starter is not None:
            self.starter.close()

    def snapshot(self) -> ServerSnapshot:
        """The factory as people see it: a start under way, else the active server, else the last failure."""
        self._drop_dead_slots()
        with self._lock:
            pending = self._slots.get(self._pending) if self._pending is not None else None
            active = self._slots.get(self._active) if self._active is not None else None
            failure = self._last_failure
            crashed = self._crashed_active
        if pending is not None:
            return pending.manager.snapshot()
        if active is not None:
            snap = active.manager.snapshot()
            if failure is not None and failure.error is not None and snap.problem is None:
                snap = replace(snap, problem=failure.error)
            return snap
        if crashed is not None:
            return crashed
        if failure is not None:
            return ServerSnapshot(status="failed", report=failure, problem=failure.error)
        return ServerSnapshot(status="stopped")

    def is_busy(self) -> bool:
        with self._lock:
            pending = self._pending is not None
        return pending or self._op_lock.locked()

    def wait_until_settled(self, timeout: float | None = None) -> StartupReport | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_busy():
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return self.last_report

    @property
    def base_url(self) -> str:
        slot = self._active_slot()
        return slot.manager.base_url if slot else ""

    @property
    def served_name(self) -> str:
        slot = self._active_slot()
        return slot.manager.served_name if slot else ""

    @property
    def api_key(self) -> str | None:
        slot = self._active_slot()
        return slot.manager.api_key if slot else None

    @property
    def last_report(self) -> StartupReport | None:
        slot = self._active_slot()
        if slot is not None:
            return slot.manager.last_report
        return self._last_failure

    @property
    def last_failure(self) -> StartupReport | None:
        """The last Apply that did not make it (refused, or started and failed), until the next success."""
        with self._lock:
            return self._last_failure

    def process_tree(self) -> list[psutil.Process]:
        """The active server's processes."""
        slot = self._active_slot()
        return slot.manager.process_tree() if slot else []

    def all_processes(self) -> list[psutil.Process]:
        """Every process of every carousel server."""
        with self._lock:
            slots = list(self._slots.values())
        return [process for slot in slots for process in slot.manager.process_tree()]

    # -------------------------------------------------------------------- carousel's own API

    def is_warm(self, config: ServerConfig) -> bool:
        """True when applying `config` would be a flip, not a start."""
        return self._warm_slot_for(config) is not None

    def preview(self, config: ServerConfig) -> StartPreview:
        """Before the click: a flip (about a second) or a start (its expected time, and who makes room)."""
        if self.is_warm(config):
            return StartPreview("flip", self._typical_flip_s())
        predicted = self.predict_footprint(config)
        return StartPreview("start", self.expected_start_s(config), tuple(self._evictions_for(predicted)))

    def cards(self) -> list[SlotCard]:
        self._drop_dead_slots()
        with self._lock:
            slots = sorted(self._slots.values(), key=lambda s: (s.state != "active", -s.last_used))
            active = self._slots.get(self._active) if self._active is not None else None
        cards = []
        for slot in slots:
            report = slot.manager.last_report
            cards.append(
                SlotCard(
                    slot_id=slot.slot_id,
                    state=slot.state,
                    config=slot.config,
                    base_url=slot.manager.base_url,
                    pinned=slot.pinned,
                    last_used=slot.last_used,
                    memory_bytes=self._held_bytes(slot),
                    predicted_bytes=slot.predicted.total_bytes,
                    start_kind=slot.start_kind,
                    ready_s=report.ready_s if report else None,
                    differences=tuple(config_mod.changed_flags(active.config, slot.config)) if active else (),
                    background=slot.background,
                )
            )
        return cards

    def flip(self, slot_id: int, owner: str | None = None) -> StartupReport | None:
        """Make a warm slot the active one."""
        with self._lock:
            slot = self._slots.get(slot_id)
        if slot is None:
            return None
        return self.start(slot.config, owner=owner)

    def spare_cores(self) -> list[int]:
        """Cores a background start may use: the last `prestart_cores` of this process's cores."""
        cores = sorted(os.sched_getaffinity(0))
        if self.prestart_cores <= 0 or self.prestart_cores >= len(cores):
            return []
        return cores[-self.prestart_cores :]

    def prestart(self, config: ServerConfig, timeout: float = 600) -> bool:
        """Start `config` in the background, parked when ready, so that a later start of it is a flip.
        Refused (False) when it is already held or starting, when there are no spare cores, when it
        would not fit beside the others without evicting one, or when its settings are refused."""
        cores = self.spare_cores()
        if self._closed or not cores or self._held_or_starting(config):
            return False
        if _quick_check(config, self.backend) is not None:
            return False
        predicted = self.predict_footprint(config)
        if not self._fits(predicted):
            return False
        port = self._free_port_for(config)
        slot = self._new_slot(config.with_values({"port": port}), predicted, timeout, None)
        slot.background = True
        slot.manager.cores = cores
        with self._lock:
            self._slots[slot.slot_id] = slot
            self._reserved_ids.discard(slot.slot_id)
        report = slot.manager.start(slot.config, wait=False, timeout=timeout)
        slot.start_kind = slot.manager.last_start_kind
        if slot.manager.snapshot().status not in ("starting", "ready"):
            self._remove(slot)
            return False
        self._note("prestarted", slot.config)
        threading.Thread(
            target=self._park_when_ready, args=(slot, report), name="lego-carousel-prestart", daemon=True
        ).start()
        return True

    def pin(self, slot_id: int, pinned: bool = True) -> None:
        with self._lock:
            slot = self._slots.get(slot_id)
            if slot is not None:
                slot.pinned = pinned

    def evict(self, slot_id: int, owner: str | None = None) -> bool:
        """Stop one inactive server by hand (never the active one)."""
        if self._held_by_other(owner):
            return False
        with self._lock:
            slot = self._slots.get(slot_id)
            if slot is None or slot.slot_id in (self._active, self._pending):
                return False
            del self._slots[slot_id]
        self._stop_slots([slot])
        return True

    def events(self, since: float = 0.0) -> list[CarouselEvent]:
        with self._lock:
            return [event for event in self._events if event.at > since]

    @contextlib.contextmanager
    def claim(
        self, owner: str, what: str, who: str = "", until: float | None = None
    ) -> Iterator[ClaimedView]:
        """Own the carousel for a measurement; others' starts, flips and stops are refused meanwhile."""
        with self._lock:
            if self._claim is not None and self._claim.owner != owner:
                raise ClaimRefused(self._claim)
            self._claim = Claim(owner=owner, what=what, who=who, until=until)
        try:
            yield ClaimedView(self, owner)
        finally:
            with self._lock:
                if self._claim is not None and self._claim.owner == owner:
                    self._claim = None

    def claimed(self) -> Claim | None:
        with self._lock:
            return self._claim

    # -------------------------------------------------------------------- memory budget

    def predict_footprint(self, config: ServerConfig) -> Footprint:
        """The whole memory a server for `config` should hold: weights, KV cache and runtime."""
        from dashboard.engine import predict as predict_mod

        runtime, measured = self.runtime_share()
        try:
            resolved = models.resolve(config.model, prepare=False)
            shape = models.shape(resolved)
        except models.ModelUnavailable:
            shape = None
        if shape is None:
            return Footprint(total_bytes=runtime, runtime_bytes=runtime, runtime_measured=measured)
        prediction = predict_mod.predict(
            config, shape, self.backend, hardware.total_memory_bytes(), max(hardware.gpu_count(), 1)
        )
        if self.backend == "cuda":
            reserved = sum(d.reserved_bytes or 0 for d in prediction.devices)
            total = reserved or prediction.weights_bytes + (prediction.kv_cache_bytes or 0) + runtime
            return Footprint(total, prediction.weights_bytes, prediction.kv_cache_bytes, runtime, measured)
        kv = prediction.kv_cache_bytes or 0
        total = prediction.weights_bytes + kv + runtime
        return Footprint(total, prediction.weights_bytes, prediction.kv_cache_bytes, runtime, measured)

    def runtime_share(self) -> tuple[int, bool]:
        """Bytes a server holds beyond weights and KV cache, learned from this machine's starts."""
        shares = [
            entry["measured_bytes"] - entry["weights_bytes"] - entry["kv_cache_bytes"]
            for entry in self._footprints()
            if entry.get("backend") == self.backend
            and entry.get("measured_bytes")
            and entry.get("weights_bytes") is not None
            and entry.get("kv_cache_bytes") is not None
        ]
        if shares:
            return int(statistics.median(shares[-20:])), True
        return ASSUMED_RUNTIME_BYTES.get(self.backend, ASSUMED_RUNTIME_BYTES["cpu"]), False

    def prediction_errors(self) -> list[dict[str, Any]]:
        """Each past start: predicted against measured whole footprint (newest last)."""
        return [
            entry
            for entry in self._footprints()
            if entry.get("backend") == self.backend and entry.get("measured_bytes")
        ]

    def expected_start_s(self, config: ServerConfig) -> float | None:
        """Median ready time of earlier cold starts like this one on this machine; None when none."""
        eager = bool(config.get("enforce_eager"))
        entries = [
            e
            for e in self._footprints()
            if e.get("backend") == self.backend and e.get("ready_s") and not e.get("background")
        ]
        same_key = [e["ready_s"] for e in entries if e.get("key") == config_key(config)]
        same_mode = [e["ready_s"] for e in entries if bool(e.get("eager")) == eager]
        for sample in (same_key, same_mode):
            if sample:
                return float(statistics.median(sample[-10:]))
        return None

    def used_bytes(self) -> int:
        with self._lock:
            slots = list(self._slots.values())
        return sum(self._budgeted_bytes(slot) for slot in slots)

    # -------------------------------------------------------------------- orphans

    def reap_orphans(self) -> list[int]:
        """Kill servers left behind by an earlier app on this folder whose process is gone."""
        killed: list[int] = []
        reap_starter(self.workdir)
        slots_dir = self.workdir / "slots"
        if not slots_dir.is_dir():
            return killed
        for folder in sorted(slots_dir.iterdir()):
            if folder.is_dir() and (folder / "server.json").exists():
                manager = ServerManager(folder, backend=self.backend)
                killed += manager.reap_orphans()
        return killed

    # -------------------------------------------------------------------- internals: starting

    def _apply_in_background(
        self, config: ServerConfig, timeout: float, on_phase: PhaseCallback | None, owner: str | None
    ) -> None:
        try:
            self.start(config, wait=True, timeout=timeout, on_phase=on_phase, owner=owner)
        except Exception as exc:  # never lose the reason: the page shows it beside the server still in use
            log.exception("the start of a new server broke")
            problem = Problem(
                "start_broke",
                N_(
                    "The new server could not be started ({error}). "
                    "The server in use, if any, kept answering."
                ),
                params={"error": f"{type(exc).__name__}: {exc}"},
                root_cause=f"{type(exc).__name__}: {exc}",
            )
            self._remember_failure(refused_report(config, problem, self.backend, time.time()))

    def _launch(
        self, config: ServerConfig, timeout: float, on_phase: PhaseCallback | None, replace_same: bool
    ) -> tuple[StartupReport, _Slot | None]:
        now = time.time()
        if self._closed:
            return self._refused(config, _closed_problem(), now), None
        problem = _quick_check(config, self.backend)
        if problem is not None:
            return self._refused(config, problem, now), None
        predicted = self.predict_footprint(config)
        self._make_room(predicted, config if replace_same else None)
        starter_ready = self.starter is not None and self.starter.wait_ready(STARTER_WAIT_S)
        for _attempt in range(3):  # another program may take the free port before the server binds it
            port = self._free_port_for(config)
            report, slot = self._launch_slot(
                config.with_values({"port": port}), predicted, starter_ready, timeout, on_phase
            )
            if slot is not None or report.error is None or report.error.code != "port_busy":
                break
        return report, slot

    def _launch_slot(
        self,
        config: ServerConfig,
        predicted: Footprint,
        starter_ready: bool,
        timeout: float,
        on_phase: PhaseCallback | None,
    ) -> tuple[StartupReport, _Slot | None]:
        slot = self._new_slot(config, predicted, timeout, on_phase, starter_ready)
        slot_id, manager = slot.slot_id, slot.manager
        with self._lock:
            self._slots[slot_id] = slot
            self._reserved_ids.discard(slot_id)
            self._pending = slot_id
        report = manager.start(config, wait=False, timeout=timeout, on_phase=on_phase)
        slot.start_kind = manager.last_start_kind
        if manager.snapshot().status not in ("starting", "ready"):
            with self._lock:
                self._slots.pop(slot_id, None)
                self._pending = None
            self._stop_slots([slot])
            self._remember_failure(report)
            return report, None
        return report, slot

    def _new_slot(
        self,
        config: ServerConfig,
        predicted: Footprint,
        timeout: float,
        on_phase: PhaseCallback | None,
        starter_ready: bool | None = None,
    ) -> _Slot:
        with self._lock:
            slot_id = self._free_slot_id()
            manager = ServerManager(self.workdir / "slots" / str(slot_id), backend=self.backend)
            self._reserved_ids.add(slot_id)  # until the slot joins `_slots`
        if starter_ready is None:
            starter_ready = self.starter is not None and self.starter.ready()
        manager.starter = (
            self.starter if starter_ready else None
        )  # never a starter the carousel did not choose
        manager.extra_argv = list(self.extra_argv)
        manager.extra_env = dict(self.extra_env)
        if self.sleep_mode:
            manager.extra_argv.append("--enable-sleep-mode")
            manager.extra_env.update(SLEEP_ENV)
        return _Slot(
            slot_id, config_key(config), manager, config, predicted, timeout=timeout, on_phase=on_phase
        )

    def _park_when_ready(self, slot: _Slot, report: StartupReport) -> None:
        """A background start's thread: park the server once ready; drop it quietly if it fails."""
        report = slot.manager.wait_until_settled() or slot.manager.last_report or report
        with self._lock:
            still_held = self._slots.get(slot.slot_id) is slot
        if self._closed or not still_held or report is None or not report.ok:
            self._remove(slot)
            if report is not None and report.error is not None:
                self._note("prestart_failed", slot.config, report.error.code)
            return
        slot.measured_bytes = self._measure_bytes(slot)
        self._record_footprint(slot, report)
        self._park(slot)

    def _await_background_start(self, config: ServerConfig, timeout: float) -> None:
        """When a background start of `config` is under way, wait for it: it is nearer than a new one."""
        key = config_key(config)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                starting = [
                    s for s in self._slots.values() if s.key == key and s.background and s.state == "starting"
                ]
            if not starting or self._closed:
                return
            time.sleep(0.1)

    def _settle_then_release(self, slot: _Slot) -> None:
        try:
            self._settle(slot)
        finally:
            self._op_lock.release()

    def _settle(self, slot: _Slot) -> StartupReport:
        """Wait for a new slot's start to end; make it active when ready, drop it when not."""
        report = slot.manager.wait_until_settled() or slot.manager.last_report
        if report is None or not report.ok:
            with self._lock:
                self._slots.pop(slot.slot_id, None)
                if self._pending == slot.slot_id:
                    self._pending = None
            self._stop_slots([slot])
            if slot.start_kind == "forked" and _not_the_configs_fault(report) and self.starter is not None:
                return self._retry_cold(slot)
            if report is not None:
                self._remember_failure(report)
            return report or refused_report(slot.config, _stopped_problem(), self.backend, time.time())
        slot.measured_bytes = self._measure_bytes(slot)
        self._record_footprint(slot, report)
        with self._lock:
            previous = self._slots.get(self._active) if self._active is not None else None
            self._active = slot.slot_id
            self._pending = None
            slot.state = "active"
            slot.last_used = time.time()
            self._last_failure = None
            self._crashed_active = None
            twins = [s for s in self._slots.values() if s.key == slot.key and s is not slot]
        if previous is not None and previous is not slot:
            self._park(previous)
        for twin in twins:  # a fresh start of a config already held replaces the old server
            self._remove(twin)
        self._trim_to_size()
        return replace(report, server_start={"kind": slot.start_kind, "ready_s": report.ready_s})

    def _retry_cold(self, failed: _Slot) -> StartupReport:
        """A forked start failed for no reason of its config: start it cold, and stop forking."""
        last = failed.manager.last_report
        self._note("starter_failed", failed.config, last.log_tail[-1] if last and last.log_tail else "")
        starter, self.starter = self.starter, None
        if starter is not None:
            starter.close()
        report, slot = self._launch(failed.config, failed.timeout, failed.on_phase, replace_same=False)
        return self._settle(slot) if slot is not None else report

    def _flip(self, slot: _Slot, on_phase: PhaseCallback | None, since: float | None = None) -> StartupReport:
        started = time.monotonic() if since is None else since  # a wait for a background start counts
        with self._lock:
            previous = self._slots.get(self._active) if self._active is not None else None
        kind: StartKind = "reused"
        if slot is not previous:
            kind = "woken" if slot.state == "asleep" else "reused"
            if previous is not None and self.sleep_mode:
                self._park(previous)  # on a GPU the woken server needs the memory back first
            self._unpark(slot)
            if not _wait_healthy(slot.manager.base_url, FLIP_HEALTH_TIMEOUT_S):
                problem = Problem(
                    "flip_failed",
                    N_("The warm server for these settings did not answer, so it was removed."),
                )
                self._remove(slot)
                if previous is not None:
                    self._unpark(previous)
                report = refused_report(slot.config, problem, self.backend, time.time())
                self._remember_failure(report)
                return report
            with self._lock:
                self._active = slot.slot_id
                slot.state = "active"
                self._last_failure = None
            if previous is not None and not self.sleep_mode:
                self._park(previous)
        with self._lock:
            slot.last_used = time.time()
        seconds = round(time.monotonic() - started, 3)
        report = slot.manager.last_report or refused_report(slot.config, _stopped_problem(), self.backend, 0)
        return replace(report, server_start={"kind": kind, "ready_s": seconds})

    # -------------------------------------------------------------------- internals: parking

    def _park(self, slot: _Slot) -> None:
        """Make an inactive slot cost nothing: asleep on a GPU, paused on a CPU, else just warm."""
        if self.sleep_mode and _post(slot.manager.base_url, "/sleep?level=1", slot.manager.api_key):
            slot.state = "asleep"
            slot.asleep_bytes = self._gpu_bytes(slot)
            return
        if self.park_inactive and self.backend == "cpu":
            processes = slot.manager.process_tree()
            _signal_tree(processes, signal.SIGSTOP)
            if not _wait_until_stopped(processes):
                # the signal is pending (a process in the middle of a disk read, say): it takes
                # effect when that process is next scheduled, so "paused" is still what it will be
                log.warning("a paused server still had a running process after 2 s")
            slot.state = "paused"
            return
        slot.state = "warm"

    def _unpark(self, slot: _Slot) -> None:
        if slot.state == "asleep":
            _post(slot.manager.base_url, "/wake_up", slot.manager.api_key)
        elif slot.state == "paused":
            _signal_tree(slot.manager.process_tree(), signal.SIGCONT)
        if slot.background:  # it started on spare cores; now it serves, it may use them all
            _set_tree_affinity(slot.manager.process_tree(), sorted(os.sched_getaffinity(0)))
            slot.background = False
            slot.manager.cores = None
        slot.state = "warm"

    # -------------------------------------------------------------------- internals: room

    def _make_room(self, predicted: Footprint, same_config: ServerConfig | None) -> None:
        for slot_id in self._evictions_for(predicted):
            with self._lock:
                slot = self._slots.pop(slot_id, None)
            if slot is not None:
                self._stop_slots([slot])
                self._note("evicted", slot.config, N_("Evicted to make room for a new server."))

    def _evictions_for(self, predicted: Footprint) -> list[int]:
        """Least recently used inactive, unpinned slots to stop so that `predicted` fits."""
        with self._lock:
            slots = list(self._slots.values())
            protected = {self._active, self._pending}
        candidates = sorted(
            (s for s in slots if s.slot_id not in protected and not s.pinned), key=lambda s: s.last_used
        )
        used = sum(self._budgeted_bytes(s) for s in slots)
        count = len(slots)
        chosen: list[int] = []
        for slot in candidates:
            if used + predicted.total_bytes <= self.budget_bytes and count < self.max_servers:
                break
            chosen.append(slot.slot_id)
            used -= self._budgeted_bytes(slot)
            count -= 1
        return chosen

    def _fits(self, predicted: Footprint) -> bool:
        with self._lock:
            slots = list(self._slots.values())
        used = sum(self._budgeted_bytes(s) for s in slots)
        return used + predicted.total_bytes <= self.budget_bytes and len(slots) < self.max_servers

    def _held_or_starting(self, config: ServerConfig) -> bool:
        key = config_key(config)
        with self._lock:
            return any(s.key == key for s in self._slots.values())

    def _trim_to_size(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            protected = {self._active, self._pending}
        extra = len(slots) - self.max_servers
        evictable = [s for s in slots if s.slot_id not in protected and not s.pinned]
        for slot in sorted(evictable, key=lambda s: s.last_used):
            if extra <= 0:
                break
            self._remove(slot)
            self._note("evicted", slot.config, N_("Evicted to make room for a new server."))
            extra -= 1

    def _budgeted_bytes(self, slot: _Slot) -> int:
        if slot.state == "asleep" and slot.asleep_bytes is not None:
            return slot.asleep_bytes
        return slot.measured_bytes or slot.predicted.total_bytes

    def _default_budget(self) -> int:
        total = hardware.total_memory_bytes()
        share = GPU_BUDGET_SHARE if self.backend == "cuda" else CPU_BUDGET_SHARE
        return int(total * share)

    def _held_bytes(self, slot: _Slot) -> int | None:
        if self.backend == "cuda":
            return self._gpu_bytes(slot)
        return _tree_memory(slot.manager.process_tree())

    def _measure_bytes(self, slot: _Slot) -> int | None:
        return self._held_bytes(slot)

    def _gpu_bytes(self, slot: _Slot) -> int | None:
        pids = {process.pid for process in slot.manager.process_tree()}
        usage = hardware.gpu_bytes_by_pid()
        if usage is None:
            return None
        return sum(used for pid, used in usage.items() if pid in pids)

    # -------------------------------------------------------------------- internals: bookkeeping

    def _warm_slot_for(self, config: ServerConfig) -> _Slot | None:
        key = config_key(config)
        with self._lock:
            matches = [s for s in self._slots.values() if s.key == key and s.state in PARKED_OR_ACTIVE]
        alive = [s for s in matches if s.manager.snapshot().status == "ready"]
        return max(alive, key=lambda s: s.last_used) if alive else None

    def _drop_dead_slots(self) -> None:
        """Remove slots whose server died; say so, and keep a crashed active server's last look."""
        with self._lock:
            slots = [
                s
                for s in self._slots.values()
                if s.slot_id != self._pending and not (s.background and s.state == "starting")
            ]
        for slot in slots:
            snap = slot.manager.snapshot()
            if snap.status not in ("failed", "stopped"):
                continue
            with self._lock:
                was_active = self._active == slot.slot_id
                self._slots.pop(slot.slot_id, None)
                if was_active:
                    self._active = None
                    self._crashed_active = snap
            self._stop_slots([slot])
            detail = snap.problem.root_cause if snap.problem else ""
            self._note("crashed", slot.config, detail)

    def _remove(self, slot: _Slot) -> None:
        with self._lock:
            self._slots.pop(slot.slot_id, None)
        self._stop_slots([slot])

    def _stop_slots(self, slots: list[_Slot], grace: float | None = None) -> None:
        for slot in slots:
            if slot.state == "paused":  # a stopped process cannot act on SIGTERM
                _signal_tree(slot.manager.process_tree(), signal.SIGCONT)
            if grace is None:
                slot.manager.stop()
            else:
                slot.manager.stop(grace=grace)

    def _active_slot(self) -> _Slot | None:
        with self._lock:
            return self._slots.get(self._active) if self._active is not None else None

    def _free_slot_id(self) -> int:
        with self._lock:
            used = set(self._slots) | self._reserved_ids
        slot_id = 0
        while slot_id in used:
            slot_id += 1
        return slot_id

    def _free_port_for(self, config: ServerConfig) -> int:
        wanted = int(config.get("port") or config_mod.flags.get("port").vllm_default)
        with self._lock:
            taken = {int(s.config.get("port")) for s in self._slots.values() if s.config.get("port")}
        port = wanted
        while port in taken or not config_mod.port_is_free(port):
            port += 1
        return port

    def _refusal(self, config: ServerConfig, owner: str | None) -> StartupReport | None:
        with self._lock:
            held = self._claim
        if held is None or held.owner == owner:
            return None
        return refused_report(config, held_problem(held), self.backend, time.time())

    def _held_by_other(self, owner: str | None) -> bool:
        with self._lock:
            return self._claim is not None and self._claim.owner != owner

    def _refused(self, config: ServerConfig, problem: Problem, now: float) -> StartupReport:
        report = refused_report(config, problem, self.backend, now)
        self._remember_failure(report)
        return report

    def _remember_failure(self, report: StartupReport) -> None:
        with self._lock:
            self._last_failure = report

    def _note(self, kind: str, config: ServerConfig, detail: str = "") -> None:
        with self._lock:
            self._events.append(CarouselEvent(kind, config, time.time(), detail))
            del self._events[:-50]

    def _typical_flip_s(self) -> float:
        return 1.0 if self.backend == "cuda" else 1.5

    def _footprints(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.workdir / FOOTPRINTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return data if isinstance(data, list) else []

    def _record_footprint(self, slot: _Slot, report: StartupReport) -> None:
        entry = {
            "at": time.time(),
            "backend": self.backend,
            "key": slot.key,
            "eager": bool(slot.config.get("enforce_eager")),
            "kind": slot.start_kind,
            "background": slot.background,
            "ready_s": report.ready_s,
            "predicted_bytes": slot.predicted.total_bytes,
            "weights_bytes": slot.predicted.weights_bytes,
            "kv_cache_bytes": slot.predicted.kv_cache_bytes,
            "measured_bytes": slot.measured_bytes,
        }
        entries = [*self._footprints(), entry][-FOOTPRINTS_KEPT:]
        path = self.workdir / FOOTPRINTS_FILE
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries), encoding="utf-8")
            os.replace(tmp, path)


class ClaimRefused(RuntimeError):
    def __init__(self, claim: Claim) -> None:
        super().__init__(f"the carousel is claimed by {claim.owner}: {claim.what}")
        self.claim = claim


class ClaimedView:
    """The carousel as the claim's owner drives it: every call carries the owner."""

    def __init__(self, carousel: Carousel, owner: str) -> None:
        self._carousel = carousel
        self.owner = owner

    def restart(
        self, config: ServerConfig, wait: bool = True, timeout: float = 600, **kwargs: Any
    ) -> StartupReport:
        return self._carousel.restart(config, wait=wait, timeout=timeout, owner=self.owner, **kwargs)

    start = restart

    def stop(self) -> bool:
        return self._carousel.stop(owner=self.owner)

    def is_warm(self, config: ServerConfig) -> bool:
        return self._carousel.is_warm(config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._carousel, name)


def held_problem(claim: Claim) -> Problem:
    return Problem(
        "server_held",
        N_("{what} is measuring on the factory right now (started by {who}). Try again when it ends."),
        params={"what": claim.what, "who": claim.who or claim.owner},
    )


# ------------------------------------------------------------------------------------------ helpers


def _quick_check(config: ServerConfig, backend: str) -> Problem | None:
    """What can be refused before any process starts: the model and the config's own rules."""
    try:
        resolved = models.resolve(config.model)
    except models.ModelUnavailable as exc:
        return exc.problem
    facts = hardware.model_facts(config, backend, resolved)
    problems = config_mod.validate(config, facts, check_port=False)
    return problems[0] if problems else None


def _wait_healthy(base_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(base_url + "/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    return False


def _post(base_url: str, path: str, api_key: str | None) -> bool:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(trust_env=False, timeout=30.0) as http:
            return http.post(base_url + path, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def _signal_tree(processes: list[psutil.Process], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            process.send_signal(signum)


def _wait_until_stopped(processes: list[psutil.Process], timeout: float = 2.0) -> bool:
    """A stop signal takes effect when each process is next scheduled, later on a busy machine: wait
    until every process of the tree is stopped (or gone), so "paused" is true when it is said."""
    deadline = time.monotonic() + timeout
    while True:
        running = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if process.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                    running.append(process)
        if not running or time.monotonic() >= deadline:
            return not running
        time.sleep(0.02)


def _set_tree_affinity(processes: list[psutil.Process], cores: list[int]) -> None:
    """Every thread of every process, since a process's affinity is only its main thread's."""
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            for thread in process.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, cores)


def _prestart_cores(backend: str) -> int:
    """Cores left for background starts: set by LEGO_FACTORY_PRESTART_CORES, else what a GPU
    measurement leaves free (none on the CPU build, whose engine computes on every core)."""
    raw = os.environ.get("LEGO_FACTORY_PRESTART_CORES", "").strip()
    if raw.isdigit():
        return int(raw)
    if backend != "cuda":
        return 0
    return max(0, len(os.sched_getaffinity(0)) - GPU_MEASUREMENT_CORES)


def _tree_memory(processes: list[psutil.Process]) -> int | None:
    """Proportional set size of the processes (shared libraries counted once), else resident size."""
    total = 0
    for process in processes:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", 0) or info.rss
        except psutil.AccessDenied:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        except psutil.Error:
            continue
    return total or None


def _env_int(name: str) -> int | None:
    with contextlib.suppress(ValueError):
        value = int(os.environ.get(name, "") or 0)
        return value if value > 0 else None
    return None


def _env_gib(name: str) -> int | None:
    with contextlib.suppress(ValueError):
        value = float(os.environ.get(name, "") or 0)
        return int(value * GIB) if value > 0 else None
    return None


def _closed_problem() -> Problem:
    return Problem("manager_closed", N_("The app is shutting down, so no server can start now."))


def _stopped_problem() -> Problem:
    return Problem("start_stopped", N_("The start was stopped before the server was ready."))


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def _not_the_configs_fault(report: StartupReport | None) -> bool:
    """A failure the log does not pin on the settings (the process just ended)."""
    if report is None or report.error is None:
        return True
    return report.error.code in ("engine_failed", "server_exited")
