"""Welfare of the paper's US 10% cut under alternative definitions (issue 4's published gap).

Prints, for the US households of a unilateral (default) or global (`global`) cut, the mean
and quintile gains under docs/model.md's EV (all income scaled), the utilitarian EVs (same and
new distribution, linearized), the Lucas measure, an EV that scales labor income only, and
the compensating variation, and the same cut with a floor at d = 1; and, for Proposition 3's
reading of the log model, the ACR term with the EV and the Lucas measure of borrowers
(a < 0) and savers apart.
hatrade.welfare.ev's "Published numbers" section summarizes what they show.

    python benchmarks/welfare_definitions.py baseline          # or: log; add `global`
"""

import logging
import sys
import time

import numpy as np

import hatrade.welfare as W
from hatrade.analysis.counterfactual import Scenario, baseline_equilibrium, run_counterfactual
from hatrade.welfare import problem as P

logging.basicConfig(level=logging.WARNING)
cal = sys.argv[1] if len(sys.argv) > 1 else "baseline"
glob = len(sys.argv) > 2 and sys.argv[2] == "global"
t = time.time()
old = baseline_equilibrium(cal)
sc = (
    Scenario(all_pairs=True, trade_cost_change=-0.1, allow_d_below_one=True)
    if glob
    else Scenario(importer="USA", trade_cost_change=-0.1, allow_d_below_one=True)
)
cf = run_counterfactual(old, sc)
new = cf.new
print("solved", time.time() - t, flush=True)
ci = old.world.index("USA")
mu0, mu1 = old.lam[ci], new.lam[ci]


def summarize(ev, tag):
    g = ev.gain_percent
    ok = ev.defined
    _, Wq = W.expenditure_quintiles(old, ci)
    q = W.group_means(g, Wq)
    mean = np.sum(mu0[ok] * g[ok]) / mu0[ok].sum()
    print(
        tag,
        "mean %.3f" % mean,
        "Q",
        np.round(q, 3),
        "smallest %.3f" % np.min(g[ok]),
        "undefined mass %.4f" % mu0[~ok].sum(),
        flush=True,
    )
    return ev


ev = summarize(W.equivalent_variation(old, new, "USA"), "all income (ours)")
S = ev.dV_dlam
Wold = np.sum(mu0 * ev.V_old)
print(
    "aggregate lin EV same dist: %.3f"
    % (100 * np.sum(mu0 * (ev.V_new - ev.V_old)) / np.sum(mu0 * S))
)
print(
    "aggregate lin EV new dist : %.3f" % (100 * (np.sum(mu1 * ev.V_new) - Wold) / np.sum(mu0 * S))
)
g_new_w = ev.gain_percent
ok = ev.defined
print("mean weighted by new dist: %.3f" % (np.sum(mu1[ok] * g_new_w[ok]) / mu1[ok].sum()))
cev, _ = W.consumption_equivalent(old, ev.V_new, "USA")
print(
    "CEV mean %.3f" % (100 * np.sum(mu0 * cev)),
    "Q",
    np.round(W.group_means(100 * cev, W.expenditure_quintiles(old, ci)[1]), 3),
)
# Proposition 3 with log utility: every household's home share is the same, so its
# price-index gain is the ACR term; the EV exceeds the Lucas measure where cash on hand
# R a + w z is below consumption (borrowers: dV/dlambda < that of a consumption scaling)
# and falls short of it for savers
a = np.asarray(old.a_grid)[ci][:, None] * np.ones_like(mu0)
acr = W.acr_gain(old, new, "USA")
bor = (a < 0) & ok
sav = (a >= 0) & ok
print(
    "ACR %.3f; borrowers (a < 0): mass %.3f, mean EV %.3f, mean CEV %.3f; savers: mass %.3f, "
    "mean EV %.3f, mean CEV %.3f; mean assets %.4f"
    % (
        acr,
        mu0[bor].sum(),
        np.sum(mu0[bor] * g_new_w[bor]) / mu0[bor].sum(),
        100 * np.sum(mu0[bor] * cev[bor]) / mu0[bor].sum(),
        mu0[sav].sum(),
        np.sum(mu0[sav] * g_new_w[sav]) / mu0[sav].sum(),
        100 * np.sum(mu0[sav] * cev[sav]) / mu0[sav].sum(),
        np.sum(mu0 * a),
    ),
    flush=True,
)
orig = P.scale_income  # value_at looks it up when the solves are traced
P.scale_income = lambda prm, lam: prm._replace(w=prm.w * lam, T=prm.T * lam)
import jax

jax.clear_caches()
summarize(W.equivalent_variation(old, new, "USA"), "labor income only")
P.scale_income = orig
jax.clear_caches()
# compensating variation: lambda with V_new(a, z; lambda) = V_old(a, z), gain 1/lambda - 1;
# states whose root lies outside the solved nodes are extrapolated (warned) and reported
cv = W.equivalent_variation(new, old, "USA")
ok = cv.defined & cv.bracketed
g = 100 * (1 / cv.lam - 1)
print(
    "compensating variation (1/lambda - 1): mean %.3f over bracketed states (mass %.4f); "
    "%d states extrapolated, lambda from %.3g to %.3g"
    % (
        np.sum(mu0[ok] * g[ok]) / mu0[ok].sum(),
        mu0[ok].sum(),
        int((cv.defined & ~cv.bracketed).sum()),
        np.nanmin(cv.lam),
        np.nanmax(cv.lam),
    ),
    flush=True,
)
print("R/w change", cf.R_over_w_change_percent()[ci])
# the cut with a floor at d = 1 (the paper applies none; USA-CAN goes below 1)
from hatrade.analysis.counterfactual import apply_scenario

w1 = apply_scenario(old.world, sc)
d = w1.d.copy()
d = np.where(np.eye(len(d), dtype=bool), d, np.maximum(d, 1.0))
cf_floor = run_counterfactual(old, w1.replace(d=d, allow_d_below_one=False))
cw_floor = W.country_welfare(cf_floor, country="USA")
print(
    "floor at d = 1: mean %.3f ACR %.3f"
    % (cw_floor.summary["mean_gain_percent"], cw_floor.summary["acr_percent"]),
    flush=True,
)
