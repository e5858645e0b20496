"""The verdict: a few sentences in Vietnamese and English, generated from the report's numbers only.

It says how the best settings compare with the starting ones (and whether the intervals are apart),
which knobs mattered and by how much, which did not, which changed the answer, and where the time of
one answer goes (queue, first token, the steps after it) when the goal is not reached, and how much the
machine's own speed moved during the run when that is large enough to matter. For the Pika
presets it also says how far the result is from the owner's 10 ms and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from babel.numbers import format_decimal

from dashboard.i18n import N_, translate
from dashboard.tune.intervals import Estimate

LANGS = ("vi", "en")
DRIFT_WORTH_SAYING = 0.05  # the baseline's turns apart by 5% or more: worth a sentence
REQUEST_NAMES = {"compact_json": N_("compact JSON"), "max_tokens": "max_tokens"}


def number(value: float | None, lang: str, digits: int = 0) -> str:
    if value is None:
        return "?"
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(round(value, digits), format=pattern, locale=lang)


def knob_text(knob: str, value: Any, lang: str) -> str:
    """'--dtype float32', '--structured-outputs-config (xgrammar · no whitespace)', 'compact JSON',
    'max_tokens 25': flag names stay as vLLM spells them; friendly names of JSON values are translated."""
    if knob == "compact_json":
        return translate(REQUEST_NAMES[knob], lang)
    if knob == "max_tokens":
        return f"max_tokens {value}"
    from dashboard.engine import flag_texts, flags

    if knob not in flags.catalog():
        return f"{knob} {value}"
    flag = flags.get(knob)
    if isinstance(value, bool):
        return flag.cli if value else "--no-" + flag.cli.removeprefix("--")
    friendly = flag_texts.texts_for(flag.texts).choices.get(str(value))
    if friendly and str(value).startswith("{"):
        return f"{flag.cli} ({translate(friendly, lang)})"
    return f"{flag.cli} {value}"


def changers_text(changers: list[Mapping[str, Any]], lang: str) -> str:
    items = []
    for item in changers:
        if item.get("knob"):
            items.append(knob_text(item["knob"], item["value"], lang))
        else:
            items.append(" + ".join(knob_text(k, v, lang) for k, v in item["changes"].items()))
    return "; ".join(items)


def _interval(estimate: Estimate, lang: str, unit: str) -> str:
    if not estimate.has_interval:
        return translate(N_("interval unknown"), lang)
    digits = 1 if unit != "ms" else 0
    return f"{number(estimate.low, lang, digits)}–{number(estimate.high, lang, digits)} {unit}"


def sentences(report: Mapping[str, Any], lang: str) -> list[str]:
    out = [_headline(report, lang)]
    out += _effects(report, lang)
    out += _answers(report, lang)
    out += _drift(report, lang)
    out += _time_left(report, lang)
    out += _pika(report, lang)
    if report.get("stopped"):
        out.append(
            translate(N_("The tuning was stopped early; everything measured until then is kept."), lang)
        )
    return [s for s in out if s]


def make_verdict(report: Mapping[str, Any]) -> dict[str, str]:
    return {lang: " ".join(sentences(report, lang)) for lang in LANGS}


def _goal_parts(report: Mapping[str, Any]) -> tuple[str, str]:
    goal = (report.get("question") or {}).get("goal", "p50-e2e")
    return goal, ("req/s" if goal == "throughput" else "ms")


def _headline(report: Mapping[str, Any], lang: str) -> str:
    goal, unit = _goal_parts(report)
    best, base = report.get("best"), report.get("baseline")
    if not best or not base:
        return translate(N_("Not enough settings were measured to give an answer."), lang)
    digits = 1 if unit != "ms" else 0
    best_goal, base_goal = Estimate.from_dict(best["goal"]), Estimate.from_dict(base["goal"])
    if best.get("clearly_better"):
        change = abs((best_goal.value or 0) - (base_goal.value or 0)) / (base_goal.value or 1) * 100
        return translate(
            N_(
                "Best settings: {goal} {best} {unit} ({best_interval}) against {base} {unit} "
                "({base_interval}) for the starting settings, {change}% better, and the two intervals do not "
                "overlap."
            ),
            lang,
            goal=goal,
            best=number(best_goal.value, lang, digits),
            unit=unit,
            best_interval=_interval(best_goal, lang, unit),
            base=number(base_goal.value, lang, digits),
            base_interval=_interval(base_goal, lang, unit),
            change=number(change, lang),
        )
    fastest = report.get("fastest_measured")
    if fastest and fastest.get("changes"):
        fast_goal = Estimate.from_dict(fastest["goal"])
        return translate(
            N_(
                "No setting was clearly better than the starting settings ({base} {unit}, {base_interval}): "
                "the fastest, {fast} {unit} ({fast_interval}), overlaps with them, so keep the starting "
                "settings."
            ),
            lang,
            base=number(base_goal.value, lang, digits),
            unit=unit,
            base_interval=_interval(base_goal, lang, unit),
            fast=number(fast_goal.value, lang, digits),
            fast_interval=_interval(fast_goal, lang, unit),
        )
    return translate(
        N_("No other setting beat the starting settings ({base} {unit}); keep them."),
        lang,
        base=number(base_goal.value, lang, digits),
        unit=unit,
    )


def _effects(report: Mapping[str, Any], lang: str) -> list[str]:
    effects = [e for e in report.get("effects") or [] if e.get("change") is not None]
    mattered = [e for e in effects if e["clear"]]
    idle = [e for e in effects if not e["clear"]]
    out = []
    if mattered:
        items = ", ".join(
            f"{knob_text(e['knob'], e['value'], lang)} {'+' if e['change'] > 0 else '−'}"
            f"{number(abs(e['change']) * 100, lang)}%"
            for e in mattered
        )
        out.append(translate(N_("Alone, these knobs changed the goal clearly: {items}."), lang, items=items))
    if idle:
        items = ", ".join(knob_text(e["knob"], e["value"], lang) for e in idle)
        out.append(
            translate(
                N_("No clear effect (inside the spread of the measurements): {items}."), lang, items=items
            )
        )
    failed = [
        e for e in report.get("effects") or [] if e.get("change") is None and e.get("state") != "measured"
    ]
    if failed:
        items = ", ".join(knob_text(e["knob"], e["value"], lang) for e in failed)
        out.append(
            translate(N_("Could not be measured (refused or did not start): {items}."), lang, items=items)
        )
    return out


def _answers(report: Mapping[str, Any], lang: str) -> list[str]:
    changers = report.get("answer_changers") or []
    if changers:
        return [
            translate(
                N_("These settings changed the answer itself at temperature 0: {items}."),
                lang,
                items=changers_text(changers, lang),
            )
        ]
    if report.get("trials"):
        return [translate(N_("Every measured setting gave the same answers as the starting settings."), lang)]
    return []


def _drift(report: Mapping[str, Any], lang: str) -> list[str]:
    drift = report.get("drift") or {}
    spread = drift.get("spread")
    if spread is None or spread < DRIFT_WORTH_SAYING:
        return []
    _, unit = _goal_parts(report)
    digits = 1 if unit != "ms" else 0
    return [
        translate(
            N_(
                "While the best were checked again, the starting settings alone measured from {low} to "
                "{high} {unit} in different turns: during the run, the machine itself changed speed by "
                "{spread}%. Every candidate was measured in each turn, so all met the same moments; another "
                "run, or another machine, can differ by as much."
            ),
            lang,
            low=number(drift["low"], lang, digits),
            high=number(drift["high"], lang, digits),
            unit=unit,
            spread=number(spread * 100, lang),
        )
    ]


def _time_left(report: Mapping[str, Any], lang: str) -> list[str]:
    parts = report.get("breakdown") or {}
    goal, _ = _goal_parts(report)
    if goal == "throughput" or parts.get("e2e_ms") is None:
        return []
    message = N_(
        "Where the {total} ms of one answer go: the first token {ttft} ms (of which waiting in the "
        "queue {queue} ms), then {steps} steps of about {step} ms each ({steps_ms} ms)."
    )
    if parts.get("queue_ms") is None:
        message = N_(
            "Where the {total} ms of one answer go: the first token {ttft} ms, then {steps} steps of "
            "about {step} ms each ({steps_ms} ms)."
        )
    text = translate(
        message,
        lang,
        total=number(parts["e2e_ms"], lang),
        ttft=number(parts.get("first_token_ms"), lang),
        queue=number(parts.get("queue_ms"), lang, 1),
        steps=parts.get("steps") if parts.get("steps") is not None else "?",
        step=number(parts.get("step_ms"), lang, 1),
        steps_ms=number(parts.get("steps_ms"), lang),
    )
    return [text]


def _pika(report: Mapping[str, Any], lang: str) -> list[str]:
    brief = report.get("brief")
    parts = report.get("breakdown") or {}
    e2e = parts.get("e2e_ms")
    if not brief or e2e is None:
        return []
    hope = brief["owner_hope_ms"]
    if e2e <= hope:
        return [translate(N_("This reaches the owner's hope of {hope} ms."), lang, hope=number(hope, lang))]
    return [
        translate(
            N_(
                "The owner hoped for {hope} ms; the best is {times}x that. Each answer is {tokens} tokens "
                "written one after another, so even with a free first token {steps} steps of {step} ms "
                "already take {steps_ms} ms: reaching {hope} ms needs fewer tokens and far faster steps "
                "than this machine gives (the brief measured {brief} ms)."
            ),
            lang,
            hope=number(hope, lang),
            times=number(e2e / hope, lang, 1),
            tokens=number(parts.get("output_tokens"), lang),
            steps=parts.get("steps") if parts.get("steps") is not None else "?",
            step=number(parts.get("step_ms"), lang, 1),
            steps_ms=number(parts.get("steps_ms"), lang),
            brief=number(brief["brief_ms"], lang),
        )
    ]
