"""How the factory shows values: round ladders for wide sliders, vLLM's own default kept implicit,
numbers in the reader's language."""

from __future__ import annotations

from dashboard.engine import flags
from dashboard.ui import i18n as ui_i18n
from dashboard.ui import widgets


def test_wide_sliders_offer_round_values_that_are_whole_steps() -> None:
    belt = flags.get("max_model_len")
    values = widgets.ladder(belt)
    assert values[0] == 64 and values[-1] == 131072
    assert {512, 1024, 2048, 4096, 8192} <= set(values)
    assert all(v % 64 == 0 for v in values)
    assert len(values) < 40


def test_ladder_keeps_a_suggested_value_reachable() -> None:
    belt = flags.get("max_model_len")
    assert 2688 in widgets.ladder(belt, [2688])
    assert 999_999 not in widgets.ladder(belt, [999_999])  # outside the flag's range: left out


def test_narrow_sliders_keep_every_step() -> None:
    assert not widgets.uses_ladder(flags.get("tensor_parallel_size"))
    assert widgets.uses_ladder(flags.get("max_num_seqs"))


def test_repeating_vllms_default_leaves_the_flag_to_vllm() -> None:
    chunked = flags.get("enable_chunked_prefill")
    assert widgets.to_flag_value(chunked, True, "cpu") is None  # vLLM's default: left off the command line
    assert widgets.to_flag_value(chunked, False, "cpu") is False
    lanes = flags.get("max_num_seqs")
    assert widgets.to_flag_value(lanes, 128, "cpu") == 128  # the factory's own start value stays explicit


def test_let_vllm_choose_clears_the_value() -> None:
    forklift = flags.get("max_num_batched_tokens")
    assert widgets.needs_auto_switch(forklift, "cpu")
    assert widgets.to_flag_value(forklift, 4096, "cpu", auto=True) is None
    assert widgets.to_flag_value(forklift, 4096, "cpu", auto=False) == 4096


def test_changed_compares_what_the_server_really_uses() -> None:
    chunked = flags.get("enable_chunked_prefill")
    assert not widgets.is_changed(chunked, None, True)  # absent means vLLM's default, which is on
    assert widgets.is_changed(chunked, None, False)


def test_numbers_follow_the_language() -> None:
    assert ui_i18n.number(46592, lang="vi") == "46.592"
    assert ui_i18n.number(46592, lang="en") == "46,592"
    assert ui_i18n.number(22.75, 2, lang="vi") == "22,75"
    assert widgets.number_text(0.0625, "en") == "0.0625"


def test_tensor_parallel_slider_stops_at_the_gpus_the_machine_has():
    from dashboard.engine import flags
    from dashboard.ui.widgets import slider_max

    tp = flags.get("tensor_parallel_size")
    assert slider_max(tp, gpu_count=2) == 2
    assert slider_max(tp, gpu_count=0) == 1
    assert slider_max(tp, gpu_count=64) == tp.max
    assert slider_max(flags.get("max_num_seqs"), gpu_count=2) == flags.get("max_num_seqs").max
