"""Welfare along the transition path (issue 4's published-gap check): does comparing values
at the start of the transition, instead of the new steady state's, move the US mean gains?

An unexpected, permanent 10% cut of US import costs (or of all trade costs: `global`),
beta fixed, the calibration's financial regime: the perfect-foresight transition from the
old steady state (its distribution at t = 0, the old R on the assets carried in) over T
periods (`hatrade.analysis.transition.run_transition`), and every US state's equivalent
variation at t = 0 of the path it faces beside the steady-state comparison's, both exact
inversions of the old steady state's value in lambda (`hatrade.welfare.transition.
transition_welfare`; the steady-state column is `run_counterfactual`'s new equilibrium,
the one `hatrade counterfactual` reports). Prints the US wage and R paths, the mean gain
(weighted by the old stationary distribution) and the quintile means of both, the
difference, and the same means over the states whose value rises with lambda at 1 (no
first root above 1: the states the linearized predecessor of this script kept).

    python benchmarks/welfare_transition.py baseline|log [T] [global]
"""

import logging
import sys
import time

import numpy as np

from hatrade.analysis.counterfactual import Scenario, baseline_equilibrium
from hatrade.analysis.transition import run_transition
from hatrade.welfare.transition import transition_welfare

USAGE = "usage: python benchmarks/welfare_transition.py baseline|log [T] [global]"


def parse(argv):
    args = list(argv)
    glob = "global" in args
    args = [a for a in args if a != "global"]
    if not args or args[0] not in ("baseline", "log") or len(args) > 2:
        raise SystemExit(USAGE)
    if len(args) == 2 and not (args[1].isdigit() and int(args[1]) >= 2):
        raise SystemExit(f"T = {args[1]!r} is not allowed: an integer >= 2. {USAGE}")
    return args[0], (int(args[1]) if len(args) == 2 else 300), glob


def masked_mean(mass, gain, keep):
    ok = keep & np.isfinite(gain)
    return float(np.sum(mass[ok] * gain[ok]) / mass[ok].sum())


def print_paths(tr, code, n=12):
    p = tr.paths[tr.paths["country"] == code].sort_values("period")
    w_old = float(np.asarray(tr.old.prices.w)[tr.old.world.index(code)])
    w_new = float(np.asarray(tr.new.prices.w)[tr.new.world.index(code)])
    print(f"{code} wage / old, t = 0..{n - 1}:", np.round(p["wage"].to_numpy()[:n] / w_old, 4))
    print(f"{code} wage / old, new steady state: {w_new / w_old:.4f}")
    print(f"R paid at t, t = 0..{n - 1}:", np.round(p["R"].to_numpy()[:n], 6))
    print(
        "R old, new steady state:",
        np.round(np.asarray(tr.old.prices.R, float).ravel()[:1], 6),
        np.round(np.asarray(tr.new.prices.R, float).ravel()[:1], 6),
    )


def print_welfare(w, mass):
    s = w.summary
    t, ss = s["transition"], s["steady_state"]
    print(f"\n{'US gain, %':<34}{'transition (t=0)':>17}{'steady state':>14}{'difference':>12}")
    rows = [("mean (EV, all defined states)", t["mean_gain_percent"], ss["mean_gain_percent"])]
    for q, v in t["quintile_gain_percent"].items():
        rows.append((f"  {q}", v, ss["quintile_gain_percent"][q]))
    et, es = w.ev_transition, w.ev_steady_state
    mono = ~np.asarray(es.nonmonotone, bool)  # the same states in both: dV_old/dlam > 0 at 1
    rows.append(
        (
            "mean, states with dV/dlam > 0",
            masked_mean(mass, et.gain_percent, mono & et.defined),
            masked_mean(mass, es.gain_percent, mono & es.defined),
        )
    )
    for tag, a, b in rows:
        print(f"{tag:<34}{a:>17.3f}{b:>14.3f}{a - b:>+12.3f}")
    print(
        f"share of losers: {s['share_losers_transition']:.4f} (transition), "
        f"{s['share_losers_steady_state']:.4f} (steady state); mass with dV/dlam <= 0 "
        f"(first root above 1): {mass[~mono].sum() / mass.sum():.4f}; "
        f"undefined mass (transition): {s['undefined_mass_transition']:.4f}"
    )


def main():
    cal, T, glob = parse(sys.argv[1:])
    logging.basicConfig(level=logging.WARNING)
    sc = (
        Scenario(all_pairs=True, trade_cost_change=-0.1, allow_d_below_one=True)
        if glob
        else Scenario(importer="USA", trade_cost_change=-0.1, allow_d_below_one=True)
    )
    t0 = time.perf_counter()
    old = baseline_equilibrium(cal)
    tr = run_transition(old, sc, periods=T)
    t1 = time.perf_counter()
    s = tr.summary()
    print(
        f"{cal}, {'global' if glob else 'US imports'} -10%, T = {T}: converged {s['converged']}, "
        f"{s['iterations']} iterations, largest excess demand {s['residual']:.1e}, "
        f"end gap {s['end_gap']:.1e} ({t1 - t0:.0f} s)"
    )
    print_paths(tr, "USA")
    w = transition_welfare(tr, "USA")
    print_welfare(w, np.asarray(old.lam[old.world.index("USA")]))
    print(f"welfare {time.perf_counter() - t1:.0f} s")


if __name__ == "__main__":
    main()
