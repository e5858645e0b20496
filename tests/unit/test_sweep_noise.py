"""A sweep measures its own noise: the first value started again (fresh) and judged against it
(fake server and load generator; the rules are dashboard.measure.stats)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

from dashboard.engine.config import default_config
from dashboard.engine.report import StartupReport
from dashboard.measure import loadgen, sweep
from dashboard.measure.client import RequestTiming
from dashboard.measure.loadgen import LoadPlan, Workload


class AnsweringManager:
    """Every start succeeds; remembers each config and whether a fresh start was asked for."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, bool]] = []
        self.current = None
        self.base_url, self.served_name, self.api_key = "http://unused", "m", None

    def restart(self, config, wait=True, timeout=600, fresh=False) -> StartupReport:
        self.current = config
        self.starts.append((config.get("max_num_seqs"), fresh))
        return StartupReport(
            config=config.to_dict(), command=["python"], started_at=0.0, backend="cpu", ready_s=30.0
        )

    def snapshot(self):
        return SimpleNamespace(pid=None)


def fake_load(centre_for):
    rng = random.Random(3)

    def run_load(base_url, model, workload, plan, api_key=None, stop=None, **_):
        centre = centre_for()
        timings = [
            RequestTiming(
                ok=True, error=None, text="x", ttft_ms=50.0, e2e_ms=centre * math.exp(rng.gauss(0, 0.03))
            )
            for _ in range(plan.requests)
        ]
        return loadgen.summarize(timings, plan, workload, 1.0, 0.0)

    return run_load


def test_the_first_value_is_started_again_fresh_and_the_verdict_names_the_noise(monkeypatch):
    manager = AnsweringManager()
    monkeypatch.setattr(
        sweep.loadgen,
        "run_load",
        fake_load(lambda: 1000.0 if manager.current.get("max_num_seqs") == 4 else 500.0),
    )
    monkeypatch.setattr(sweep.metrics, "try_scrape", lambda url: None)
    result = sweep.run_sweep(
        "max_num_seqs",
        [4, 64],
        default_config("cpu"),
        Workload.synthetic(16, 4),
        manager,
        plan=LoadPlan(concurrency=1, requests=6),
        noise_pair=True,
    )
    assert manager.starts == [(4, False), (64, False), (4, True)]
    assert result.noise is not None and result.noise["value"] == 4 and result.noise["measured"]
    assert len(result.rows) == 2  # the repeat is not a row of the sweep
    assert result.rows[0].samples["e2e_ms"] and len(result.rows[0].samples["e2e_ms"]) == 6
    text = result.verdict("en")
    assert "made each answer 1.9" in text or "made each answer 2.0" in text
    assert "x faster here (interval " in text
    assert "6 orders each" in text and "noise here ±" in text
    assert "{" not in result.verdict("vi")


def test_a_change_inside_the_noise_is_no_clear_change(monkeypatch):
    manager = AnsweringManager()
    monkeypatch.setattr(sweep.loadgen, "run_load", fake_load(lambda: 1000.0))
    monkeypatch.setattr(sweep.metrics, "try_scrape", lambda url: None)
    result = sweep.run_sweep(
        "max_num_seqs",
        [4, 64],
        default_config("cpu"),
        Workload.synthetic(16, 4),
        manager,
        plan=LoadPlan(concurrency=1, requests=4),
        noise_pair=True,
    )
    assert "no clear change" in result.verdict("en")


class CarouselLike(AnsweringManager):
    """Also takes background starts, as the carousel does; remembers which values were asked early."""

    def __init__(self) -> None:
        super().__init__()
        self.prestarted: list[int] = []

    def prestart(self, config, timeout=600) -> bool:
        self.prestarted.append(config.get("max_num_seqs"))
        return True


def test_a_sweep_through_its_view_asks_the_carousel_to_start_each_next_value_early(monkeypatch):
    carousel = CarouselLike()
    monkeypatch.setattr(sweep.loadgen, "run_load", fake_load(lambda: 500.0))
    monkeypatch.setattr(sweep.metrics, "try_scrape", lambda url: None)
    sweep.run_sweep(
        "max_num_seqs",
        [4, 16, 64],
        default_config("cpu"),
        Workload.synthetic(16, 4),
        sweep.ManagerView(carousel),  # as the CLI and the page's job drive it
        plan=LoadPlan(concurrency=1, requests=2),
    )
    assert carousel.prestarted == [16, 64]  # each value asked for while the one before was measured
    assert sweep.ManagerView(AnsweringManager()).prestart(default_config("cpu")) is False
