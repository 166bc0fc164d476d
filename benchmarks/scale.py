"""Scale (issue 19): one equilibrium solve and one calibration Jacobian against the number of
countries M.

Run: ``python benchmarks/scale.py [--sizes 10,19,30,60,100] [--n-a 100] [--max-seconds 300]``

Worlds: the Eaton-Kortum 19 at the published baseline; other sizes synthetic (TFP and labor
drawn around one, trade costs from random locations on a plane, d = 1 + 0.25 distance,
seed 0). For each M: the memory estimate (:func:`hatrade.core.memory.estimate_bytes`) is
checked first and a world that does not fit is refused with the estimate (no run); then one
equilibrium solve (beta at R = 1.01, from all-one wages, compilation included and excluded:
a second solve from the same start) and one household-block Jacobian (M + 4 directions, the
calibration's Jacobian, :func:`hatrade.calibration.calibrate.block_jacobian`). The growth
exponent is the slope of log time on log M over the sizes run. A size is skipped once the
previous one took more than ``--max-seconds`` times (M/M_prev)^3.

Prints a table; timings live here, never in tests. Peak memory is the process's resident
maximum (``resource.getrusage``), which only grows: read it per size from a fresh process
(``--sizes 30``) when it matters.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from hatrade import Household, World, published_household, solve_equilibrium
from hatrade.calibration.calibrate import block_jacobian
from hatrade.core.memory import MemoryEstimateError, check_world_memory, estimate_bytes
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


def one_size(M: int, hh: Household) -> dict:
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
    row = {"M": M, "estimate_GiB": est / 2**30}
    try:
        check_world_memory(M, hh.n_a, n_z)
    except MemoryEstimateError as err:
        row["refused"] = str(err)
        return row
    t0 = time.perf_counter()
    eq = solve_equilibrium(world, hh, solve_for="beta", R=1.01, **start)
    row["solve_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    eq = solve_equilibrium(world, hh, solve_for="beta", R=1.01, **start)
    row["solve_s"] = time.perf_counter() - t0
    row["newton_iterations"] = eq.iterations
    t0 = time.perf_counter()
    block_jacobian(eq)
    row["jacobian_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    block_jacobian(eq)
    row["jacobian_s"] = time.perf_counter() - t0
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def exponent(rows: list, key: str) -> float:
    pts = [(r["M"], r[key]) for r in rows if key in r]
    if len(pts) < 2:
        return float("nan")
    m, t = np.log(np.array(pts)).T
    return float(np.polyfit(m, t, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,19,30,60,100")
    ap.add_argument("--n-a", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    hh = published_household("baseline", n_a=args.n_a)
    rows: list = []
    for M in (int(x) for x in args.sizes.split(",")):
        if rows and "solve_s" in rows[-1]:
            prev = rows[-1]
            guess = (prev["solve_s"] + prev["jacobian_s"]) * (M / prev["M"]) ** 3
            if guess > args.max_seconds:
                rows.append(
                    {
                        "M": M,
                        "estimate_GiB": estimate_bytes(M, args.n_a, 10) / 2**30,
                        "skipped": f"about {guess:.0f} s expected (> --max-seconds)",
                    }
                )
                print(rows[-1], flush=True)
                continue
        rows.append(one_size(M, hh))
        print(rows[-1], flush=True)
    print()
    print(
        f"{'M':>5} {'mem est GiB':>12} {'solve s':>9} {'(1st)':>8} {'Jacobian s':>11} "
        f"{'(1st)':>8} {'peak RSS GiB':>13}"
    )
    for r in rows:
        if "solve_s" not in r:
            print(f"{r['M']:>5} {r['estimate_GiB']:>12.1f}  {r.get('refused') or r.get('skipped')}")
            continue
        print(
            f"{r['M']:>5} {r['estimate_GiB']:>12.1f} {r['solve_s']:>9.1f} "
            f"{r['solve_first_s']:>8.1f} {r['jacobian_s']:>11.1f} {r['jacobian_first_s']:>8.1f} "
            f"{r['peak_rss_GiB']:>13.2f}"
        )
    print(
        f"growth exponent in M: solve {exponent(rows, 'solve_s'):.2f}, "
        f"Jacobian {exponent(rows, 'jacobian_s'):.2f}"
    )


if __name__ == "__main__":
    main()
