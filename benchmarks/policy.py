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
    python benchmarks/policy.py --diagnose [--small]

``--small`` uses a 3-country world with 20 asset points (seconds). ``--diagnose`` takes one
step of the optimizer by hand (tariff 0.10, then 0.127 solved from the first point's exact
Jacobian, as L-BFGS-B's first step does) and reports why the Krylov gradient costs what it
costs there: the preconditioner's error against the exact Jacobian (the full block), the
spectral radius of :math:`I - F_u P^{-1}` and the condition number of :math:`F_u`, GMRES's
residual and derivative after every world direction, and what one world tangent direction
costs cold and warm-started from its exact tangent.
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


def _direction_costs(eq, unit: float) -> None:
    """One world tangent direction (a log-wage change of every country) cold and
    warm-started from its own exact tangent, in world household solves."""
    from hatrade.core.x64 import enable_x64

    enable_x64(_time_directions)(eq, unit)


def _time_directions(eq, unit: float) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hatrade.policy.gradient import instrumented_arrays
    from hatrade.policy.krylov import world_jvps

    M = eq.world.M
    arrs = instrumented_arrays(eq)
    w, T = jnp.asarray(eq.prices.w), jnp.asarray(eq.prices.T)
    R = jnp.broadcast_to(jnp.asarray(eq.prices.R), (M,))
    dw = jnp.asarray(np.random.default_rng(0).normal(size=(1, M)) * 0.01)
    zeros = jnp.zeros((1, M))
    dins = dict(p=dw[:, None, :] * jnp.ones((1, M, 1)), w=dw, R=zeros, T=zeros, tau=zeros)
    cold = jax.tree_util.tree_map(lambda a: jnp.zeros((1,) + a.shape), eq.state)

    def run(guess):
        out = world_jvps(arrs, w, R, T, jnp.asarray(eq.beta), eq.state, dins, 1e-10, 3000,
                         1e-10, guess)  # fmt: skip
        return jax.block_until_ready(out)

    exact = run(cold)[2]
    for label, guess in (("cold", cold), ("warm-started from its exact tangent", exact)):
        t0 = time.perf_counter()
        run(guess)
        print(f"one world tangent direction, {label}: {(time.perf_counter() - t0) / unit:.2f}")


def _diagnose(args) -> None:
    """One optimizer step by hand; see the module docstring."""
    import numpy as np

    from hatrade.policy.gradient import criterion_gradient
    from hatrade.policy.optimal import make_objective, policy_space, solve_policy, world_at

    base = _baseline(args.small)
    sp = policy_space(base.world, args.country, "tariff")
    obj = make_objective(base, args.country, args.criterion)
    th1, th2 = np.array([0.10]), np.array([0.127])
    eq1 = solve_policy(base, world_at(base.world, sp, th1), base)
    g1 = criterion_gradient(eq1, sp, obj, th1, method="block")
    eq2 = solve_policy(base, world_at(base.world, sp, th2), eq1, jacobian=g1.jacobian)
    unit = _world_solve_time(eq2)
    gb = criterion_gradient(eq2, sp, obj, th2, method="block", tangents=g1.tangents)
    criterion_gradient(eq2, sp, obj, th2, method="krylov", tangents=g1.tangents)  # compiled
    gk = criterion_gradient(eq2, sp, obj, th2, method="krylov", tangents=g1.tangents)
    Fu, P = np.asarray(gb.jacobian), np.asarray(eq2.jacobian)
    rho = np.max(np.abs(np.linalg.eigvals(np.eye(len(Fu)) - Fu @ np.linalg.inv(P))))
    print(f"tariff {th1[0]} -> {th2[0]}: {eq2.iterations} Newton iterations from the exact "
          f"Jacobian at {th1[0]}; one world household solve {unit:.2f} s")  # fmt: skip
    print(f"preconditioner P (the solve's Jacobian): |P - F_u| / |F_u| = "
          f"{np.linalg.norm(P - Fu) / np.linalg.norm(Fu):.1e}, spectral radius of "
          f"I - F_u P^-1 = {rho:.3f}, cond(F_u) = {np.linalg.cond(Fu):.2e}")  # fmt: skip
    print(f"block gradient (exact F_u): {gb.grad[0]:.10f}, {gb.directions} directions, "
          f"{gb.seconds / unit:.1f} world solves (warm-started from {th1[0]})")  # fmt: skip
    print(f"Krylov gradient: {gk.directions} directions, {gk.seconds / unit:.2f} world solves")
    print(f"{'direction':>10}{'GMRES residual':>18}{'derivative':>18}{'error':>12}")
    for k, (res, dC) in enumerate(gk.krylov_history[0]):
        print(f"{k + 1:>10d}{res:>18.2e}{dC:>18.10f}{abs(dC - gb.grad[0]):>12.1e}")
    _direction_costs(eq2, unit)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--country", default="USA")
    ap.add_argument("--criterion", default="utilitarian")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--diagnose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("jax", "absl", "hatrade.solve.newton"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.diagnose:
        return _diagnose(args)

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
