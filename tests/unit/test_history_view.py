"""The history page's logic: key figures, before/after pairs of Apply, better or worse, the report zip."""

from __future__ import annotations

import io
import zipfile

import pytest

from dashboard.engine.config import default_config
from dashboard.history.records import RowRecord, RunRecord
from dashboard.i18n import translator
from dashboard.ui import history_view as view

BASE = default_config("cpu").to_dict()
LANES_16 = default_config("cpu").with_values({"max_num_seqs": 16}).to_dict()


def run(run_id: int, kind: str, config=BASE, summary=None, status="done", rows=()) -> RunRecord:
    return RunRecord(
        id=run_id,
        kind=kind,
        created_at="2026-11-24T08:00:00+00:00",
        status=status,
        config=config,
        summary=summary,
        rows=tuple(RowRecord(i + 1, "2026-11-24T08:00:00+00:00", data) for i, data in enumerate(rows)),
        row_count=len(rows),
    )


def sweep_run() -> RunRecord:
    rows = [
        {"flag": "enable_prefix_caching", "value": value, "ok": True, "ttft_p50_ms": t, "itl_p50_ms": 30.0,
         "e2e_p50_ms": e, "output_tokens_per_s": 25.0, "ready_s": 35.0, "process_rss_bytes": 3 * 1024**3}
        for value, t, e in ((False, 160.0, 700.0), (True, 95.0, 640.0))
    ]  # fmt: skip
    summary = {"flag": "enable_prefix_caching", "verdict_en": "Turning on made it faster.", "measured": 2}
    return run(9, "sweep", summary=summary, rows=rows)


def test_key_figures_pick_the_numbers_that_describe_each_kind() -> None:
    assert view.key_figures(run(1, "apply", summary={"ready_s": 35.2, "kv_cache_tokens": 46592})) == {
        "ready_s": 35.2,
        "kv_cache_tokens": 46592.0,
    }
    load = run(2, "load", summary={"levels": [{"concurrency": 1, "ttft_p50_ms": 90.0, "e2e_p50_ms": 650.0}]})
    assert view.key_figures(load) == {"ttft_ms": 90.0, "e2e_ms": 650.0}
    text = view.key_figures_text(run(3, "playground", summary={"ttft_ms": 96.4, "e2e_ms": 1540.0}),
                                 lambda v, d: f"{v:.{d}f}")  # fmt: skip
    assert text == "first token 96.4 ms · answer 1540 ms"


def comparison(before_ms: list[float], after_ms: list[float]) -> dict:
    from dashboard.measure.compare import BeforeAfter, Probe, Side

    key = Probe().key
    pair = BeforeAfter(Probe(), Side(key, tuple(before_ms)), Side(key, tuple(after_ms)), BASE, LANES_16)
    return pair.to_dict()


def test_only_the_users_apply_runs_with_a_comparison_become_cards_and_sweep_restarts_never_do() -> None:
    runs = [
        run(1, "startup", BASE, {"ready_s": 41.5}),  # a sweep's restart
        run(2, "apply", LANES_16, {"ready_s": 35.0}),  # an Apply recorded before comparisons existed
        run(3, "apply", LANES_16, {"ready_s": 45.3, "comparison": comparison([300, 310], [305, 300])}),
        run(4, "startup", LANES_16, {"ready_s": 44.0}),
    ]
    [(card_run, entry)] = view.apply_comparisons(runs)
    assert card_run.id == 3
    assert entry.verdict == "unclear"


def test_newest_apply_card_comes_first() -> None:
    runs = [run(i, "apply", LANES_16, {"comparison": comparison([300, 301], [302, 303])}) for i in (1, 2, 3)]
    assert [r.id for r, _entry in view.apply_comparisons(runs)] == [3, 2, 1]


def test_a_start_time_gap_inside_the_machines_noise_is_not_painted_worse() -> None:
    assert view.judgement("ready_s", 41.5, 45.3) == "same"
    assert view.judgement("ready_s", 41.5, 70.0) == "worse"


def test_every_figure_shown_has_a_label_and_unlabelled_ones_are_left_out() -> None:
    assert view.field_label("e2e_ms.p50") == "Whole answer (ms) · middle"
    assert view.field_label("ttft_ms_median") == "First token (ms) · middle"
    assert view.field_label("kv_cache_tokens") == "Warehouse tokens"
    assert view.field_label("comparison.probe.max_tokens") is None
    a = run(1, "apply", summary={"ready_s": 40.0, "comparison": {"percent_change": 3.0}})
    b = run(2, "apply", summary={"ready_s": 41.0, "comparison": {"percent_change": 5.0}})
    assert [row.metric for row in view.delta_rows(a, b)] == ["ready_s"]


