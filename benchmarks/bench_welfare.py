"""Benchmark: equivalent variation for all states of a country, in household-solve units.

The unit is one household solve of that country (Na x Nz x M at the welfare tolerance,
from the author's initial guess), timed in the same run. The welfare computation is timed
after a warm-up call (JIT compilation excluded from both). Reported:

* ``solve_equivalents``: wall time of the EV for all states / one household solve;
* ``iteration_equivalents``: EGM steps performed (summed over vmapped batch members; the
  tangent solve at lambda = 1 not included) / the reference solve's steps;
* the same for ``--verify`` (every residual evaluated by a solve at the state's own lambda);
* for comparison, the author's approach (a root-finder per state, each step a full
  household solve) on ``--root-states`` states: solves per state, extrapolated to all.

By default the counterfactual is the paper's 10% cut of US imports, evaluated at the
published baseline prices (partial equilibrium: the welfare cost does not depend on
whether prices clear markets); ``--equilibrium`` solves the new equilibrium first
(minutes). ``--small`` uses a 3-country world with 20 asset points instead.

    python benchmarks/bench_welfare.py [--country USA] [--n-nodes 10] [--verify]
    python benchmarks/bench_welfare.py --country CAN --global --equilibrium --verify
        [--lam-tol 1 | --refine-rounds 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np


def _setup(args):
    import hatrade
    from hatrade.analysis.counterfactual import (
        Counterfactual,
        Scenario,
        apply_scenario,
        run_counterfactual,
    )

    if args.small:
        from hatrade import Household, World

        w = World(
            countries=["H", "F", "G"],
            tfp=[1.0, 0.9, 1.1],
            labor=[1.0, 0.7, 0.5],
            d=[[1.0, 1.6, 1.8], [1.6, 1.0, 1.7], [1.8, 1.7, 1.0]],
        )
        hh = Household(beta=0.92, n_a=20, n_perm=2, n_iid=1)
        old = hatrade.solve_equilibrium(w, hh, solve_for="R", R_guess=1.02)
        country = "H"
    else:
        from hatrade.data import load_calibration

        cal = load_calibration(args.calibration)
        w = hatrade.ek_world(args.calibration)
        hh = hatrade.published_household(args.calibration).replace(beta=cal.beta)
        old = hatrade.evaluate(w, hh, cal.wages.values, 1.01, cal.beta)
        country = args.country
    which = {"all_pairs": True} if args.all_pairs else {"importer": country}
    sc = Scenario(name="bench", trade_cost_change=-0.10, allow_d_below_one=True, **which)
    if args.equilibrium:
        return run_counterfactual(old, sc), country
    w2 = apply_scenario(old.world, sc)
    new = hatrade.evaluate(
        w2, old.household, old.prices.w, old.prices.R, old.beta, income=old.income, state=old.state
    )
    return Counterfactual(sc, old, new), country


def _author_root_finder(cf, country, states, tol):
    """Brent's method per state on V_old(a,z;lam) - V_new(a,z), each evaluation a full
    household solve (cold start, as a per-state root-finder does). Returns solves/state."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import brentq

    from hatrade.core.household import initial_state, policies, solve_fixed_point
    from hatrade.welfare import equivalent_variation, household_problem
    from hatrade.welfare.problem import scale_income

    with jax.enable_x64(True):
        prm, _ = household_problem(cf.baseline, country)
        solve = jax.jit(
            lambda p: policies(solve_fixed_point(p, initial_state(p), tol, 5000)[0], p).V
        )
        ev = equivalent_variation(cf.baseline, cf.new, country, n_nodes=4)
        counts = []
        for a, z in states:
            n = [0]

            def f(lam, a=a, z=z, n=n):
                n[0] += 1
                return float(solve(scale_income(prm, jnp.asarray(lam)))[a, z]) - float(
                    ev.V_new[a, z]
                )

            brentq(f, 0.9, 1.2, xtol=1e-12, rtol=1e-14)
            counts.append(n[0])
    return counts


