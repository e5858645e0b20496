"""The history outlives the app: runs written by one process are listed by a fresh app in another, and a
run whose process died mid-way shows as interrupted with its rows kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.engine import models
from dashboard.history.store import HistoryStore

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")

WRITER = textwrap.dedent(
    """
    from dashboard.engine.config import default_config
    from dashboard.history.store import HistoryStore

    store = HistoryStore()
    config = default_config("cpu").to_dict()
    done = store.create_run("sweep", config, label="kept sweep")
    store.add_row(done, {"flag": "max_num_seqs", "value": 4, "ok": True, "e2e_p50_ms": 700.0})
    store.add_row(done, {"flag": "max_num_seqs", "value": 16, "ok": True, "e2e_p50_ms": 650.0})
    store.finish_run(done, {"flag": "max_num_seqs", "verdict_en": "Kept.", "verdict_vi": "Kept."})
    cut = store.create_run("load", config, label="cut short")
    store.add_row(cut, {"concurrency": 1, "e2e_p50_ms": 640.0})
    # the process ends here without finishing "cut short", as if the app was killed
    """
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shared_models = models.embedded_dir().parent
    if shared_models.exists():
        (tmp_path / "models").symlink_to(shared_models)
    monkeypatch.setenv("LEGO_FACTORY_HOME", str(tmp_path))
    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


def test_runs_written_by_another_process_are_listed_by_a_fresh_app(home: Path) -> None:
    env = {**os.environ, "LEGO_FACTORY_HOME": str(home)}
    subprocess.run([sys.executable, "-c", WRITER], cwd=ROOT, env=env, check=True, timeout=120)

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lang"] = "en"
    at.run()
    at.switch_page("app_pages/history.py").run()
    assert not at.exception, at.exception

    table = at.dataframe[0].value
    status = dict(zip(table["Label"], table["Status"], strict=True))
    assert status == {"cut short": "interrupted", "kept sweep": "done"}
    assert dict(zip(table["Label"], table["Rows"], strict=True)) == {"cut short": 1, "kept sweep": 2}
    with HistoryStore(home / "history.sqlite3") as store:
        cut = store.list_runs(kind="load")[0]
        assert cut.status == "interrupted"
        assert store.get_run(cut.id).rows[0].data["e2e_p50_ms"] == 640.0
