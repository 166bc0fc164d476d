"""Benchmark: all partner elasticities of one country vs one household solve.

Target (issue 7): all 18 partner elasticities of the US, with both margins, in at most the
cost of 3 household solves, measured as a ratio to one *cold* household solve of the US
(``solve_fixed_point`` from the author's initial guess, to tol 1e-10) in the same run.
The author's code re-solves the household problem 36+ times per country (central
differences per partner).

What is timed (all after a warm-up call, so compilation is excluded and reported apart):

- ``solve``: one cold US household solve (jitted; the iteration count is printed);
- ``elasticities``: :func:`hatrade.analysis.elasticity.trade_elasticities` end to end (re-solve
  from the equilibrium's warm start, the 18 tangents, weights, margins, the micro dataset);
- ``elasticities (jvp)`` with ``--jvp``: the same through the custom JVP of the household
  fixed point (tangent iteration), for comparison.

Repeats are interleaved (solve, elasticities, solve, ...) and the medians are compared, so
that load from other processes affects both alike. Run from the repository root::

    python benchmarks/bench_elasticities.py [--repeats 7] [--country USA] [--jvp]
                                            [--blas-threads 1]

The one dense LU of the direct method (size 1000) runs in OpenBLAS; when other processes
keep every core busy, multithreaded OpenBLAS slows down about tenfold (threads wait for
each other), which shows in this ratio. ``--blas-threads 1`` sets
``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` before numpy and jax load.

The 19-country households are evaluated at the published prices first (one world solve,
about 10-30 s with compilation).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--country", default="USA")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--jvp", action="store_true", help="also time method='jvp'")
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="set OPENBLAS_NUM_THREADS and OMP_NUM_THREADS (default: unset)",
    )
    args = ap.parse_args()
    if args.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)

    import jax

    import hatrade as ht
    from hatrade.analysis import elasticity as el
    from hatrade.core.household import initial_state, solve_fixed_point
    from hatrade.data import load_calibration

    print(
        f"hatrade {ht.__version__}, jax {jax.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    cal = load_calibration("baseline")
    t0 = time.perf_counter()
    eq = ht.evaluate(
        ht.ek_world("baseline"),
        ht.published_household("baseline"),
        cal.wages.values,
        R=1.01,
        beta=cal.beta,
    )
    print(
        f"households at the published prices: {time.perf_counter() - t0:.1f} s (with compilation)"
    )

    with jax.enable_x64(True):
        cp = el.country_problem(eq, args.country)
        cold = jax.jit(lambda prm: solve_fixed_point(prm, initial_state(prm), 1e-10, 3000))
        t0 = time.perf_counter()
        _, its = jax.block_until_ready(cold(cp.prm))
        print(
            f"compile + first cold solve: {time.perf_counter() - t0:.1f} s ({int(its)} EGM steps)"
        )

        def solve():
            jax.block_until_ready(cold(cp.prm))

        def elast(method="direct"):
            return el.trade_elasticities(eq, args.country, method=method)

        t0 = time.perf_counter()
        res = elast()
        print(f"compile + first elasticities: {time.perf_counter() - t0:.1f} s")
        if args.jvp:
            elast("jvp")

        ts, te, tj = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            solve()
            ts.append(time.perf_counter() - t)
            t = time.perf_counter()
            elast()
            te.append(time.perf_counter() - t)
            if args.jvp:
                t = time.perf_counter()
                elast("jvp")
                tj.append(time.perf_counter() - t)

    ms, me = statistics.median(ts), statistics.median(te)
    print(
        f"\n{args.country}: {len(res.table)} partners, theta = {res.theta:.4f}, "
        f"range {res.table['theta'].max():.3f} .. {res.table['theta'].min():.3f}, "
        f"linear-solve residual {res.residual:.1e}"
    )
    print(
        f"cold household solve ({int(its)} steps): median {ms * 1e3:8.1f} ms  "
        f"(min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f})"
    )
    print(
        f"all-partner elasticities (direct):   median {me * 1e3:8.1f} ms  "
        f"(min {min(te) * 1e3:.1f}, max {max(te) * 1e3:.1f})"
    )
    print(
        f"ratio elasticities / household solve: {me / ms:.2f} (medians), "
        f"{min(te) / min(ts):.2f} (minima); target <= 3"
    )
    if args.jvp:
        mj = statistics.median(tj)
        print(
            f"all-partner elasticities (jvp):      median {mj * 1e3:8.1f} ms, ratio {mj / ms:.2f}"
        )
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} (timings are noisy when it "
        f"exceeds the {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
