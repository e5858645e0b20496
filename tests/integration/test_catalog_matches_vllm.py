"""The flag catalog against the installed vLLM's own argument parser (no server needed).

If vLLM renames, removes or retypes an option, these tests name the catalog entry to fix.
"""

from __future__ import annotations

import argparse
import json
from functools import cache

import pytest

from dashboard.engine import flags
from dashboard.engine.config import ServerConfig, argv, default_config

CATALOG = list(flags.catalog().values())
IDS = [flag.name for flag in CATALOG]


@cache
def vllm_parser() -> argparse.ArgumentParser:
    try:  # the module moved between vLLM releases
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def vllm_action(option: str) -> argparse.Action | None:
    for action in vllm_parser()._actions:
        if option in action.option_strings:
            return action
    return None


@pytest.mark.parametrize("flag", CATALOG, ids=IDS)
def test_every_catalog_option_exists_in_vllm(flag):
    assert vllm_action(flag.cli) is not None, f"{flag.cli} is not a vLLM option any more"


@pytest.mark.parametrize(
    "flag", [f for f in CATALOG if f.replaces], ids=[f.name for f in CATALOG if f.replaces]
)
def test_replaced_options_are_really_gone(flag):
    assert vllm_action(flag.replaces) is None, f"{flag.replaces} still exists in vLLM"


def test_the_seeds_disable_log_requests_is_gone():
    assert vllm_action("--disable-log-requests") is None


@pytest.mark.parametrize(
    "flag", [f for f in CATALOG if f.kind == "bool"], ids=[f.name for f in CATALOG if f.kind == "bool"]
)
def test_bool_flags_are_on_off_pairs(flag):
    action = vllm_action(flag.cli)
    assert isinstance(action, argparse.BooleanOptionalAction)
    assert "--no-" + flag.cli.removeprefix("--") in action.option_strings


def allowed_choices(flag: flags.Flag) -> set[str]:
    action = vllm_action(flag.cli)
    if action.choices:
        return {str(choice) for choice in action.choices}
    if flag.name == "quantization":
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

        return set(QUANTIZATION_METHODS)
    if flag.name == "optimization_level":
        from vllm.config.vllm import OptimizationLevel

        return {str(int(level)) for level in OptimizationLevel}
    if flag.name == "host":
        return set(flag.choices)  # any address is allowed; the catalog offers two
    if is_json_flag(flag):
        return {choice for choice in flag.choices if choice != "none" and json_choice_parses(flag, choice)}
    raise AssertionError(f"no list of allowed values known for {flag.cli}")


def is_json_flag(flag: flags.Flag) -> bool:
    """Options whose value is a JSON object (--speculative-config): "none" leaves them off."""
    return any(choice.startswith("{") for choice in flag.choices)


def json_choice_parses(flag: flags.Flag, choice: str) -> bool:
    """vLLM's parser reads the JSON into its config and keeps every key the catalog sets."""
    parsed = getattr(vllm_parser().parse_args(["--model", "m", flag.cli, choice]), vllm_action(flag.cli).dest)
    loaded = json.loads(choice)
    plain = as_plain(parsed)
    return all(plain.get(key) == value for key, value in loaded.items())


def as_plain(parsed: object) -> dict:
    """A parsed JSON option as a dict of the keys it was given (vLLM returns a dict or a config object)."""
    if isinstance(parsed, dict):
        return parsed
    return {key: getattr(parsed, key) for key in vars(parsed) if not key.startswith("_")}


@pytest.mark.parametrize(
    "flag", [f for f in CATALOG if f.kind == "choice"], ids=[f.name for f in CATALOG if f.kind == "choice"]
)
def test_choice_flags_offer_only_values_vllm_accepts(flag):
    offered = {choice for choice in flag.choices if not (choice == "none" and flag.vllm_default == "none")}
    assert offered <= allowed_choices(flag), offered - allowed_choices(flag)


NUMERIC = [f for f in CATALOG if f.kind in ("int", "float")]


@pytest.mark.parametrize("flag", NUMERIC, ids=[f.name for f in NUMERIC])
def test_numeric_flags_are_parsed_by_vllm_as_the_same_type(flag):
    value = flag.min if flag.min is not None else 1
    words = flag.argv(flag.coerce(value))
    parsed = vllm_parser().parse_args(["--model", "m", *words])
    got = getattr(parsed, vllm_action(flag.cli).dest)
    expected_type = int if flag.kind == "int" or flag.name == "kv_cache_memory_gib" else float
    assert isinstance(got, expected_type) and not isinstance(got, bool), (flag.cli, got)
    assert float(got) == float(words[1])


def every_flag_moved(backend: str) -> ServerConfig:
    """A config where every flag differs from vLLM's default, so each one reaches the command line."""
    moved = {}
    for flag in CATALOG:
        if flag.kind == "bool":
            moved[flag.name] = not flag.vllm_default
        elif flag.kind == "choice":
            moved[flag.name] = next(c for c in flag.choices if c not in ("none", str(flag.vllm_default)))
        elif flag.kind == "text":
            moved[flag.name] = "secret-key" if flag.secret else "pika"
        else:
            moved[flag.name] = flag.max if flag.name != "port" else 8199
    return default_config(backend).with_values(moved)


def test_the_whole_command_line_parses_and_vllm_reads_every_value():
    config = every_flag_moved("cuda")
    words = argv(config, "/models/smol", "pika")
    parsed = vllm_parser().parse_args(words[3:])  # drop "python -m module"
    assert parsed.model == "/models/smol"
    for flag in CATALOG:
        got = getattr(parsed, vllm_action(flag.cli).dest)
        value = config.get(flag.name)
        if flag.name == "kv_cache_memory_gib":
            assert got == int(value * 1024**3)
        elif flag.name == "api_key":
            assert got is None and "--api-key" not in words  # the key travels in VLLM_API_KEY
        elif flag.name == "served_model_name":
            assert got == [value]  # vLLM keeps it as a list
        elif flag.kind == "choice" and flag.name == "optimization_level":
            assert int(got) == int(value)
        elif is_json_flag(flag):
            loaded = json.loads(value)
            assert {k: v for k, v in as_plain(got).items() if k in loaded} == loaded, (flag.cli, got)
        else:
            assert got == value, (flag.cli, got, value)
