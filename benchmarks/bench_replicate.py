"""Benchmark: ``hatrade replicate``, time per stage, cold and with a warm cache.

Target (issue 6): the full replication from a cold start (empty results cache, no JAX
compilation cache, fresh process) within 15 minutes on a 2-core machine without a GPU. The
author's pipeline takes hours.

What is timed, in one process:

1. ``cold``: :func:`hatrade.replicate.pipeline.replicate` with an empty results cache in a temporary
   folder: every equilibrium and household result is computed (JAX compilation included:
   it is part of a cold start);
2. ``warm``: the same run again with the cache now filled: nothing is solved (the run
   checks this and reports the number of equilibria solved, which must be 0).

Per stage: wall seconds, status, results computed and loaded. The machine load average is
printed before and after (other processes on the machine slow every number down alike).
Run from the repository root::

    python benchmarks/bench_replicate.py [--quick] [--out results/bench-replicate] [--json FILE]
                                         [--no-warm] [--compile-cache DIR]

Measured 2026-11-28 05:00-05:04 UTC with this script (2 cores, no GPU; load average 0.3
at the start, about 2 during the runs, from the runs themselves; seconds). Stages after
``equilibrium`` run in two threads (counterfactuals | the rest) and the two-country world
of the micro figure in the background from the start, so stage times overlap and do not
add up to the total:

=============  ====== =======
stage           full   quick
=============  ====== =======
equilibrium     41.7    28.4
table1           0.1     0.1
trade_fit        0.3     0.6
elasticities    14.1    10.4
micro            2.8     2.3
unilateral      48.7    26.4
global          11.5     3.8
efficient       21.8    12.8
report           0.0     0.0
total (cold)   102.0    58.7
total (warm)     4.4     4.2
=============  ====== =======

Cold full: 1.7 minutes (target 15); quick: 59 s (target: about a minute); the warm runs
solve nothing. Before (same day, 02:27-02:49 UTC, one stage at a time, load average 3-4
from other processes): 323 s full, 121 s quick. What changed: stages in two threads (JAX
compiles and computes outside Python's lock: the serial run used one core); the fixed R
and beta are traced arguments of the compiled world residual, so calibration and
counterfactuals of both models share one compilation; the equivalent-variation node
batches are padded to one size (one compilation). About half of a cold quick run is still
JAX compilation; ``--compile-cache DIR`` (the command line's default) keeps it for later
processes. Counterfactuals start from the baseline's Jacobian (the beta column turned into
an R column): on the quick grid, each of the four counterfactuals needed two exact
19-direction Jacobians without it and one with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the --quick replication")
    ap.add_argument("--out", default=None, help="output folder of the runs (default: a temporary "
                                                "folder, removed afterwards)")
    ap.add_argument("--json", default=None, help="also write the timings to this JSON file")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-cache run")
    ap.add_argument("--compile-cache", default=None, metavar="DIR",
                    help="use (and fill) JAX's persistent compilation cache in DIR, as the "
                         "command line does; run twice to time a cold results cache with "
                         "warm compilation (default: none, a true cold start)")
    args = ap.parse_args()

    import jax

    import hatrade
    from hatrade.io.cache import Cache
    from hatrade.replicate.pipeline import jax_compilation_cache, paper_setup, replicate

    print(f"hatrade {hatrade.__version__}, jax {jax.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="hatrade-bench-"))
    out = Path(args.out) if args.out else tmp / "out"
    if out.exists():
        shutil.rmtree(out)
    cache = tmp / "cache"
    setup = paper_setup(quick=args.quick)
    runs = {}
    def jit_cache():
        return (jax_compilation_cache(args.compile_cache) if args.compile_cache
                else contextlib.nullcontext())

    if args.compile_cache:
        print(f"JAX compilation cache: {args.compile_cache}")
    try:
        for label in ("cold",) + (() if args.no_warm else ("warm",)):
            t0 = time.perf_counter()
            with jit_cache():
                r = replicate(out, setup=setup, cache=Cache(cache))
            total = time.perf_counter() - t0
            work = json.loads((out / "replicate.json").read_text()).get("work", [])
            runs[label] = {"total_seconds": total, "equilibria_solved": r.solves(),
                           "stages": [{"name": s.name, "status": s.status, "seconds": s.seconds,
                                       "computed": s.cache.get("miss", 0),
                                       "loaded": s.cache.get("hit", 0)} for s in r.stages],
                           "results": work}
            print(f"\n{label}: {total:.1f} s ({total / 60:.1f} min), equilibria solved: "
                  f"{r.solves()}, load average {os.getloadavg()[0]:.1f}")
            print(f"{'stage':<14}{'status':<9}{'seconds':>9}{'computed':>10}{'loaded':>8}")
            for s in runs[label]["stages"]:
                print(f"{s['name']:<14}{s['status']:<9}{s['seconds']:>9.1f}{s['computed']:>10}"
                      f"{s['loaded']:>8}")
            if label == "cold":
                print("per result (computed; seconds include JAX compilation on first use):")
                for w in work:
                    print(f"  {w['stage']:<13}{w['result']:<42}{w['seconds']:>8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    target = 15 * 60
    cold = runs["cold"]["total_seconds"]
    print(f"\ncold start {'within' if cold <= target else 'OVER'} the 15-minute target "
          f"({cold / 60:.1f} min){' (--quick)' if args.quick else ''}.")
    if "warm" in runs and runs["warm"]["equilibria_solved"]:
        print("WARNING: the warm run solved equilibria; the cache did not serve them.")
    if args.json:
        Path(args.json).write_text(json.dumps({"quick": args.quick, "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform()}, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
