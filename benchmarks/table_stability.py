"""Are the table's verdicts stable? Run the whole table twice in a row on this machine and print, per row,
both effects, whether they agree, and whether prefix caching came out faster on the first token each time.

    .venv/bin/python benchmarks/table_stability.py [--orders 5] [--minutes 30] [--flags a,b] [--json out.json]

Targets (issue "The brief's column, filled honestly"): on the CPU default, both runs agree on every row's
effect, no row says faster or slower for trust_remote_code or host, and prefix caching is faster on the
first token in every run. Each run starts real servers (two per measured flag plus the A/A pair).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dashboard.engine import hardware
from dashboard.engine.carousel import Carousel
from dashboard.engine.config import default_config
from dashboard.measure import table
from dashboard.measure.probe import pick_port

NOT_SPEED = ("trust_remote_code", "host")


def one_run(args: argparse.Namespace, number: int, workdir: Path) -> dict:
    backend = args.backend or hardware.detect_backend()
    base = pick_port(default_config(backend), {})
    only = args.flags.split(",") if args.flags else None
    plan = table.table_plan(base, backend, only, args.orders, args.minutes)
    print(f"run {number}: {plan.starts} starts, estimate {plan.estimate_seconds() / 60:.1f} min", flush=True)
    manager = Carousel(workdir / f"run{number}", backend=backend)  # as the app and the CLI run it
    began = time.monotonic()
    try:
        result = table.run_table(plan, manager)
    finally:
        manager.close()
    data = result.to_dict()
    data["wall_s"] = time.monotonic() - began
    return data


def row_line(flag: str, first: dict, second: dict) -> str:
    def shown(row: dict) -> str:
        interval = row.get("interval")
        if not interval:
            return f"{row['effect']:<20}"
        return f"{row['effect']:<9} {row['ratio']:.2f} [{interval[0]:.2f},{interval[1]:.2f}] n={row['n']:<3}"

    same = "same" if first["effect"] == second["effect"] else "DIFFERENT"
    return f"{flag:<24} {shown(first):<36} {shown(second):<36} {same}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=table.DEFAULT_ORDERS)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--flags", default=None)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="table-stability-") as folder:
        runs = [one_run(args, number, Path(folder)) for number in (1, 2)]
    first, second = ({row["flag"]: row for row in run["rows"]} for run in runs)
    print(f"\n{'flag':<24} {'run 1':<36} {'run 2':<36} agree")
    for flag in first:
        print(row_line(flag, first[flag], second[flag]))
    for number, run in enumerate(runs, 1):
        noise = ", ".join(
            f"{f['workload']}.{f['metric']} ±{f['percent']:.0f}%"
            for f in run["noise"]["figures"]
            if f["measured"]
        )
        print(
            f"run {number}: {run['wall_s'] / 60:.1f} min, {run['starts']} starts; noise: {noise or 'unknown'}"
        )
    agree = all(first[flag]["effect"] == second[flag]["effect"] for flag in first)
    no_claim = all(
        run_rows[flag]["effect"] not in ("faster", "slower")
        for run_rows in (first, second)
        for flag in NOT_SPEED
        if flag in run_rows
    )
    caching = [rows.get("enable_prefix_caching", {}).get("effect") for rows in (first, second)]
    print(f"\nevery row's effect agrees between the two runs: {'yes' if agree else 'no'}")
    print(f"no faster/slower for trust_remote_code or host: {'yes' if no_claim else 'no'}")
    both_faster = caching == ["faster", "faster"]
    print(f"prefix caching faster on the first token in both runs: {'yes' if both_faster else 'no'}")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2, default=str), encoding="utf-8")
    return 0 if agree and no_claim and both_faster else 1


if __name__ == "__main__":
    sys.exit(main())
