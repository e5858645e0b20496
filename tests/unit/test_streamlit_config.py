"""The app's Streamlit settings that keep a class's many sessions working."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_a_changed_source_file_never_unloads_the_running_apps_modules() -> None:
    server = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["server"]
    assert server["fileWatcherType"] == "none"
    assert server["runOnSave"] is False
