"""Scale (issue 19): one equilibrium solve and one calibration Jacobian against the number of
countries M.

Run: ``python benchmarks/scale.py [--sizes 10,19,30,60,100] [--n-a 100] [--n-perm 5]
[--n-iid 2] [--max-seconds 300] [--repeat-up-to M] [--record FILE]``

Worlds: the Eaton-Kortum 19 at the published baseline; other sizes synthetic (TFP and labor
drawn around one, trade costs from random locations on a plane, d = 1 + 0.25 distance,
seed 0). For each M: the memory estimate (:func:`hatrade.core.memory.estimate_bytes`) is
checked first and a world that does not fit even with the Jacobian's directions one at a
time is refused with the estimate (no run); the household block then solves its directions
in the largest chunks that fit (:func:`hatrade.core.memory.direction_chunk`, printed); then one
equilibrium solve (beta at R = 1.01, from all-one wages, compilation included and excluded:
a second solve from the same start) and one household-block Jacobian (M + 4 directions, the
calibration's Jacobian, :func:`hatrade.calibration.calibrate.block_jacobian`). The growth
exponent is the slope of log time on log M over the sizes run. A size is skipped once the
previous one took more than ``--max-seconds`` times (M/M_prev)^3.

Prints a table; timings live here, never in tests. Peak memory is the process's resident
maximum (``resource.getrusage``), which only grows: read it per size from a fresh process
(``--sizes 30 --record rows.jsonl``, one process per size; the table and exponents are
then over every row recorded in the file). Sizes above ``--repeat-up-to`` are timed once
(compilation included), to save time on large worlds.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from hatrade import Household, World, published_household, solve_equilibrium
from hatrade.calibration.calibrate import block_jacobian
from hatrade.core.memory import (
    MemoryEstimateError,
    check_world_memory,
    direction_chunk,
    estimate_bytes,
)
from hatrade.core.worlds import ek_world
from hatrade.data import load_calibration


def synthetic_world(M: int, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 4, size=(M, 2))
    dist = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    d = 1.0 + 0.25 * dist + 0.3
    np.fill_diagonal(d, 1.0)
    return World(
        countries=[f"C{k:03d}" for k in range(M)],
        tfp=np.exp(rng.normal(0, 0.2, M)),
        labor=np.exp(rng.normal(0, 0.5, M)),
        d=d,
    )


def one_size(M: int, hh: Household, repeat: bool = True) -> dict:
    """Memory check, two solves (the first compiles) and two block Jacobians for one M. The
    19-country world starts at the published prices (its TFP range makes all-one wages a
    poor start); synthetic worlds at all-one wages and beta 0.93."""
    start: dict = {"beta_guess": 0.93}
    if M == 19:
        world, cal = ek_world("baseline"), load_calibration("baseline")
        start = {"wages": cal.wages.to_numpy(), "beta_guess": cal.beta}
    else:
        world = synthetic_world(M)
    n_z = hh.n_perm * hh.n_iid
    est = estimate_bytes(M, hh.n_a, n_z)
    row = {"M": M, "n_a": hh.n_a, "Nz": n_z, "estimate_GiB": est / 2**30}
    try:
        check_world_memory(M, hh.n_a, n_z)
        chunk = direction_chunk(M, hh.n_a, n_z, M + 4)
    except MemoryEstimateError as err:
        row["refused"] = str(err)
        return row
    row["chunk"] = chunk
    row["chunk_estimate_GiB"] = (
        estimate_bytes(M, hh.n_a, n_z, directions=M + 4, chunk=chunk) / 2**30
    )
    t0 = time.perf_counter()
    eq = solve_equilibrium(world, hh, solve_for="beta", R=1.01, **start)
    row["solve_first_s"] = row["solve_s"] = time.perf_counter() - t0
    if repeat:
        t0 = time.perf_counter()
        eq = solve_equilibrium(world, hh, solve_for="beta", R=1.01, **start)
        row["solve_s"] = time.perf_counter() - t0
    row["newton_iterations"] = eq.iterations
    t0 = time.perf_counter()
    block_jacobian(eq)
    row["jacobian_first_s"] = row["jacobian_s"] = time.perf_counter() - t0
    if repeat:
        t0 = time.perf_counter()
        block_jacobian(eq)
        row["jacobian_s"] = time.perf_counter() - t0
    row["repeated"] = repeat
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def exponent(rows: list, key: str) -> float:
    pts = [(r["M"], r[key]) for r in rows if key in r]
    if len(pts) < 2:
        return float("nan")
    m, t = np.log(np.array(pts)).T
    return float(np.polyfit(m, t, 1)[0])


def print_table(rows: list) -> None:
    print(
        f"{'M':>5} {'n_a':>4} {'Nz':>3} {'est GiB':>8} {'chunk':>6} {'(GiB)':>6} {'solve s':>8} "
        f"{'Newton':>6} {'(1st)':>7} {'Jacobian s':>10} {'(1st)':>7} {'peak RSS GiB':>12}"
    )
    for r in rows:
        head = f"{r['M']:>5} {r.get('n_a', 0):>4} {r.get('Nz', 0):>3} {r['estimate_GiB']:>8.1f}"
        if "solve_s" not in r:
            print(f"{head}  {r.get('refused') or r.get('skipped')}")
            continue
        print(
            f"{head} {r['chunk']:>6} {r['chunk_estimate_GiB']:>6.1f} {r['solve_s']:>8.1f} "
            f"{r['newton_iterations']:>6} {r['solve_first_s']:>7.1f} {r['jacobian_s']:>10.1f} "
            f"{r['jacobian_first_s']:>7.1f} {r['peak_rss_GiB']:>12.2f}"
        )
    for r in rows:
        if "solve_s" in r:
            r["solve_per_iteration_s"] = r["solve_s"] / max(r["newton_iterations"], 1)
    print(
        f"growth exponent in M: solve {exponent(rows, 'solve_s'):.2f} (per Newton iteration "
        f"{exponent(rows, 'solve_per_iteration_s'):.2f}), "
        f"Jacobian {exponent(rows, 'jacobian_s'):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,19,30,60,100")
    ap.add_argument("--n-a", type=int, default=100)
    ap.add_argument("--n-perm", type=int, default=5)
    ap.add_argument("--n-iid", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--repeat-up-to", type=int, default=10**6)
    ap.add_argument("--record", help="JSON-lines file: rows appended, the table over all")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    hh = published_household("baseline", n_a=args.n_a, n_perm=args.n_perm, n_iid=args.n_iid)
    n_z = args.n_perm * args.n_iid
    rows: list = []
    for M in (int(x) for x in args.sizes.split(",")):
        if rows and "solve_s" in rows[-1]:
            prev = rows[-1]
            guess = (prev["solve_s"] + prev["jacobian_s"]) * (M / prev["M"]) ** 3
            if guess > args.max_seconds:
                rows.append(
                    {
                        "M": M,
                        "estimate_GiB": estimate_bytes(M, args.n_a, n_z) / 2**30,
                        "skipped": f"about {guess:.0f} s expected (> --max-seconds)",
                    }
                )
                print(rows[-1], flush=True)
                continue
        rows.append(one_size(M, hh, repeat=M <= args.repeat_up_to))
        print(json.dumps(rows[-1]), flush=True)
        if args.record:
            with open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    if args.record:
        with open(args.record, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
