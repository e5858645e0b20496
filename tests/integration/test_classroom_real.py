"""The API key and the open doors against the real CPU vLLM (one server start).

The key reaches vLLM through VLLM_API_KEY: /v1 answers 401 without it and 200 with it, while no process
of the server shows it on its command line and its log never contains it. The paths the key leaves
open are read from the running server, and the guarded prefixes match the installed vLLM's.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dashboard.classroom import doors

pytestmark = pytest.mark.server

KEY = "sk-classroom-test-4d1f"


def test_guarded_prefixes_match_the_installed_vllm():
    from vllm.entrypoints.serve.middleware import authenticate

    assert tuple(authenticate.GUARDED_PREFIX) == doors.GUARDED_PREFIXES


def test_the_key_guards_v1_through_the_environment_and_never_shows(real_server):
    manager = real_server({"api_key": KEY})
    base = manager.base_url
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(base + "/v1/models").status_code == 401
        answer = http.get(base + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200
        assert http.get(base + "/metrics").status_code == 200  # what the key does not guard
    for process in manager.process_tree():
        assert KEY not in " ".join(process.cmdline())
        assert "--api-key" not in " ".join(process.cmdline()).split()
    log = Path(manager.snapshot().log_path).read_text(errors="replace")
    assert KEY not in log
    report = manager.last_report
    assert report is not None and KEY not in report.command_text
    assert report.command_text.startswith("VLLM_API_KEY=<your-key> ")

    served = doors.served_paths(base)
    assert "/tokenize" in served and "/v1/chat/completions" in served  # the server's own list
    open_paths = doors.unguarded_paths(served)
    assert not any(path.startswith("/v1") for path in open_paths)
    with httpx.Client(trust_env=False, timeout=10) as http:
        for path in doors.ALWAYS_OPEN:  # each really answers without the key (never a 401)
            assert http.get(base + path).status_code != 401, path
