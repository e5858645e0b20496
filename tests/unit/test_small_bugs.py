"""Item 7 of the classroom issue: small bugs, each with a test that failed before its fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dashboard.engine import flags, models
from dashboard.engine.config import ModelFacts, ServerConfig, parse_assignments, validate


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("no-enable-prefix-caching=true", {"enable_prefix_caching": False}),
        ("--no-enable-prefix-caching=true", {"enable_prefix_caching": False}),
        ("no-enable-prefix-caching=false", {"enable_prefix_caching": True}),
        ("disable-log-requests=true", {"enable_log_requests": False}),
        ("--disable-log-requests=true", {"enable_log_requests": False}),
        ("--disable-log-requests=false", {"enable_log_requests": True}),
        ("enable-prefix-caching=true", {"enable_prefix_caching": True}),
    ],
)
def test_negative_options_in_set_turn_the_option_off(item, expected):
    assert parse_assignments([item]) == expected


def test_no_form_of_a_number_flag_is_refused():
    with pytest.raises(ValueError):
        parse_assignments(["no-max-model-len=1"])


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e400", float("nan"), float("inf")])
def test_float_flags_refuse_nan_inf_and_overflow(raw):
    flag = flags.get("kv_cache_memory_gib")
    with pytest.raises(flags.FlagValueError):
        flag.coerce(raw)


@pytest.mark.parametrize("raw", ["inf", "nan", "infk", "1e400", float("inf"), float("nan"), "9" * 400])
def test_int_flags_refuse_nan_inf_and_overflow_without_a_traceback(raw):
    flag = flags.get("max_model_len")
    with pytest.raises(flags.FlagValueError):
        flag.coerce(raw)


def test_validate_reports_nan_in_a_config_as_a_problem():
    config = ServerConfig(model="embedded", values={"kv_cache_memory_gib": math.nan})
    problems = validate(config, ModelFacts(), check_port=False)
    assert [p.code for p in problems] == ["out_of_range"]


def test_set_with_inf_is_a_value_error_not_an_overflow():
    with pytest.raises(ValueError):
        parse_assignments(["max_model_len=inf"])


def test_relative_model_folder_resolves_to_an_absolute_path(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    resolved = models.resolve("./my-model")
    assert Path(resolved.path).is_absolute()
    assert Path(resolved.path) == folder.resolve()
    assert models.resolve("my-model").path == str(folder.resolve())


# ------------------------------------------------------------------------------------------ the API key


def test_the_api_key_goes_through_the_environment_not_the_command_line(tmp_path):
    from dashboard.engine import config as config_mod
    from dashboard.engine.config import default_config
    from dashboard.engine.server import ServerManager

    config = default_config("cpu").with_values({"api_key": "sk-class-secret"})
    words = config_mod.argv(config, "/m", "m")
    assert "--api-key" not in words and "sk-class-secret" not in words
    manager = ServerManager(tmp_path)
    env = manager._child_env(config)
    assert env["VLLM_API_KEY"] == "sk-class-secret"
    assert "VLLM_API_KEY" not in manager._child_env(default_config("cpu"))
    assert config_mod.command_prefix(config) == "VLLM_API_KEY=<your-key> "
