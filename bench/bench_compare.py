"""Emulator speed before and after a change, in one run on one machine.

Runs this checkout's ``bench_sim_core.py`` and ``bench_fota_cycle.py`` against two source trees
(``--before`` and ``--after``, each a checkout of this repository) by putting each tree's
``host`` and ``tools`` first on ``PYTHONPATH``, alternating the trees round by round so machine
noise hits both alike. Prints each measure per tree and the after/before ratio; on a shared,
loaded machine ``--stat best`` (the default: the fastest round of each tree) is the steadier
reading, ``--stat median`` the typical one::

    git worktree add /tmp/before main
    .venv/bin/python bench/bench_compare.py --before /tmp/before --rounds 3

Measures: boot to the first line of main, virtual timer events per wall second, the sys.wait
loop against raw coroutine resumes, 30 virtual days of a 4-hourly timer, and the 1 MB upgrade
cycle (plus a month of PSM wakes). Asserts nothing; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
HERE = BENCH.parent

# label, script, its JSON key (core) or row index (fota), which way is better, unit
MEASURES = [
    ("boot to first main line", "core", "boot_ms", "lower", "ms"),
    ("virtual timer events / wall s", "core", "timer_events_per_s", "higher", "/s"),
    ("sys.wait loop / raw resume", "core", "wait_vs_raw", "lower", "x"),
    ("30 virtual days, 4 h timer", "core", "thirty_days_ms", "lower", "ms"),
    ("upgrade cycle, 1 MB package", "fota", 0, "lower", "s"),
    ("30 days PSM, 4 h wake + HTTP", "fota", 1, "lower", "s"),
]


def run_tree(tree: Path, runs: int) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "host"), str(tree / "tools")])
    core = subprocess.run([sys.executable, str(BENCH / "bench_sim_core.py"), "--json",
                           "--runs", str(runs)], env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    if core.returncode != 0:
        raise SystemExit(f"bench_sim_core.py against {tree} failed:\n{core.stderr[-2000:]}")
    fota = subprocess.run([sys.executable, str(BENCH / "bench_fota_cycle.py"), "--json",
                           "--runs", str(runs)], env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    if fota.returncode != 0:
        raise SystemExit(f"bench_fota_cycle.py against {tree} failed:\n{fota.stderr[-2000:]}")
    rows = json.loads(fota.stdout)
    return {"core": json.loads(core.stdout), "fota": {str(i): r["seconds"]
                                                      for i, r in enumerate(rows)}}


def value(result: dict[str, Any], script: str, key: str | int) -> float:
    return float(result[script][str(key)] if script == "fota" else result[script][key])


def combine(values: list[float], stat: str, better: str) -> float:
    """The rounds of one tree as one number: the best round, or the median."""
    if stat == "median":
        return statistics.median(values)
    return max(values) if better == "higher" else min(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout measured as 'before'")
    ap.add_argument("--after", type=Path, default=HERE, help="checkout measured as 'after' "
                    "(default: this one)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per tree")
    ap.add_argument("--runs", type=int, default=3, help="repetitions inside each bench script")
    ap.add_argument("--stat", choices=("best", "median"), default="best",
                    help="how rounds combine: the best round (default) or the median")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    for tree in (args.before, args.after):
        if not (tree / "host" / "luatos_sim").is_dir():
            ap.error(f"{tree}: not a checkout of this repository (no host/luatos_sim)")
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for i in range(args.rounds):
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        for name in order:
            tree = args.before if name == "before" else args.after
            results[name].append(run_tree(tree, args.runs))
    table = []
    for label, script, key, better, unit in MEASURES:
        b, a = (combine([value(r, script, key) for r in results[tree]], args.stat, better)
                for tree in ("before", "after"))
        table.append({"measure": label, "before": b, "after": a, "ratio": a / b if b else 0.0,
                      "better": better, "unit": unit})
    if args.json:
        print(json.dumps(table))
        return 0
    print(f"{'measure':32} {'before':>12} {'after':>12} {'after/before':>13}  better")
    for row in table:
        print(f"{row['measure']:32} {row['before']:>12.4g} {row['after']:>12.4g} "
              f"{row['ratio']:>12.3f}x  {row['better']} ({row['unit']})")
    print(f"({args.stat} of {args.rounds} alternating rounds, each the median of {args.runs} "
          f"runs; before "
          f"{args.before}, after {args.after}; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
