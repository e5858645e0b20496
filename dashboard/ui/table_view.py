"""The filled table on the impact page: the newest table run from the history, as the handout reads it,
with a placeholder row for every flag not measured yet. No Streamlit calls here: the page draws."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from dashboard.engine import flag_texts, flags
from dashboard.engine.config import ServerConfig
from dashboard.history import handout
from dashboard.measure import stats
from dashboard.measure import table as table_mod
from dashboard.measure.loadgen import LoadPlan, Workload
from dashboard.ui import estimates
from dashboard.ui import measure_jobs as jobs


def latest_table(store: Any) -> dict[str, Any] | None:
    """The newest table run (running or finished) as the JSON of a table run, or None."""
    if store is None:
        return None
    for run in store.list_runs(kind="table", limit=20):
        if not run.row_count and run.status != "running":
            continue
        full = store.get_run(run.id)
        data = dict(full.summary or {})
        data.setdefault("started_at", _epoch(full.created_at))
        data["rows"] = [dict(row.data) for row in full.rows]
        data["status"] = full.status
        return data
    return None


def _epoch(iso: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


def placeholder_row(name: str, backend: str, lang: str, not_yet: str) -> dict[str, Any]:
    """A row of the table before any measurement: the plan's figure and values, and what is known."""
    planned = table_mod.plan_row(name, backend)
    row = table_mod.TableRow(name, planned.kind, planned.metric, None, list(planned.values), stats.UNCLEAR)
    verdict = not_yet
    if not planned.measured:
        table_mod.decide(row)
        verdict = row.verdict(lang)
    return {
        "flag": name,
        "cli": flags.get(name).cli,
        "metric": planned.metric,
        "values": list(planned.values),
        "effect": row.effect if not planned.measured else "",
        "ratio": None,
        "interval": None,
        "n": 0,
        "verdict": {lang: verdict},
    }


def table_frame(
    data: Mapping[str, Any] | None,
    backend: str,
    lang: str,
    tr: Callable[[str], str],
    not_yet: str,
    analogy: str,
) -> pd.DataFrame:
    measured = {row["flag"]: row for row in (data or {}).get("rows", [])}
    header, _cells = handout.rows_for({"rows": []}, lang)
    records = []
    for name in table_mod.table_flags():
        row = measured.get(name) or placeholder_row(name, backend, lang, not_yet)
        _header, cells = handout.rows_for({"rows": [row]}, lang)
        record = {key: value.strip("`") for key, value in zip(header, cells[0], strict=True)}
        if not row.get("effect"):
            record[header[5]] = ""
        texts = flag_texts.texts_for(flags.get(name).texts)
        record = {header[0]: record.pop(header[0]), analogy: tr(texts.label), **record}
        records.append(record)
    return pd.DataFrame(records)


def plan_for(base: ServerConfig, backend: str, orders: int, minutes: float | None) -> table_mod.TablePlan:
    """The whole table, timed with the starts this machine really measured (when the history has some)."""
    plan = table_mod.table_plan(base, backend, orders=orders, minutes=minutes)
    times = estimates.machine_times(backend, int(time.time() // 60))
    return plan.with_measured_starts(times)


def job_request(plan: table_mod.TablePlan, restore: ServerConfig | None, backend: str) -> jobs.JobRequest:
    """The page job's request for the whole table (its workloads come from configs/effects.toml)."""
    return jobs.JobRequest(
        sweeps=(),
        base=plan.base,
        workload=Workload.synthetic(8, 1, label="table"),  # unused: each row declares its own orders
        plan=LoadPlan(concurrency=1, requests=1),
        mode="table",
        restore_config=restore,
        backend=backend,
        start_timeout=plan.start_timeout,
        table=plan,
    )
