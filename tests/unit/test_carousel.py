"""The carousel's bookkeeping with stand-in servers: which server makes room, what a claim refuses,
what counts as the same setting, and what the runtime share is learned from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard.engine import carousel as carousel_mod
from dashboard.engine.carousel import Carousel, ClaimRefused, Footprint, _Slot, config_key
from dashboard.engine.config import default_config
from dashboard.engine.report import ServerSnapshot

GIB = 1024**3


class StandInServer:
    def __init__(self, status: str = "ready") -> None:
        self.status = status
        self.stopped = False
        self.base_url = "http://127.0.0.1:1"
        self.served_name = "m"
        self.api_key = None
        self.last_report = None

    def snapshot(self) -> ServerSnapshot:
        return ServerSnapshot(status="stopped" if self.stopped else self.status)

    def stop(self, grace: float | None = None) -> None:
        self.stopped = True

    def process_tree(self) -> list:
        return []


def make_carousel(tmp_path: Path, **kwargs) -> Carousel:
    kwargs.setdefault("budget_bytes", 10 * GIB)
    kwargs.setdefault("max_servers", 3)
    return Carousel(tmp_path, backend="cpu", use_starter=False, **kwargs)


def add_slot(carousel: Carousel, slot_id: int, seqs: int, state: str, used: float, gib: float = 3) -> _Slot:
    config = default_config("cpu").with_values({"max_num_seqs": seqs})
    slot = _Slot(slot_id, config_key(config), StandInServer(), config, Footprint(int(gib * GIB)))
    slot.state, slot.last_used, slot.measured_bytes = state, used, int(gib * GIB)
    carousel._slots[slot_id] = slot
    if state == "active":
        carousel._active = slot_id
    return slot


def test_the_port_does_not_make_a_different_setting() -> None:
    base = default_config("cpu")
    assert config_key(base.with_values({"port": 8011})) == config_key(base.with_values({"port": 8012}))
    assert config_key(base) != config_key(base.with_values({"max_num_seqs": 7}))


def test_room_is_made_by_evicting_the_least_recently_used_inactive_server(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=30)
    add_slot(carousel, 1, 8, "paused", used=10)
    add_slot(carousel, 2, 12, "paused", used=20)
    assert carousel._evictions_for(Footprint(3 * GIB)) == [1]  # 9 GiB held + 3 > 10, and 3 servers max


def test_a_pinned_server_and_the_active_one_are_never_evicted(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=1)
    add_slot(carousel, 1, 8, "paused", used=10).pinned = True
    add_slot(carousel, 2, 12, "paused", used=20)
    assert carousel._evictions_for(Footprint(3 * GIB)) == [2]
    carousel.pin(2)
    assert carousel._evictions_for(Footprint(3 * GIB)) == []


def test_nothing_is_evicted_while_the_new_server_fits(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path, max_servers=4, budget_bytes=20 * GIB)
    add_slot(carousel, 0, 4, "active", used=1)
    add_slot(carousel, 1, 8, "paused", used=2)
    assert carousel._evictions_for(Footprint(3 * GIB)) == []
    assert carousel.used_bytes() == 6 * GIB


def test_evicting_by_hand_stops_an_inactive_server_but_not_the_active_one(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    active = add_slot(carousel, 0, 4, "active", used=1)
    waiting = add_slot(carousel, 1, 8, "paused", used=2)
    assert not carousel.evict(0) and not active.manager.stopped
    assert carousel.evict(1) and waiting.manager.stopped
    assert [card.slot_id for card in carousel.cards()] == [0]


def test_a_warm_setting_is_previewed_as_a_flip_and_a_new_one_as_a_start(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=1)
    add_slot(carousel, 1, 8, "paused", used=2)
    warm = default_config("cpu").with_values({"max_num_seqs": 8, "port": 9999})
    assert carousel.is_warm(warm)
    assert carousel.preview(warm).kind == "flip"
    new = default_config("cpu").with_values({"max_num_seqs": 16})
    preview = carousel.preview(new)
    assert preview.kind == "start" and preview.seconds is None  # no start measured here yet


def test_a_claim_refuses_everyone_but_its_owner(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=1)
    other = default_config("cpu").with_values({"max_num_seqs": 8})
    with carousel.claim("job-1", "sweep of max_num_seqs", who="the presenter") as view:
        refused = carousel.start(other, owner="someone-else")
        assert refused.error is not None and refused.error.code == "server_held"
        assert "sweep of max_num_seqs" in refused.error.text("en")
        assert not carousel.apply(other, owner="someone-else")
        assert not carousel.stop(owner="someone-else")
        assert not carousel.evict(0, owner="someone-else")
        with pytest.raises(ClaimRefused), carousel.claim("job-2", "another sweep"):
            pass
        assert view.owner == "job-1" and carousel.claimed().who == "the presenter"
    assert carousel.claimed() is None


def test_a_dead_inactive_server_is_removed_and_reported(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=1)
    dead = add_slot(carousel, 1, 8, "paused", used=2)
    dead.manager.status = "failed"
    assert [card.slot_id for card in carousel.cards()] == [0]
    assert [event.kind for event in carousel.events()] == ["crashed"]


def test_the_runtime_share_is_learned_from_this_machines_starts(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path)
    runtime, learned = carousel.runtime_share()
    assert not learned and runtime == carousel_mod.ASSUMED_RUNTIME_BYTES["cpu"]
    entries = [
        {
            "backend": "cpu",
            "measured_bytes": 4 * GIB,
            "weights_bytes": GIB // 4,
            "kv_cache_bytes": GIB,
            "ready_s": 40,
            "eager": True,
        },
        {
            "backend": "cpu",
            "measured_bytes": 5 * GIB,
            "weights_bytes": GIB // 4,
            "kv_cache_bytes": GIB,
            "ready_s": 50,
            "eager": True,
        },
        {
            "backend": "cuda",
            "measured_bytes": 90 * GIB,
            "weights_bytes": GIB,
            "kv_cache_bytes": GIB,
            "ready_s": 9,
        },
    ]
    (tmp_path / "footprints.json").write_text(json.dumps(entries))
    runtime, learned = carousel.runtime_share()
    assert learned and runtime == int(
        3.25 * GIB
    )  # the median of 2.75 and 3.75 GiB; the GPU start is not ours
    assert carousel.expected_start_s(default_config("cpu").with_values({"enforce_eager": True})) == 45
    assert carousel.expected_start_s(default_config("cpu").with_values({"enforce_eager": False})) is None


def test_an_apply_whose_start_breaks_keeps_the_reason_and_the_server_in_use(
    tmp_path: Path, monkeypatch
) -> None:
    carousel = make_carousel(tmp_path)
    add_slot(carousel, 0, 4, "active", used=1)

    def broken_start(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(carousel, "start", broken_start)
    carousel._apply_in_background(default_config("cpu"), 60, None, None)
    assert carousel.last_failure.error.code == "start_broke"
    assert "no space left on device" in carousel.last_failure.error.text("en")
    snap = carousel.snapshot()
    assert snap.status == "ready" and snap.problem.code == "start_broke"


def test_a_background_start_is_refused_without_spare_cores(tmp_path: Path) -> None:
    carousel = make_carousel(tmp_path, prestart_cores=0)
    add_slot(carousel, 0, 4, "active", used=1)
    assert carousel.spare_cores() == []
    assert carousel.prestart(default_config("cpu").with_values({"max_num_seqs": 9})) is False
    assert list(carousel._slots) == [0]


def test_spare_cores_are_the_last_ones_and_never_all_of_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(carousel_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert make_carousel(tmp_path, prestart_cores=2).spare_cores() == [4, 5]
    assert make_carousel(tmp_path, prestart_cores=6).spare_cores() == []


def test_the_cpu_build_leaves_no_core_for_background_starts_and_a_gpu_keeps_four(monkeypatch) -> None:
    monkeypatch.delenv("LEGO_FACTORY_PRESTART_CORES", raising=False)
    monkeypatch.setattr(carousel_mod.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert carousel_mod._prestart_cores("cpu") == 0
    assert carousel_mod._prestart_cores("cuda") == 12
    monkeypatch.setenv("LEGO_FACTORY_PRESTART_CORES", "1")
    assert carousel_mod._prestart_cores("cpu") == 1


def test_a_background_start_never_evicts_and_never_doubles_a_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(carousel_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(carousel_mod, "_quick_check", lambda config, backend: None)
    carousel = make_carousel(tmp_path, prestart_cores=2, max_servers=2)
    active = add_slot(carousel, 0, 4, "active", used=1)
    add_slot(carousel, 1, 8, "paused", used=2)
    monkeypatch.setattr(carousel, "predict_footprint", lambda config: Footprint(1 * GIB))
    assert carousel.prestart(default_config("cpu").with_values({"max_num_seqs": 16})) is False  # full
    carousel._slots.pop(1)
    assert carousel.prestart(active.config) is False  # already held
    assert list(carousel._slots) == [0]


def test_a_forked_worker_finds_the_cores_vllm_chose_in_any_of_its_three_forms() -> None:
    from dashboard.engine.starter import _cores_from_env

    assert _cores_from_env({"GOMP_CPU_AFFINITY": "0 1 3"}) == [0, 1, 3]
    assert _cores_from_env({"OMP_PLACES": "{2,5}"}) == [2, 5]
    assert _cores_from_env({"KMP_AFFINITY": "granularity=fine,explicit,proclist=[0,4]"}) == [0, 4]
    assert _cores_from_env({"KMP_AFFINITY": "granularity=fine"}) == []


def test_the_starter_leaves_the_cpu_worker_out_on_a_gpu_build(monkeypatch) -> None:
    """Importing vLLM's CPU worker swaps torch.cuda's streams for placeholders: a GPU server forked
    after it fails while profiling its CUDA graphs."""
    from dashboard.engine import starter

    monkeypatch.setattr(starter, "_is_cpu_build", lambda: False)
    assert "vllm.v1.worker.cpu_worker" not in starter.modules_to_preload()
    monkeypatch.setattr(starter, "_is_cpu_build", lambda: True)
    assert "vllm.v1.worker.cpu_worker" in starter.modules_to_preload()
