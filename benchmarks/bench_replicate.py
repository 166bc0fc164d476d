"""Benchmark: ``hatrade replicate``, time per stage, cold and with a warm cache.

Target (issue 6): the full replication from a cold start (empty results cache, no JAX
compilation cache, fresh process) within 15 minutes on a 2-core machine without a GPU.

What is timed, in one process:

1. ``cold``: :func:`hatrade.replicate.replicate` with an empty results cache in a temporary
   folder: every equilibrium and household result is computed (JAX compilation included:
   it is part of a cold start);
2. ``warm``: the same run again with the cache now filled: nothing is solved (the run
   checks this and reports the number of equilibria solved, which must be 0).

Per stage: wall seconds, status, results computed and loaded. The machine load average is
printed before and after (other processes on the machine slow every number down alike).
Run from the repository root::

    python benchmarks/bench_replicate.py [--quick] [--out results/bench-replicate] [--json FILE]
                                         [--no-warm] [--compile-cache DIR]

Measured times, and what changed them: ``benchmarks/README.md``.
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
    ap.add_argument(
        "--out",
        default=None,
        help="output folder of the runs (default: a temporary folder, removed afterwards)",
    )
    ap.add_argument("--json", default=None, help="also write the timings to this JSON file")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-cache run")
    ap.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help="use (and fill) JAX's persistent compilation cache in DIR, as the "
        "command line does; run twice to time a cold results cache with "
        "warm compilation (default: none, a true cold start)",
    )
    args = ap.parse_args()

    import jax

    import hatrade
    from hatrade.io.cache import Cache
    from hatrade.replicate import jax_compilation_cache, paper_setup, replicate

    print(
        f"hatrade {hatrade.__version__}, jax {jax.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="hatrade-bench-"))
    out = Path(args.out) if args.out else tmp / "out"
    if out.exists():
        shutil.rmtree(out)
    cache = tmp / "cache"
    setup = paper_setup(quick=args.quick)
    runs = {}

    def jit_cache():
        return (
            jax_compilation_cache(args.compile_cache)
            if args.compile_cache
            else contextlib.nullcontext()
        )

    if args.compile_cache:
        print(f"JAX compilation cache: {args.compile_cache}")
    try:
        for label in ("cold",) + (() if args.no_warm else ("warm",)):
            t0 = time.perf_counter()
            with jit_cache():
                r = replicate(out, setup=setup, cache=Cache(cache))
            total = time.perf_counter() - t0
            work = json.loads((out / "replicate.json").read_text()).get("work", [])
            runs[label] = {
                "total_seconds": total,
                "equilibria_solved": r.solves(),
                "stages": [
                    {
                        "name": s.name,
                        "status": s.status,
                        "seconds": s.seconds,
                        "computed": s.cache.get("miss", 0),
                        "loaded": s.cache.get("hit", 0),
                    }
                    for s in r.stages
                ],
                "results": work,
            }
            print(
                f"\n{label}: {total:.1f} s ({total / 60:.1f} min), equilibria solved: "
                f"{r.solves()}, load average {os.getloadavg()[0]:.1f}"
            )
            print(f"{'stage':<14}{'status':<9}{'seconds':>9}{'computed':>10}{'loaded':>8}")
            for s in runs[label]["stages"]:
                print(
                    f"{s['name']:<14}{s['status']:<9}{s['seconds']:>9.1f}{s['computed']:>10}"
                    f"{s['loaded']:>8}"
                )
            if label == "cold":
                print("per result (computed; seconds include JAX compilation on first use):")
                for w in work:
                    print(f"  {w['stage']:<13}{w['result']:<42}{w['seconds']:>8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    target = 15 * 60
    cold = runs["cold"]["total_seconds"]
    print(
        f"\ncold start {'within' if cold <= target else 'OVER'} the 15-minute target "
        f"({cold / 60:.1f} min){' (--quick)' if args.quick else ''}."
    )
    if "warm" in runs and runs["warm"]["equilibria_solved"]:
        print("WARNING: the warm run solved equilibria; the cache did not serve them.")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                    "runs": runs,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
