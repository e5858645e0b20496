"""The one set of checks every page runs before anything starts: engine.config.validate with the model's
facts, merged with the memory arithmetic's warnings so that each flag gets one problem and one fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.engine import config as config_mod
from dashboard.engine.config import ServerConfig
from dashboard.engine.predict import MemoryPrediction, predict
from dashboard.engine.problems import Problem
from dashboard.ui import state


@dataclass(frozen=True)
class Checked:
    """What the checks found: the model's own problem (it cannot be found), then every problem with at
    most one fix per flag. `blocking` ones refuse the start; the others are the arithmetic's warnings."""

    model_problem: Problem | None
    problems: tuple[Problem, ...]
    blocking_codes: frozenset[str]

    @property
    def blocked(self) -> bool:
        return self.model_problem is not None or any(p.code in self.blocking_codes for p in self.problems)

    def is_blocking(self, problem: Problem) -> bool:
        return problem.code in self.blocking_codes


def prediction_for(config: ServerConfig) -> MemoryPrediction | None:
    _facts, shape, _problem = state.model_facts(config.model)
    if shape is None:
        return None
    machine = state.machine()
    return predict(
        config, shape, state.backend(), machine.total_memory_bytes, gpu_count=max(machine.gpu_count, 1)
    )


def check(
    config: ServerConfig, running_port: Any = None, prediction: MemoryPrediction | None = None
) -> Checked:
    """Checks for a config the user is about to start (the running server's own port is not 'taken')."""
    facts, _shape, model_problem = state.model_facts(config.model)
    if model_problem is not None:
        return Checked(model_problem, (), frozenset())
    check_port = config.get("port") is not None and config.get("port") != running_port
    hard = config_mod.validate(config, facts, check_port=check_port)
    predicted: Sequence[Problem] = prediction.problems if prediction is not None else ()
    merged = config_mod.validate(config, facts, check_port=check_port, predicted=predicted)
    return Checked(None, tuple(merged), frozenset(p.code for p in hard))


def sweep_value_problems(base: ServerConfig, flag: str, values: Sequence[Any]) -> list[tuple[Any, Problem]]:
    """For a sweep: each value that the same checks refuse, with why (ports are checked at start)."""
    found: list[tuple[Any, Problem]] = []
    for value in values:
        config = base.with_values({flag: value})
        checked = check(config, running_port=config.get("port"))
        if checked.model_problem is not None:
            return [(value, checked.model_problem)]
        found += [(value, p) for p in checked.problems if checked.is_blocking(p)]
    return found


def refuse_sweep_values(base: ServerConfig, flag: str, values: Sequence[Any]) -> bool:
    """Show why values of a sweep would be refused (the factory page's own words and fix); True if any."""
    import streamlit as st

    from dashboard.engine import flags
    from dashboard.ui import i18n as ui_i18n
    from dashboard.ui import widgets

    _ = ui_i18n.translator()
    lang = ui_i18n.current_language()
    refused = sweep_value_problems(base, flag, values)
    for value, problem in refused:
        fix = ""
        if problem.flag and problem.suggestion is not None:
            target = flags.get(problem.flag)
            fix = " " + _("Try {value} instead.").format(value=widgets.value_text(target, problem.suggestion))
        st.error(
            _("{value}: {problem}").format(
                value=widgets.value_text(flags.get(flag), value), problem=problem.text(lang)
            )
            + fix,
            icon=":material/error:",
        )
    return bool(refused)
