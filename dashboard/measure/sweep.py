"""A sweep: one flag, several values, the same workload measured on a freshly restarted server each time.

For each value the server is restarted with that value (everything else as in the base config), the
workload runs with the load generator, and one row is produced: latencies (p50), throughput, how long
the start took, KV cache size and memory. A value whose start fails becomes a row carrying the error;
the sweep goes on with the next value. Each row goes to `on_row` as soon as it is measured, so the
history can save it before the next restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from babel.numbers import format_decimal

from dashboard.engine import flags
from dashboard.engine.config import ServerConfig
from dashboard.engine.report import StartupReport
from dashboard.i18n import N_, normalize, translate
from dashboard.measure import fresh as fresh_start
from dashboard.measure import loadgen, memory, metrics, stats
from dashboard.measure.loadgen import LoadPlan, LoadResult, Workload

SweepProgress = Callable[[int, int, str], None]  # (value index, number of values, stage)
STAGES = ("starting", "measuring", "done")
CLEAR_DIFFERENCE = 0.10  # below 10% the verdict says "no clear difference"


class ServerLike(Protocol):  # what the sweep needs from dashboard.engine.server.ServerManager
    def restart(self, config: ServerConfig, wait: bool = True, timeout: float = 600) -> StartupReport: ...

    @property
    def base_url(self) -> str: ...

    @property
    def served_name(self) -> str: ...

    @property
    def api_key(self) -> str | None: ...

    def snapshot(self) -> Any: ...


@dataclass
class SweepRow:
    flag: str
    value: Any
    ok: bool  # the server started and the workload ran
    error: dict[str, Any] | None = None  # Problem.to_dict() of a failed start, or a plain message
    ready_s: float | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    kv_cache_gib: float | None = None
    ttft_p50_ms: float | None = None
    itl_p50_ms: float | None = None
    tpot_p50_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_mean_ms: float | None = None
    requests_per_s: float | None = None
    output_tokens_per_s: float | None = None
    sent: int = 0
    request_errors: int = 0
    process_rss_bytes: int | None = None  # peak resident memory of the server's process tree
    gpu_used_bytes: list[int] = field(default_factory=list)  # per GPU, after the workload
    prefix_cache_hit_rate: float | None = None  # over the workload's requests
    command: str = ""
    load: dict[str, Any] | None = None  # LoadResult.to_dict(with_timings=False)
    samples: dict[str, list[float]] = field(default_factory=dict)  # per order: ttft_ms, tpot_ms, e2e_ms
    # how the server for this row came to answer: {"kind": cold|forked|reused|woken, "ready_s": s}
    server_start: dict[str, Any] | None = None

    @property
    def measured(self) -> bool:
        return self.ok and self.e2e_p50_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepResult:
    flag: str
    values: list[Any]
    base_config: dict[str, Any]
    workload: dict[str, Any]
    plan: dict[str, Any]
    started_at: float
    duration_s: float = 0.0
    rows: list[SweepRow] = field(default_factory=list)
    stopped: bool = False
    noise: dict[str, Any] | None = None  # the first value started again (A/A): its row and noise band

    def verdict(self, lang: str | None = "en") -> str:
        if self.noise is not None:
            return noise_verdict(self.rows, self.flag, self.noise, lang)
        return verdict(self.rows, self.flag, lang)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [row.to_dict() for row in self.rows]
        data["verdict_en"] = self.verdict("en")
        data["verdict_vi"] = self.verdict("vi")
        return data


class ManagerView:
    """A ServerManager as run_sweep sees it, passing `on_phase` to every restart so a caller can show
    the startup phases (the CLI prints them; the page's job records them)."""

    def __init__(self, manager: Any, on_phase: Callable[[Any], None] | None = None) -> None:
        self._manager = manager
        self._on_phase = on_phase

    def restart(
        self, config: ServerConfig, wait: bool = True, timeout: float = 600, fresh: bool = False
    ) -> StartupReport:
        return fresh_start.restart(self._manager, config, timeout, fresh=fresh, on_phase=self._on_phase)

    @property
    def base_url(self) -> str:
        return self._manager.base_url

    @property
    def served_name(self) -> str:
        return self._manager.served_name

    @property
    def api_key(self) -> str | None:
        return self._manager.api_key

    def snapshot(self) -> Any:
        return self._manager.snapshot()

    def prestart(self, config: ServerConfig, timeout: float = 600) -> bool:
        """The wrapped carousel's background start of a coming value; False for a plain manager."""
        prestart = getattr(self._manager, "prestart", None)
        return bool(prestart(config, timeout=timeout)) if prestart is not None else False


# ---------------------------------------------------------------------------------------------- running


_NO_VALUE = object()  # no next value to start ahead


def run_sweep(
    flag: str,
    values: Sequence[Any],
    base_config: ServerConfig,
    workload: Workload,
    manager: ServerLike,
    on_progress: SweepProgress | None = None,
    on_row: Callable[[SweepRow], None] | None = None,
    plan: LoadPlan | None = None,
    warmup: int = 1,
    start_timeout: float = 600,
    stop: threading.Event | None = None,
    restore: bool = False,
    noise_pair: bool = False,
) -> SweepResult:
    """Measure `workload` once per value of `flag`. `plan` defaults to 3 requests one at a time;
    `warmup` requests per value run first and are left out (the first prefill of a fresh server is slow).
    With `restore`, the server is restarted with `base_config` at the end. With `noise_pair`, the first
    measured value is started again at the end (a fresh start) and measured: how far apart the same
    settings came out is the noise the verdict must clear."""
    plan = plan or LoadPlan(concurrency=1, requests=3)
    if warmup and not plan.warmup:
        plan = LoadPlan(**{**asdict(plan), "warmup": warmup})
    flags.get(flag)  # unknown flag: KeyError before any restart
    result = SweepResult(
        flag=flag,
        values=list(values),
        base_config=base_config.to_dict(),
        workload=workload.to_dict(),
        plan=asdict(plan),
        started_at=time.time(),
    )
    total = len(result.values)
    for index, value in enumerate(result.values):
        if stop is not None and stop.is_set():
            result.stopped = True
            break
        _progress(on_progress, index, total, "starting")
        upcoming = result.values[index + 1] if index + 1 < total else _NO_VALUE
        row = _measure_value(
            flag, value, base_config, workload, manager, plan, start_timeout, stop, upcoming=upcoming
        )
        result.rows.append(row)
        if on_row is not None:
            on_row(row)
        _progress(on_progress, index + 1, total, "done")
    if noise_pair and not (stop is not None and stop.is_set()):
        result.noise = _noise_pair(result, base_config, workload, manager, plan, start_timeout, stop)
    if restore:
        manager.restart(base_config, wait=True, timeout=start_timeout)
    result.duration_s = time.time() - result.started_at
    return result


def _progress(callback: SweepProgress | None, index: int, total: int, stage: str) -> None:
    if callback is not None:
        with contextlib.suppress(Exception):  # a broken progress bar must not end the sweep
            callback(index, total, stage)


def _measure_value(
    flag: str,
    value: Any,
    base_config: ServerConfig,
    workload: Workload,
    manager: ServerLike,
    plan: LoadPlan,
    start_timeout: float,
    stop: threading.Event | None,
    fresh: bool = False,
    upcoming: Any = _NO_VALUE,
) -> SweepRow:
    try:
        config = base_config.with_values({flag: value})
    except (ValueError, KeyError) as exc:
        return SweepRow(flag, value, ok=False, error={"message": str(exc)})
    report = fresh_start.restart(manager, config, start_timeout, fresh=fresh)
    row = _row_from_report(flag, value, report)
    if not report.ok:
        return row
    if upcoming is not _NO_VALUE:
        _prestart(manager, base_config, flag, upcoming, start_timeout)
    pid = getattr(manager.snapshot(), "pid", None)
    base_url = manager.base_url
    before = metrics.try_scrape(base_url)
    rss_ready = memory.process_tree_rss(pid)
    try:
        load = loadgen.run_load(base_url, manager.served_name, workload, plan, manager.api_key, stop=stop)
    except Exception as exc:  # the load test itself broke (not a request error): keep the row
        row.ok = False
        row.error = {"message": f"{type(exc).__name__}: {exc}"}
        return row
    after = metrics.try_scrape(base_url)
    _fill_load(row, load)
    rss_loaded = memory.process_tree_rss(pid)
    known = [v for v in (rss_ready, rss_loaded) if v is not None]
    row.process_rss_bytes = max(known) if known else None
    row.gpu_used_bytes = _gpu_used_bytes()
    if before is not None and after is not None:
        row.prefix_cache_hit_rate = metrics.prefix_hit_rate_between(before, after)
        if row.kv_cache_tokens is None:
            row.kv_cache_tokens = after.kv_cache_tokens()
    row.ok = load.ok > 0
    if not row.ok:
        row.error = {"message": "; ".join(f"{count} x {text}" for text, count in load.error_kinds.items())}
    return row


def _prestart(manager: ServerLike, base_config: ServerConfig, flag: str, value: Any, timeout: float) -> None:
    """Let a carousel start the next value in the background while this one is measured. It does so
    only on cores the measurement does not use and only when it fits beside the others (never on the
    CPU build, whose engine computes on every core); a plain server manager cannot."""
    prestart = getattr(manager, "prestart", None)
    if prestart is None:
        return
    with contextlib.suppress(ValueError, KeyError):
        prestart(base_config.with_values({flag: value}), timeout=timeout)


def _row_from_report(flag: str, value: Any, report: StartupReport) -> SweepRow:
    return SweepRow(
        flag=flag,
        value=value,
        ok=report.ok,
        error=report.error.to_dict() if report.error else None,
        ready_s=report.ready_s,
        kv_cache_tokens=report.kv_cache_tokens,
        max_concurrency=report.max_concurrency,
        kv_cache_gib=report.kv_cache_gib,
        command=report.command_text,
        server_start=_server_start(report),
    )


def _fill_load(row: SweepRow, load: LoadResult) -> None:
    row.ttft_p50_ms = load.ttft_ms.p50
    row.itl_p50_ms = load.itl_ms.p50
    row.tpot_p50_ms = load.tpot_ms.p50
    row.e2e_p50_ms = load.e2e_ms.p50
    row.e2e_mean_ms = load.e2e_ms.mean
    row.requests_per_s = load.requests_per_s
    row.output_tokens_per_s = load.output_tokens_per_s
    row.sent = load.sent
    row.request_errors = load.errors
    good = [t for t in load.timings if t.ok and t.ttft_ms is not None]
    row.samples = {
        "ttft_ms": [t.ttft_ms for t in good],
        "tpot_ms": [v for v in (t.mean_itl_ms() for t in good) if v is not None],
        "e2e_ms": [t.e2e_ms for t in good],
    }
    row.load = load.to_dict(with_timings=False)


def _gpu_used_bytes() -> list[int]:
    nvml = memory.load_nvml()
    if nvml is None:
        return []
    try:
        return [gpu.used_bytes for gpu in memory.sample_gpus(nvml, set())]
    except Exception:  # NVML hiccup: memory is optional in a row
        return []


# ---------------------------------------------------------------------------------------------- verdict


def _number(value: float, lang: str) -> str:
    return format_decimal(round(value, 1), format="#,##0.0", locale=lang)


def _shown_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def verdict_message(rows: Sequence[SweepRow], flag: str) -> tuple[str, dict[str, Any]]:
    """The verdict as (English msgid, params); `ratio` is a float, formatted by `verdict`."""
    cli = flags.get(flag).cli if flag in flags.catalog() else flag
    measured = [row for row in rows if row.measured]
    if len(measured) < 2:
        return N_("Not enough values of {flag} started and answered to compare them."), {"flag": cli}
    is_switch = all(isinstance(row.value, bool) for row in measured)
    if is_switch and {row.value for row in measured} == {True, False}:
        off = next(row for row in measured if row.value is False)
        on = next(row for row in measured if row.value is True)
        if _within_spread(off, on):
            return N_(
                "Turning on {flag} changed nothing clear here: the gap is smaller than the spread of "
                "the measurements."
            ), {"flag": cli}
        return _switch_verdict(cli, off.e2e_p50_ms, on.e2e_p50_ms)
    first, last = measured[0], measured[-1]
    params = {"flag": cli, "low": _shown_value(first.value), "high": _shown_value(last.value)}
    ratio = (last.e2e_p50_ms or 0) / (first.e2e_p50_ms or 1)
    if abs(ratio - 1) >= CLEAR_DIFFERENCE and _within_spread(first, last):
        return N_(
            "Going from {flag} {low} to {high} changed nothing clear here: the gap is smaller than the "
            "spread of the measurements."
        ), params
    if abs(ratio - 1) < CLEAR_DIFFERENCE:
        return N_("Going from {flag} {low} to {high} made no clear difference here (under 10%)."), params
    if ratio > 1:
        return N_("Going from {flag} {low} to {high} made each answer {ratio}x slower here."), {
            **params,
            "ratio": ratio,
        }
    return N_("Going from {flag} {low} to {high} made each answer {ratio}x faster here."), {
        **params,
        "ratio": 1 / ratio,
    }


def _e2e(row: SweepRow, key: str) -> float | None:
    summary = (row.load or {}).get("e2e_ms") or {}
    return summary.get(key)


def _within_spread(a: SweepRow, b: SweepRow) -> bool:
    """True when the slower value's median is still inside the faster value's usual range (its p90):
    a gap that small is noise on a busy machine, not an effect of the flag."""
    fast, slow = sorted((a, b), key=lambda row: row.e2e_p50_ms or 0)
    fast_p90 = _e2e(fast, "p90")
    return fast_p90 is not None and (slow.e2e_p50_ms or 0) <= fast_p90


def _switch_verdict(cli: str, off_ms: float | None, on_ms: float | None) -> tuple[str, dict[str, Any]]:
    ratio = (on_ms or 0) / (off_ms or 1)
    if abs(ratio - 1) < CLEAR_DIFFERENCE:
        return N_("Turning on {flag} made no clear difference here (under 10%)."), {"flag": cli}
    if ratio > 1:
        return N_("Turning on {flag} made each answer {ratio}x slower here."), {"flag": cli, "ratio": ratio}
    return N_("Turning on {flag} made each answer {ratio}x faster here."), {"flag": cli, "ratio": 1 / ratio}


def verdict(rows: Sequence[SweepRow], flag: str, lang: str | None = "en") -> str:
    """One sentence from the numbers (median answer time, first value against last, or off against on)."""
    message, params = verdict_message(rows, flag)
    lang = normalize(lang)
    if "ratio" in params:
        params = {**params, "ratio": _number(params["ratio"], lang)}
    return translate(message, lang, **params)


def _server_start(report: StartupReport) -> dict[str, Any] | None:
    """How the row's server came to answer; a plain ServerManager's start is always a cold one."""
    known = getattr(report, "server_start", None)
    if known:
        return dict(known)
    if report.ready_s is None:
        return None
    return {"kind": "cold", "ready_s": report.ready_s}


# ---------------------------------------------------------------------------------------------- noise


def _noise_pair(
    result: SweepResult,
    base_config: ServerConfig,
    workload: Workload,
    manager: ServerLike,
    plan: LoadPlan,
    start_timeout: float,
    stop: threading.Event | None,
) -> dict[str, Any] | None:
    """Start the first measured value again and measure it: the A/A pair of this sweep."""
    first = next((row for row in result.rows if row.measured), None)
    if first is None:
        return None
    again = _measure_value(
        result.flag, first.value, base_config, workload, manager, plan, start_timeout, stop, True
    )
    aa = stats.compare(first.samples.get("e2e_ms", []), again.samples.get("e2e_ms", []))
    return {"value": first.value, "row": again.to_dict(), **stats.noise_from(aa).to_dict()}


def noise_verdict(
    rows: Sequence[SweepRow], flag: str, noise: Mapping[str, Any], lang: str | None = "en"
) -> str:
    """First value against last on each order's whole answer, with its interval, judged against the
    noise of this sweep's A/A pair (see dashboard.measure.stats)."""
    lang = normalize(lang)
    measured = [row for row in rows if row.measured and len(row.samples.get("e2e_ms", [])) >= 1]
    if len(measured) < 2:
        return verdict(rows, flag, lang)
    first, last = measured[0], measured[-1]
    comparison = stats.compare(first.samples["e2e_ms"], last.samples["e2e_ms"])
    aa = (noise or {}).get("aa") or {}
    band = stats.noise_from(
        stats.Comparison(
            aa.get("ratio"),
            aa.get("low"),
            aa.get("high"),
            aa.get("n_first", 0),
            aa.get("n_second", 0),
            se=aa.get("se"),
        )
        if aa
        else None
    )
    effect = stats.effect_of(comparison, band)
    cli = flags.get(flag).cli if flag in flags.catalog() else flag
    params: dict[str, Any] = {
        "flag": cli,
        "low": _word(first.value, lang),
        "high": _word(last.value, lang),
        "n": comparison.n,
        "noise": format_decimal(round(band.percent), format="#,##0", locale=lang),
    }
    if not comparison.has_interval:
        message = N_(
            "Going from {flag} {low} to {high}: no clear change (noise here ±{noise}%, {n} orders each)."
        )
        return translate(message, lang, **params)
    ratio, low, high = comparison.ratio, comparison.low, comparison.high
    if effect == stats.FASTER:
        ratio, low, high = 1 / ratio, 1 / high, 1 / low  # type: ignore[operator]
    params.update(ratio=_number2(ratio, lang), ilow=_number2(low, lang), ihigh=_number2(high, lang))
    if effect == stats.FASTER:
        message = N_(
            "Going from {flag} {low} to {high} made each answer {ratio}x faster here (interval {ilow} to "
            "{ihigh}x, {n} orders each; noise here ±{noise}%)."
        )
    elif effect == stats.SLOWER:
        message = N_(
            "Going from {flag} {low} to {high} made each answer {ratio}x slower here (interval {ilow} to "
            "{ihigh}x, {n} orders each; noise here ±{noise}%)."
        )
    else:
        message = N_(
            "Going from {flag} {low} to {high}: no clear change (noise here ±{noise}%); each answer took "
            "{ratio}x the time (interval {ilow} to {ihigh}x, {n} orders each)."
        )
    return translate(message, lang, **params)


def _number2(value: float | None, lang: str) -> str:
    return format_decimal(round(value or 0.0, 2), format="#,##0.00", locale=lang)


def _word(value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return translate(N_("on") if value else N_("off"), lang)
    return _shown_value(value)
