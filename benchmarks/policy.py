"""Benchmark: the optimal uniform tariff of one country in the 19-country world.

Reported side by side with the targets of issue 18:

* equilibrium solves of the optimization (target <= 10) against a grid search over 20
  tariff values (20 solves, and a grid's precision of 1/20 of the range at best);
* the cost of one criterion gradient *beyond the equilibrium it is taken at*, in world
  household solves (every country from the author's initial guess, with distributions and
  aggregates, timed in the same run): at the optimum by both routes (``method="block"``, the
  full household-block Jacobian, M + 3 directions, and ``"krylov"``, GMRES on the tangent
  system), cold (no warm start), after a warm-up call (compilation excluded); and as the
  optimizer pays it, warm (the median over its evaluations after the first, which takes
  the block); target <= 2;
* the wall time of the whole optimization: the cost of one best response of a Nash
  iteration (a 19-country Nash equilibrium needs a few rounds of 19 of them).

    python benchmarks/policy.py [--country USA] [--criterion utilitarian] [--small]

``--small`` uses a 3-country world with 20 asset points (seconds).
"""

from __future__ import annotations

import argparse
import logging
import time


def _baseline(small: bool):
    from hatrade.analysis.counterfactual import baseline_equilibrium
    from hatrade.core.params import Household, World
    from hatrade.solve.equilibrium import solve_equilibrium

    if not small:
        return baseline_equilibrium("baseline")
    w = World(
        countries=("AAA", "BBB", "USA"),
        tfp=[1.0, 0.8, 1.2],
        labor=[1.0, 0.5, 0.7],
        d=[[1.0, 1.3, 1.6], [1.2, 1.0, 1.4], [1.8, 1.25, 1.0]],
    )
    return solve_equilibrium(w, Household(n_a=20, beta=0.93), solve_for="R")


def _world_solve_time(eq, repeat: int = 2) -> float:
    """Seconds of one household solve of every country at ``eq``'s prices from the author's
    initial guess, with distributions and aggregates (``hatrade.evaluate``; compiled first)."""
    from hatrade.solve.equilibrium import evaluate

    def run():
        evaluate(eq.world, eq.household, eq.prices.w, R=eq.prices.R, beta=eq.beta,
                 T=eq.prices.T, income=eq.income)  # fmt: skip

    run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--country", default="USA")
    ap.add_argument("--criterion", default="utilitarian")
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("jax", "absl", "hatrade.solve.newton"):
        logging.getLogger(name).setLevel(logging.WARNING)

    import numpy as np

    from hatrade.policy.gradient import criterion_gradient
    from hatrade.policy.optimal import make_objective, optimal_policy, policy_space
    from hatrade.welfare.problem import reference_solve_time

    t0 = time.perf_counter()
    base = _baseline(args.small)
    t_base = time.perf_counter() - t0
    print(f"baseline: {base.world.M} countries, {t_base:.1f} s")
    res = optimal_policy(base, args.country, criterion=args.criterion)
    print(
        f"optimal tariff of {args.country} ({args.criterion}): {res.theta[0]:.6f}, criterion "
        f"{res.value:.6f}%, projected gradient {res.grad_norm:.1e}, on bound {res.on_bound}, "
        f"{res.solves} equilibrium solves, {res.seconds:.0f} s"
    )
    sp = policy_space(base.world, args.country, "tariff")
    obj = make_objective(base, args.country, args.criterion)
    t_grad = {}
    for method in ("block", "krylov"):
        g = criterion_gradient(res.eq, sp, obj, res.theta, method=method)  # compiled
        t1 = time.perf_counter()
        g = criterion_gradient(res.eq, sp, obj, res.theta, method=method)
        t_grad[method] = (time.perf_counter() - t1, g.directions)
    world_ref = _world_solve_time(res.eq)
    ref, ref_it = reference_solve_time(res.eq, args.country, hh_tol=1e-10, hh_max_iter=3000)
    # warm, in the loop: the median (the first Krylov gradient includes its compilation)
    loop = [e for e in res.history[1:] if "gradient_seconds" in e]
    t_loop = np.median([e["gradient_seconds"] for e in loop]) if loop else float("nan")
    d_loop = np.mean([e["gradient_directions"] for e in loop]) if loop else float("nan")
    per_solve = np.mean([e["seconds"] for e in res.history if "seconds" in e])
    print()
    print(f"{'quantity':<58}{'hatrade':>12}{'target/peer':>14}")
    print(f"{'equilibrium solves to the optimum':<58}{res.solves:>12d}{'<= 10':>14}")
    print(f"{'  grid search over 20 tariffs':<58}{'':>12}{20:>14d}")
    for method, (t, d) in t_grad.items():
        label = f"gradient at the optimum, {method}, cold ({d} directions)"
        print(f"{label:<58}{t / world_ref:>12.2f}{'<= 2':>14}")
    label = f"gradient in the optimization, warm, median ({d_loop:.1f} directions)"
    print(f"{label:<58}{t_loop / world_ref:>12.2f}{'<= 2':>14}")
    print("  (gradients in world household solves: all countries from the author's guess)")
    print(f"{'one household solve of ' + args.country + ' [s]':<58}{ref:>12.3f}{ref_it:>14d} it")
    print(f"{'one world household solve (all countries) [s]':<58}{world_ref:>12.3f}")
    print(f"{'one evaluation (solve + gradient) [s]':<58}{per_solve:>12.1f}")
    print(f"{'one best response (whole optimization) [s]':<58}{res.seconds:>12.0f}")


if __name__ == "__main__":
    main()
