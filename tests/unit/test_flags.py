"""The flag catalog: loading, typing values, and turning them into vLLM's words."""

from __future__ import annotations

import pytest

from dashboard.engine import flags


def test_catalog_loads_every_flag_into_a_known_group_and_backend():
    catalog = flags.catalog()
    assert len(catalog) >= 20
    for flag in catalog.values():
        assert flag.group in flags.GROUPS
        assert set(flag.backends) <= set(flags.BACKENDS)
        assert flag.cli.startswith("--")


def test_numeric_flags_have_a_range_that_holds_their_defaults():
    for flag in flags.catalog().values():
        if flag.kind not in ("int", "float"):
            continue
        assert flag.min is not None and flag.max is not None and flag.min < flag.max, flag.name
        for value in (flag.default, flag.cpu_default, flag.cuda_default):
            if value is not None:
                assert flag.min <= value <= flag.max, flag.name


def test_choice_flags_start_on_one_of_their_choices():
    for flag in flags.catalog().values():
        if flag.kind == "choice":
            for value in (flag.default, flag.cpu_default, flag.cuda_default):
                assert value is None or value in flag.choices, flag.name


def test_unknown_flag_names_the_known_ones():
    with pytest.raises(KeyError, match="max_model_len"):
        flags.get("max_modle_len")


@pytest.mark.parametrize(
    ("text", "expected"), [("2048", 2048), ("2k", 2000), (" 4_096 ", 4096), (1024, 1024), (1024.0, 1024)]
)
def test_int_flags_accept_vllms_human_numbers(text, expected):
    assert flags.get("max_model_len").coerce(text) == expected


@pytest.mark.parametrize("bad", ["abc", "1.5", True, 10.5])
def test_int_flags_refuse_what_is_not_a_whole_number(bad):
    with pytest.raises(flags.FlagValueError):
        flags.get("max_num_seqs").coerce(bad)


def test_out_of_range_values_are_refused_with_the_flag_attached():
    flag = flags.get("max_num_seqs")
    with pytest.raises(flags.FlagValueError) as caught:
        flag.coerce(0)
    assert caught.value.flag is flag
    assert "at least" in caught.value.reason


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("off", False), ("1", True), (False, False)])
def test_bool_flags_read_words_and_bools(text, expected):
    assert flags.get("enforce_eager").coerce(text) is expected


def test_bool_flags_refuse_other_words():
    with pytest.raises(flags.FlagValueError):
        flags.get("enforce_eager").coerce("maybe")


def test_choice_flags_refuse_values_outside_the_list():
    with pytest.raises(flags.FlagValueError, match="choose one of"):
        flags.get("dtype").coerce("int3")


def test_bool_argv_is_silent_at_vllms_default_and_uses_the_no_form_to_turn_off():
    prefix = flags.get("enable_prefix_caching")  # vLLM default: on
    eager = flags.get("enforce_eager")  # vLLM default: off
    assert prefix.argv(True) == []
    assert prefix.argv(False) == ["--no-enable-prefix-caching"]
    assert eager.argv(True) == ["--enforce-eager"]
    assert eager.argv(False) == []


def test_kv_cache_size_in_gib_becomes_whole_bytes():
    flag = flags.get("kv_cache_memory_gib")
    assert flag.argv(1.0) == ["--kv-cache-memory-bytes", "1073741824"]
    assert flag.argv(0.0625) == ["--kv-cache-memory-bytes", "67108864"]


def test_the_smallest_warehouse_is_small_enough_to_make_a_long_conveyor_fail():
    # 64 MiB holds about 2,900 SmolLM2 tokens: max-model-len 8192 must then fail with vLLM's estimate.
    assert flags.get("kv_cache_memory_gib").min <= 0.0625


def test_empty_text_and_quantization_none_leave_the_option_out():
    assert flags.get("api_key").argv("") == []
    assert flags.get("quantization").argv("none") == []
    assert flags.get("quantization").argv("fp8") == ["--quantization", "fp8"]


def test_floats_are_written_without_trailing_zeros():
    assert flags.get("gpu_memory_utilization").argv(0.30) == ["--gpu-memory-utilization", "0.3"]


def test_by_cli_finds_a_flag_by_its_option_its_no_form_or_the_option_it_replaced():
    assert flags.by_cli("--max-model-len").name == "max_model_len"
    assert flags.by_cli("--no-enable-prefix-caching").name == "enable_prefix_caching"
    assert flags.by_cli("--disable-log-requests").name == "enable_log_requests"
    assert flags.by_cli("--no-such-option") is None


def test_start_value_prefers_the_backends_own_default():
    eager = flags.get("enforce_eager")
    assert eager.start_value("cpu") is True
    assert eager.start_value("cuda") is False
    assert flags.get("gpu_memory_utilization").start_value("cpu") is None


def test_in_group_lists_the_warehouse_controls():
    names = [flag.name for flag in flags.in_group("warehouse")]
    assert names == ["gpu_memory_utilization", "kv_cache_memory_gib"]
