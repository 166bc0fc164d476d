"""Transitions (issue 17): speed and memory of the sequence-space solver.

(a) ``--jacobian``: the one-good (M = 1) household-block Jacobian, T = 300, in w and R
    (outputs C and A): hatrade's fake-news Jacobian (``hatrade.core.fakenews``) against
    sequence-jacobian's ``HetBlock.jacobian`` for the same block (the ``capped`` block of
    ``bench_core.py``: EGM with hatrade's flat extrapolation at the top), interleaved,
    minima; the two Jacobians' largest difference is printed too.
(b) ``--us-cut``: the 19-country 10% cut of US import costs (baseline calibration),
    T = 300, to a largest excess demand of 1e-8. Household-solve equivalents: the wall time
    of each stage over the wall time of one world household solve (all 19 countries, from
    the author's initial guess, to 1e-10 in c and v, stationary distributions included) at
    the new steady state's prices; each stage is run twice and the second (compiled) run
    counted. Peak memory: the process's maximum resident set size (getrusage).

(c) ``--horizons``: where the fake-news passes stop (docs/transitions.md): for each country
    at the baseline steady state, T = 300, the default truncation (1e-12) and every input
    direction (the solver takes the terminal steady state and the unknowns' directions,
    which decay alike), the horizons of the backward pass and the expectation vectors kept, and how fast news effects decay (the
    largest effect of news about period s, per 25 periods, from a log-linear fit).

    python benchmarks/transition.py [--jacobian] [--us-cut] [--horizons] [--periods 300]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from hatrade.analysis.counterfactual import (  # noqa: E402
    Scenario,
    apply_scenario,
    baseline_equilibrium,
    run_counterfactual,
)
from hatrade.analysis.transition import scenario_shocks  # noqa: E402
from hatrade.core.fakenews import fake_news_jacobian  # noqa: E402
from hatrade.core.markets import initial_states, model_arrays, solve_households  # noqa: E402
from hatrade.solve.transition import TransitionOptions, solve_transition  # noqa: E402


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _min_time(f, repeats=5):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_jacobian(T: int, repeats: int) -> None:
    import sys

    import hatrade as ht
    from hatrade.core.distribution import stationary_distribution
    from hatrade.core.household import policies, solve_fixed_point
    from hatrade.core.markets import country_params

    sys.path.insert(0, "tests")
    from test_fakenews import _ssj_household  # the same block as the test's

    print(f"\n=== (a) M = 1 household-block Jacobian, T = {T}: hatrade vs sequence-jacobian ===")
    gamma, beta, R = 1.45, 0.93, 1.01
    hh = ht.Household(gamma=gamma, sigma_eps=0.33, psi_slope=0.0, beta=beta)
    world = ht.World(countries=["A"], tfp=[1.0], labor=[1.0], d=[[1.0]])
    inc = ht.income_process(hh)
    arrs = model_arrays(world, hh, inc)
    args = (arrs, jnp.ones(1), jnp.asarray(R), jnp.zeros(1), jnp.asarray(beta))
    one = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
    prm, x0 = one(country_params(*args)), one(initial_states(*args))
    x, _ = solve_fixed_point(prm, x0, 1e-12, 20000)
    pol = policies(x, prm)
    lam = stationary_distribution(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    blk = _ssj_household()
    cal = {"Pi": np.asarray(inc.P), "a_grid": np.asarray(prm.a_grid), "z": np.asarray(inc.z),
           "w": 1.0, "r": R - 1.0, "beta": beta, "eis": 1.0 / gamma}  # fmt: skip
    print(f"grid {prm.a_grid.shape[0]} x {inc.z.shape[0]} income states; inputs w and R")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = blk.steady_state(cal, backward_tol=1e-12, forward_tol=1e-13)
        f_ssj = lambda: blk.jacobian(ss, inputs=["w", "r"], outputs=["A", "C"], T=T)  # noqa: E731
        f_ht = lambda: fake_news_jacobian(prm, x, lam, 1.0, T)  # noqa: E731
        J, Js = f_ht(), f_ssj()
        t_s, t_h = [], []
        for _ in range(repeats):  # interleaved
            t_h.append(_min_time(f_ht, 1))
            t_s.append(_min_time(f_ssj, 1))
    dA = np.max(np.abs(J[:, 1, :, 2] - np.asarray(Js["A"]["r"])))
    print(f"hatrade fake news (3 directions: p, w, R):  min {min(t_h):.3f} s")
    print(f"sequence-jacobian (2 inputs: w, r):         min {min(t_s):.3f} s")
    print(f"ratio hatrade / sequence-jacobian: {min(t_h) / min(t_s):.2f} (target <= 1)")
    print(f"max |dA/dR hatrade - sequence-jacobian| = {dA:.1e} (ssj's default one-sided h=1e-4)")


def bench_us_cut(T: int) -> None:
    print(f"\n=== (b) 19 countries, US 10% import-cost cut, T = {T}, tol 1e-8 ===")
    old = baseline_equilibrium("baseline")
    sc = Scenario(importer="USA", trade_cost_change=-0.10)
    final = apply_scenario(old.world, sc, warn=False)
    # unit: one world household solve at the new prices from the initial guess
    stage = {}
    for _rep in range(2):
        t0 = time.perf_counter()
        new = run_counterfactual(old, final, warn=False).new
        stage["new steady state"] = time.perf_counter() - t0
        print(f"  new steady state: {stage['new steady state']:.1f} s", flush=True)
    arrs = model_arrays(new.world, new.household, new.income)
    w, Rv = jnp.asarray(new.prices.w), jnp.asarray(new.prices.R)
    Tv, b = jnp.asarray(new.prices.T), jnp.asarray(new.beta)
    x0 = initial_states(arrs, w, Rv, Tv, b)
    solve = jax.jit(lambda x: solve_households(arrs, w, Rv, Tv, b, x, 1e-10, 5000)[0]["A"])
    solve(x0).block_until_ready()
    unit = _min_time(lambda: solve(x0).block_until_ready(), 3)
    shocks, _ = scenario_shocks(old.world, sc, T, 0)
    opts = TransitionOptions(periods=T)
    for _rep in range(2):
        t0 = time.perf_counter()
        sol = solve_transition(old, new, shocks, opts)
        total = time.perf_counter() - t0
        print(f"  transition: {total:.1f} s, peak {_peak_gb():.2f} GB", flush=True)
    unit = min(unit, _min_time(lambda: solve(x0).block_until_ready(), 3))  # before and after
    jac = sol.work["seconds"]["jacobian"]
    newt = sol.work["seconds"]["newton"]
    print(f"unit: one world household solve {unit:.2f} s (minimum of 3 before, 3 after)")
    print(f"new steady state: {stage['new steady state']:.1f} s = "
          f"{stage['new steady state'] / unit:.1f} solve equivalents")  # fmt: skip
    print(f"Jacobian (fake news, 19 countries x 19 directions, composed, LU): {jac:.1f} s = "
          f"{jac / unit:.1f}")  # fmt: skip
    print(f"quasi-Newton: {sol.iterations} iterations, {sol.work['path_evaluations']} path "
          f"evaluations, {newt:.1f} s = {newt / unit:.1f}")  # fmt: skip
    all_ = stage["new steady state"] + total
    print(f"everything: {all_:.1f} s = {all_ / unit:.1f} household-solve equivalents "
          "(target <= 60)")  # fmt: skip
    print(f"largest excess demand {sol.residual:.2e}, end gap {sol.end_gap:.2e}, "
          f"history {[f'{h:.1e}' for h in sol.history]}")  # fmt: skip
    ci = new.world.index("USA")
    print("US wage path (relative to old):", np.round(sol.w[:6, ci] / old.prices.w[ci], 5))
    print("R path:", np.round(sol.R[:6, 0], 6), "new", float(new.prices.R[0]))
    print(f"peak memory (max RSS): {_peak_gb():.2f} GB (target <= 4)")
    # the checks the 19-country run must pass (kept here, not in CI: the run costs minutes)
    gap_w = float(np.max(np.abs(sol.w[-1] - new.prices.w)))
    gap_R = float(np.max(np.abs(sol.R[-1] - new.prices.R)))
    print(f"end of the path against the new steady state: wages {gap_w:.1e}, R {gap_R:.1e}")
    if not (sol.converged and sol.residual < 1e-8 and gap_w < 1e-8 and gap_R < 1e-8):
        raise SystemExit("the 19-country transition failed its checks (converged, 1e-8)")


def bench_horizons(T: int) -> None:
    from hatrade.core.fakenews import fake_news_matrix
    from hatrade.core.markets import country_params

    base = baseline_equilibrium("baseline")
    arrs = model_arrays(base.world, base.household, base.income)
    prm = country_params(
        arrs, np.asarray(base.prices.w), np.asarray(base.prices.R), np.asarray(base.prices.T),
        base.beta,
    )  # fmt: skip
    rows = []
    for i, c in enumerate(base.world.countries):
        prm_i = type(prm)(*(x[i] for x in prm))
        x_i = type(base.state)(*(np.asarray(x)[i] for x in base.state))
        F = fake_news_matrix(prm_i, x_i, base.lam[i], np.asarray(arrs.L)[i], T + 1)
        peak = np.max(np.abs(F[0]), axis=(0, 2))  # largest effect of news about period s
        s = np.arange(peak.size)
        keep = peak > 0
        slope = np.polyfit(s[keep], np.log10(peak[keep]), 1)[0]
        rows.append((c, F.shape[2], F.shape[0] - 1, 10 ** (25 * slope)))  # row 0: Y_s
        print(f"{c}: {F.shape[2]} horizons of {T + 1}, {F.shape[0] - 1} expectation vectors of {T}; "
              f"decay per 25 periods {rows[-1][3]:.1e}", flush=True)  # fmt: skip
    S = np.array([r[1] for r in rows])
    d = np.array([r[3] for r in rows])
    print(f"horizons computed: median {np.median(S):.0f} (range {S.min()}-{S.max()}) of {T + 1}; "
          f"decay per 25 periods: median {np.median(d):.1e}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jacobian", action="store_true")
    ap.add_argument("--us-cut", action="store_true")
    ap.add_argument("--horizons", action="store_true")
    ap.add_argument("--periods", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if a.horizons:
        return bench_horizons(a.periods)
    both = not (a.jacobian or a.us_cut)
    if a.jacobian or both:
        bench_jacobian(a.periods, a.repeats)
    if a.us_cut or both:
        bench_us_cut(a.periods)


if __name__ == "__main__":
    main()