def _refine(args):
    return {} if args.refine_rounds is None else {"refine_rounds": args.refine_rounds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calibration", default="baseline")
    ap.add_argument("--country", default="USA")
    ap.add_argument("--n-nodes", type=int, default=8)
    ap.add_argument("--verify", action="store_true", help="also time the verified EV")
    ap.add_argument("--equilibrium", action="store_true", help="solve the new equilibrium")
    ap.add_argument("--small", action="store_true", help="3-country world, 20 asset points")
    ap.add_argument(
        "--root-states",
        type=int,
        default=0,
        help="run the per-state root-finder on this many states (slow)",
    )
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--global",
        dest="all_pairs",
        action="store_true",
        help="the 10%% cut of every pair's trade costs (default: the country's imports)",
    )
    ap.add_argument(
        "--lam-tol",
        type=float,
        default=1e-4,
        help="refinement target in lambda (a large value turns refinement off)",
    )
    ap.add_argument(
        "--refine-rounds",
        type=int,
        default=None,
        help="at most this many refinement batches (default: the package's)",
    )
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import jax

    from hatrade.welfare import equivalent_variation
    from hatrade.welfare.problem import reference_solve_time

    t0 = time.perf_counter()
    cf, country = _setup(args)
    setup_s = time.perf_counter() - t0
    out = {
        "country": country,
        "calibration": args.calibration,
        "small": args.small,
        "n_nodes": args.n_nodes,
        "setup_seconds": setup_s,
        "jax_devices": [str(d) for d in jax.devices()],
    }
    ref_s, ref_it = reference_solve_time(cf.baseline, country, hh_tol=1e-12, repeat=5)
    ref10_s, ref10_it = reference_solve_time(cf.baseline, country, hh_tol=1e-10, repeat=5)
    out.update(
        reference_seconds=ref_s,
        reference_iterations=ref_it,
        reference_seconds_tol1e10=ref10_s,
        reference_iterations_tol1e10=ref10_it,
    )

    equivalent_variation(
        cf.baseline, cf.new, country, n_nodes=args.n_nodes, lam_tol=args.lam_tol, **_refine(args)
    )  # compile
    best = None
    for _ in range(args.repeat):
        ev = equivalent_variation(
            cf.baseline,
            cf.new,
            country,
            n_nodes=args.n_nodes,
            lam_tol=args.lam_tol,
            **_refine(args),
        )
        if best is None or ev.work["seconds"]["total"] < best.work["seconds"]["total"]:
            best = ev
    # re-time the reference right after (load on shared machines drifts)
    ref_s2, _ = reference_solve_time(cf.baseline, country, hh_tol=1e-12, repeat=5)
    ref = min(ref_s, ref_s2)
    n_states = int(best.lam.size)
    out["ev"] = {  # JIT compilation excluded (warm-up call above)
        "states": n_states,
        "undefined_states": int((~best.defined).sum()),
        "first_root_above_one_states": int((best.nonmonotone & best.defined).sum()),
        "seconds": best.work["seconds"],
        "solve_equivalents": best.work["seconds"]["total"] / ref,
        "iteration_equivalents": best.work["iterations"] / ref_it,
        "primal_solves": best.work["solves"],
        "tangent_solves": best.work["tangents"],
        "refinement_nodes": best.work.get("refinement_nodes"),
        "node_stages": best.work.get("node_stages"),
        "max_residual_estimate": float(np.nanmax(best.residual_estimate)),
        "nodes": best.nodes.tolist(),
    }
    if args.verify:
        ev = equivalent_variation(
            cf.baseline,
            cf.new,
            country,
            n_nodes=args.n_nodes,
            lam_tol=args.lam_tol,
            verify=True,
            **_refine(args),
        )
        nm = ev.nonmonotone
        out["verified"] = {  # includes compiling the per-state batch once
            "seconds": ev.work["seconds"],
            "solve_equivalents": ev.work["seconds"]["total"] / ref,
            "iteration_equivalents": ev.work["iterations"] / ref_it,
            "primal_solves": ev.work["solves"],
            "rounds": ev.work.get("verify_rounds"),
            "max_abs_residual": ev.max_residual,
            "interpolation_error_lambda": float(np.nanmax(np.abs(ev.lam - best.lam)[~nm])),
            "interpolation_error_V": float(
                np.nanmax(np.abs((ev.lam - best.lam) * ev.dV_dlam)[~nm])
            ),
            "lam_error_estimate_max": float(np.nanmax(best.lam_error_estimate)),
            "lam_error_estimate_covers_share": float(
                np.mean((best.lam_error_estimate >= np.abs(ev.lam - best.lam))[np.isfinite(ev.lam)])
            ),
        }
        if nm.any():  # the first root above 1 (slope at 1 not positive): lambda error only
            out["verified"]["first_root_states"] = int(nm.sum())
            out["verified"]["interpolation_error_lambda_first_root"] = float(
                np.nanmax(np.abs(ev.lam - best.lam)[nm])
            )
    if args.root_states:
        rng = np.random.default_rng(0)
        ok = np.argwhere(best.defined)
        pick = ok[rng.choice(len(ok), size=min(args.root_states, len(ok)), replace=False)]
        t1 = time.perf_counter()
        counts = _author_root_finder(cf, country, [tuple(p) for p in pick], 1e-12)
        secs = time.perf_counter() - t1
        out["root_finder_per_state"] = {
            "states": len(counts),
            "solves_per_state": counts,
            "mean_solves_per_state": float(np.mean(counts)),
            "extrapolated_solves_all_states": float(np.mean(counts) * n_states),
            "seconds_per_state": secs / len(counts),
        }
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