@pytest.mark.parametrize(
    ("metric", "a", "b", "expected"),
    [
        ("e2e_ms.p50", 700.0, 600.0, "better"),
        ("ttft_p50_ms", 90.0, 120.0, "worse"),
        ("requests_per_s", 1.0, 2.0, "better"),
        ("kv_cache_tokens", 46592, 23296, "worse"),
        ("ready_s", 35.0, 35.3, "same"),
        ("ready_s", 41.5, 45.3, "same"),
        ("concurrency", 1, 4, ""),
    ],
)
def test_a_change_is_judged_by_which_way_is_good_for_that_number(metric, a, b, expected) -> None:
    assert view.judgement(metric, a, b) == expected


def test_delta_rows_compare_the_numbers_both_runs_share() -> None:
    a = run(1, "playground", summary={"ttft_ms": 100.0, "e2e_ms": 1500.0, "text": "hi"})
    b = run(2, "playground", summary={"ttft_ms": 80.0, "e2e_ms": 1800.0})
    rows = {row.metric: row for row in view.delta_rows(a, b)}
    assert set(rows) == {"ttft_ms", "e2e_ms"}
    assert rows["ttft_ms"].percent == pytest.approx(-20.0) and rows["ttft_ms"].judgement == "better"
    assert rows["e2e_ms"].judgement == "worse"
    figure = view.comparison_figure(list(rows.values()))
    assert list(figure.data[0].marker.color) == ["#00852B", "#D01012"]


def test_a_sweep_run_draws_one_point_per_value_on_each_chart() -> None:
    figure = view.run_figure(sweep_run(), translator("en"))
    assert list(figure.data[0].x) == ["off", "on"]
    assert all(sum(y is not None for y in trace.y) == 2 for trace in figure.data)


def test_the_report_zip_holds_both_languages_and_links_the_charts_it_carries() -> None:
    images = {"charts/run-9-vi.png": b"\x89PNG vi", "charts/run-9-en.png": b"\x89PNG en"}
    archive = zipfile.ZipFile(io.BytesIO(view.report_zip(sweep_run(), images)))
    assert sorted(archive.namelist()) == ["charts/run-9-en.png", "charts/run-9-vi.png", "report.md"]
    report = archive.read("report.md").decode()
    vi, en = report.split("\n---\n")
    assert "## Tiếng Việt" in vi and "charts/run-9-vi.png" in vi and "run-9-en" not in vi
    assert "## English" in en and "charts/run-9-en.png" in en


def test_without_pictures_the_report_keeps_its_tables() -> None:
    archive = zipfile.ZipFile(io.BytesIO(view.report_zip(sweep_run(), {})))
    assert archive.namelist() == ["report.md"]
    assert "Whole answer (median, ms)" in archive.read("report.md").decode()


def test_charts_export_to_png_in_both_languages_when_a_browser_is_here() -> None:
    pytest.importorskip("kaleido")
    images = view.chart_pngs(sweep_run(), ("vi", "en"), translator)
    if not images:
        pytest.skip("plotly cannot export images on this machine (no Chrome for kaleido)")
    assert sorted(images) == ["charts/run-9-en.png", "charts/run-9-vi.png"]
    assert all(data.startswith(b"\x89PNG") for data in images.values())


def test_the_serve_command_names_the_model_by_its_hub_id_and_hides_the_key() -> None:
    config = default_config("cpu").with_values({"max_model_len": 1024, "api_key": "secret-key"}).to_dict()
    command = view.serve_command(run(1, "apply", config))
    assert command.startswith("VLLM_API_KEY=<your-key> vllm serve HuggingFaceTB/SmolLM2-135M-Instruct ")
    assert "--max-model-len 1024" in command and "--kv-cache-memory-bytes 1073741824" in command
    assert "secret-key" not in command and "--api-key" not in command


def test_a_stored_verdict_is_read_in_the_readers_language_even_if_saved_before_its_translation() -> None:
    summary = {
        "flag": "enable_prefix_caching",
        "verdict_message": "Turning on {flag} made each answer {ratio}x faster here.",
        "verdict_params": {"flag": "--enable-prefix-caching", "ratio": 6.73},
        "verdict_vi": "Turning on --enable-prefix-caching made each answer 6.7x faster here.",
    }
    stored = run(9, "sweep", summary=summary)
    english = view.verdict_of(stored, "en")
    vietnamese = view.verdict_of(stored, "vi")
    assert english == "Turning on --enable-prefix-caching made each answer 6.7x faster here."
    assert vietnamese != english and "6,7" in vietnamese
    assert view.verdict_of(run(10, "sweep", summary={"verdict_en": "Kept."}), "en") == "Kept."


def test_a_value_with_a_fraction_is_written_with_the_reader_s_decimal_mark() -> None:
    assert view.value_label(0.9, lang="vi") == "0,9"
    assert view.value_label(0.9, lang="en") == "0.9"
    assert view.value_label(2.0, lang="vi") == "2"
    assert view.value_label(True, translator("vi"), lang="vi") == translator("vi")("on")
