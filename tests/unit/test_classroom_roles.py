"""The classroom's core: roles, the presenter key, the visitors' rate limit, model choices, dangers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.classroom import doors, roles
from dashboard.engine.config import default_config
from dashboard.ui import measure_jobs as jobs


def test_the_person_at_the_machine_is_the_presenter():
    assert roles.decide_role("127.0.0.1", None, None) == roles.PRESENTER
    assert roles.decide_role("::1", None, "k") == roles.PRESENTER


def test_a_browser_from_the_network_is_a_visitor_unless_it_brings_the_key():
    key = roles.new_presenter_key()
    assert roles.decide_role("192.0.2.7", None, key) == roles.VISITOR
    assert roles.decide_role("192.0.2.7", "wrong", key) == roles.VISITOR
    assert roles.decide_role("192.0.2.7", key[:-1], key) == roles.VISITOR
    assert roles.decide_role("192.0.2.7", key, key) == roles.PRESENTER


def test_no_key_set_means_no_link_makes_a_presenter():
    assert roles.decide_role("192.0.2.7", "", None) == roles.VISITOR
    assert roles.decide_role("192.0.2.7", None, None) == roles.VISITOR
    assert roles.decide_role(None, "x", None) == roles.VISITOR


def test_presenter_keys_are_fresh_and_long():
    keys = {roles.new_presenter_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) >= 32 for key in keys)


def test_the_key_is_read_once_and_removed_from_the_environment(monkeypatch):
    monkeypatch.setattr(roles, "_process_key", [])
    monkeypatch.setenv(roles.KEY_ENV, "abc")
    assert roles.presenter_key() == "abc"
    import os

    assert roles.KEY_ENV not in os.environ  # servers started later never inherit it
    assert roles.presenter_key() == "abc"
    roles.set_presenter_key(None)
    assert roles.presenter_key() is None


def test_presenter_link_has_the_documented_form():
    assert roles.presenter_link("192.0.2.2", 8501, "K") == "http://192.0.2.2:8501/?presenter=K"


def test_sharing_is_off_unless_asked():
    assert not roles.is_shared({})
    assert roles.is_shared({roles.SHARE_ENV: "1"})
    assert not roles.is_shared({roles.SHARE_ENV: "0"})


def test_rate_limit_lets_n_orders_a_minute_then_says_how_long_to_wait():
    now = [1000.0]
    limiter = roles.RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.try_acquire("v1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire("v1")
    assert 59.0 <= wait <= 60.0
    assert limiter.try_acquire("v2") == 0.0  # each visitor has their own allowance
    now[0] += 60.5
    assert limiter.try_acquire("v1") == 0.0


def test_rate_limit_of_zero_stops_visitor_orders():
    limiter = roles.RateLimiter(per_minute=0)
    assert limiter.try_acquire("v") > 0


def test_model_box_accepts_the_built_in_model_and_hub_ids():
    assert roles.check_model_choice("embedded", None) == ("embedded", None)
    assert roles.check_model_choice("Qwen/Qwen3-0.6B", None) == ("Qwen/Qwen3-0.6B", None)


@pytest.mark.parametrize("path", ["/etc", "/no/such/folder", "../..", "~/.ssh", "/etc/passwd"])
def test_paths_give_the_same_answer_whether_they_exist_or_not(path, tmp_path):
    _, without_root = roles.check_model_choice(path, None)
    _, outside = roles.check_model_choice(path, tmp_path)
    assert without_root is not None and without_root.code == "local_models_off"
    assert outside is not None and outside.code == "model_outside_root"
    assert path not in outside.text("en") and "exist" not in outside.text("en")


def test_folders_inside_the_allowed_root_are_accepted(tmp_path: Path):
    (tmp_path / "tiny").mkdir()
    text, problem = roles.check_model_choice("tiny", tmp_path)
    assert problem is None and text == str((tmp_path / "tiny").resolve())
    text, problem = roles.check_model_choice(str(tmp_path / "tiny"), tmp_path)
    assert problem is None
    _, escaped = roles.check_model_choice("tiny/../../x", tmp_path)
    assert escaped is not None


def test_dangerous_switches_are_named_and_need_confirmation():
    safe = default_config("cpu")
    assert doors.dangers(safe) == []
    risky = safe.with_values({"trust_remote_code": True, "host": "0.0.0.0", "api_key": "k"})
    risky = type(risky)(model="Qwen/Qwen3-0.6B", values=risky.values)
    codes = [danger.code for danger in doors.dangers(risky)]
    assert codes == ["remote_code", "outside_model", "open_host"]
    assert [d.code for d in doors.unconfirmed(risky, {"remote_code"})] == ["outside_model", "open_host"]
    assert doors.unconfirmed(risky, codes) == []


def test_unguarded_paths_are_everything_outside_v1():
    paths = ["/v1/models", "/v1/chat/completions", "/tokenize", "/detokenize", "/health", "/version"]
    shown = doors.unguarded_paths(paths)
    assert "/tokenize" in shown and "/metrics" in shown and "/docs" in shown
    assert not any(path.startswith("/v1") for path in shown)


def test_the_whole_table_never_opens_the_host_or_runs_remote_code():
    for backend in ("cpu", "cuda"):
        plan = dict(jobs.table_plan(backend))
        assert True not in plan.get("trust_remote_code", [])
        assert "0.0.0.0" not in plan.get("host", [])
        for flag, values in plan.items():
            assert doors.unsafe_sweep_values(flag, values) == []


def test_a_sweep_that_would_open_the_door_is_refused_before_it_starts():
    request = jobs.JobRequest(
        sweeps=(("trust_remote_code", (False, True)),),
        base=default_config("cpu"),
        workload=jobs.Workload.synthetic(16, 4),
        plan=jobs.LoadPlan(concurrency=1, requests=1),
        mode="table",
        backend="cpu",
    )
    reason = jobs.SweepJob().start(request, manager=object())
    assert reason is not None and "--trust-remote-code" in reason


def test_a_sessions_key_box_gets_a_placeholder_and_apply_keeps_the_real_key():
    running = default_config("cpu").with_values({"api_key": "sk-real"})
    shown = doors.hide_secrets(running)
    assert shown.get("api_key") == doors.HIDDEN and "sk-real" not in repr(shown)
    assert doors.reveal_secrets(shown, running).get("api_key") == "sk-real"
    assert doors.reveal_secrets(shown.with_values({"api_key": "new"}), running).get("api_key") == "new"
    assert doors.reveal_secrets(shown, None).get("api_key") is None


# ------------------------------------------------------------------------------ a measurement owns the server


def test_a_page_measurement_claims_the_server_and_drives_it_through_the_claim():
    import contextlib
    import threading

    from tests.unit.test_measure_jobs import RefusingManager, request

    class ClaimingManager(RefusingManager):
        def __init__(self) -> None:
            super().__init__()
            self.claims: list[dict] = []
            self.held = threading.Event()

        @contextlib.contextmanager
        def claim(self, owner, what, who="", until=None):
            self.claims.append({"owner": owner, "what": what, "who": who, "until": until})
            self.held.set()
            view = self

            class View:
                def restart(self, config, wait=True, timeout=600, **kwargs):
                    view.restarts_by_owner.append(owner)
                    return view.restart(config, wait=wait, timeout=timeout)

                def __getattr__(self, name):
                    return getattr(view, name)

            try:
                yield View()
            finally:
                self.held.clear()

    manager = ClaimingManager()
    manager.restarts_by_owner = []
    job = jobs.SweepJob()
    assert job.start(request(values=(4, 16)), manager) is None
    job.wait(30)
    assert len(manager.claims) == 1
    claim = manager.claims[0]
    assert claim["what"] == "--max-num-seqs" and claim["who"] == "presenter"
    assert claim["until"] is not None
    assert manager.restarts_by_owner and set(manager.restarts_by_owner) == {claim["owner"]}
    assert not manager.held.is_set()  # released at the end


def test_a_tuning_claims_the_server_in_the_presenters_name(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    from dashboard.ui import tune_view

    claims: list[dict] = []

    class Manager:
        def snapshot(self):
            return SimpleNamespace(config=None)

        @contextlib.contextmanager
        def claim(self, owner, what, who="", until=None):
            claims.append({"owner": owner, "what": what, "who": who, "until": until})
            yield self

    monkeypatch.setattr(tune_view, "run_tune", lambda *args, **kwargs: {"best": None})
    monkeypatch.setattr(tune_view, "WarmAwareView", lambda server: server)
    question = SimpleNamespace(minutes=5, goal=SimpleNamespace(key="p50-e2e"))
    request = SimpleNamespace(question=question, base=None, workload=None)
    tune_view.TuneJob()._run(request, Manager(), None)
    assert len(claims) == 1
    assert claims[0]["who"] == "presenter"  # "started by the presenter", not by an internal name
    assert claims[0]["what"] == "Tune for me" and claims[0]["until"] is not None
