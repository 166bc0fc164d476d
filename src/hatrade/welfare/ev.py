r"""Who gains: household welfare of a counterfactual (MODEL.md section 5, Propositions 2-3).

Equivalent variation (the paper's measure)
------------------------------------------
For a household in state :math:`(a, z)` of country :math:`i`, :math:`\lambda(a,z)` is the
proportional scaling of all of its income, at the *old* goods prices, that makes it as
well off as in the new equilibrium:

.. math::

    V^{old}(a, z; \lambda) = V^{new}(a, z),

where :math:`V^{old}(\cdot;\lambda)` solves the household problem with old goods prices
:math:`p_{ij}` and income scaled in the budget *and* the Euler equation,
:math:`p_j c + a' = \lambda (R a + w z + T)` with return :math:`\lambda R` on savings
(equivalently: the problem at :math:`(\lambda R, \lambda w, \lambda T)`). V includes
:math:`\psi` (MODEL.md 2). The gain is :math:`100(\lambda - 1)` percent.

All states are computed together (:func:`equivalent_variation`):

1. the new problem (one solve), and the old problem at :math:`\lambda = 1` with its exact
   derivative :math:`\partial V/\partial\lambda` for every state (one forward-mode
   direction through the fixed point, implicit differentiation) give a first guess
   :math:`\lambda^0 = 1 + (V^{new} - V^{old})/V^{old}_\lambda` per state;
2. one *batched* primal solve (vmapped over ``n_nodes`` values :math:`\lambda_k`, Chebyshev
   points spanning the guesses of the bulk of the states, none on a side of 1 where no
   guess lies, warm-started along the exact tangent) gives :math:`V^{old}(\cdot;\lambda_k)`
   for every state at once; a few states whose root falls outside, and the borrowers'
   first roots above 1 (below), get one more batch of nodes reaching past their predicted
   roots;
3. each state's :math:`\lambda` is the root of a cubic spline in :math:`\lambda` through
   its node values (clamped to the exact slope at 1), found by vectorized Newton with
   bisection; where the interpolation error estimate exceeds ``lam_tol`` (1e-4 in
   :math:`\lambda`, 0.01 percentage points of gain), a batch of nodes at those states'
   roots refines it (``refine_rounds`` = 1 batch by default: where the guesses spread
   widely, as for Canada in the paper's global cut, lambda from 1 to 1.23, the largest
   error against the verified solution falls from 3.3e-4 to 5.3e-5 with 4 more solves,
   10 -> 14, and to 4.9e-5 with a second batch, 18; ``python benchmarks/bench_welfare.py
   --country CAN --global --equilibrium --verify``, with ``--lam-tol 1`` and with
   ``--refine-rounds 2``);
4. optionally (``verify=True``), every state's residual is *evaluated* by solving the old
   problem at that state's own :math:`\lambda` (vmapped in chunks), and polished with
   secant steps until :math:`|V^{old}(a,z;\lambda) - V^{new}(a,z)| < 10^{-10}` in every
   state; the reported residuals are then those of actual solves.

Cost and accuracy (US households, 1000 states, baseline calibration, 10% cut of US import
costs at the published prices; ``python benchmarks/bench_welfare.py --verify``): steps 1-3
take 14 one-country primal solves (two batches of 4 for the bulk, one of 4 above it that
also brackets the borrowers' first roots above 1, see below) and one tangent, 12.7
household-solve equivalents in wall time (19.2 in EGM steps: solves at larger
:math:`\lambda` take more steps; the unit is one cold solve at the same tolerance, timed in
the same run). Against the verified solution, the interpolated :math:`\lambda` is within
1.3e-5 in every state (5.0e-5 for the first-root states; V within 1.1e-4). Step 4 reached
residuals below 1e-10 in all 1000 states (max 9.9e-11) with 2940 solves (4 rounds): exact,
but two orders of magnitude more work. That is the price of
exactness here, because :math:`V^{old}(a,z;\lambda)` is continuous but only *piecewise*
smooth in :math:`\lambda`: the discrete household problem interpolates linearly on the
asset grid, so its solution has a kink whenever a policy :math:`a'(a,z,j)` or an
endogenous grid point crosses a grid point. At the baseline calibration the slope
:math:`\partial V/\partial\lambda` (5-40) jumps by about 1e-2 (up to 1e-1) at such kinks,
which are about 1e-5 apart in :math:`\lambda` (measured on 401 values of :math:`\lambda`
in [1, 1.002]). No interpolation from a few nodes can be accurate to 1e-10 in V, and
more nodes barely help: 4, 8, 16 and 32 nodes (10, 14, 22 and 38 solves) leave largest
errors of 3.8e-5, 1.3e-5, 1.1e-5 and 1.2e-5 in :math:`\lambda` (3.4e-4, 1.1e-4, 6.2e-5 and
3.0e-5 in V) against the verified solution, outside the first-root states (about 5e-5
throughout) (``python benchmarks/bench_welfare.py --verify --n-nodes N``); the
interpolation error estimate (``residual_estimate``, leave-one-node-out) is reported per
state, and ``residual`` holds evaluated residuals only after ``verify=True``.

Borrowers near the limit, most with negative total income :math:`Ra + wz < 0`, are made
worse off by scaling all income up *a little* (:math:`\partial V/\partial\lambda \le 0`
at 1: they pay more interest), but
:math:`V^{old}(a,z;\lambda)` turns up again as :math:`\lambda` grows (the scaled return
:math:`\lambda R` makes saving worth more, and wage income grows). For those who are better
off, :math:`\lambda` is the *first root above 1*, the smallest scaling of income that makes
them as well off (``nonmonotone`` True); nodes are added above the bulk's range until
:math:`V^{old}` crosses :math:`V^{new}`, always below the largest :math:`\lambda` at which
consumption at the borrowing limit stays positive. (A root below 1, an income *cut* that
would help them by shrinking their interest bill, would not be a gain measure.)
At the baseline calibration these are 5 US states holding 5.6% of the households, with
gains of 4.8-7.3% (a 10% cut of US import costs). Where no root above 1 exists below that
bound, ``lam`` is NaN (``defined`` False, warned) and the Lucas measure is reported.

Published numbers
-----------------
The paper's US unilateral 10% cut reports a mean gain of about 1.35%, 2.9% for the poorest
expenditure quintile and 0.65% for the richest, no losers, R/w +4.6%, ACR 0.45%; global:
1.97% (ACR 0.73%); the log model 0.21% (unilateral) and 0.44% (global). With the EV above
(``python benchmarks/welfare_definitions.py baseline``, and ``global``) we get 1.34%, 2.97%
and 0.64%, no losers, R/w +4.64%, ACR 0.43%; global 1.96% (ACR 0.73%): the baseline's
published welfare is reproduced to within about 0.07 percentage points (the published ACR,
which depends on trade shares only, differs from ours by 0.02). The borrowers at the limit
matter: leaving them out (the first root above 1 not searched, as in earlier versions of
this module) gives 1.06%, 1.77% and 0.64%.

The log model is **not** reproduced: 0.47% and 0.74% against the published 0.21% and
0.44%. Proposition 3 gives a check that does not depend on the details of the measure:
with log utility and no :math:`\psi` the variety choice and the saving policy do not depend
on goods prices or on :math:`(a, z)`, so every household's home share is the country's and
its price-index gain is exactly the ACR term (0.30% and 0.52%; exact in every state when
wages and R are held fixed: ``tests/test_welfare.py::
test_log_preferences_finite_cut_lucas_gain_is_acr_in_every_state``); the rest are
factor-price and asset terms. In the global cut (R/w +0.6%) the Lucas measure is 0.51-0.55%
in every expenditure quintile (mean 0.524% against ACR 0.519%). The EV lies above the Lucas
measure where cash on hand :math:`Ra + wz` is below spending (a scaling of income is worth
less than the same scaling of consumption: borrowers) and below it for savers; 70% of US
households borrow in the log model (US assets about 0), so the mean EV lies above ACR:
borrowers 0.83%, savers 0.54% (unilateral: 0.47% and 0.46%, Lucas 0.29% and 0.48%). The
published unilateral 0.21% is below the EV of *every* state (the smallest is 0.22%), so no
weighting of these states reaches it. The log calibration itself is reproduced (beta to
6e-10, wages to 7e-7) and the same code reproduces the baseline's published welfare, so the
published log numbers must come from a computation MODEL.md does not describe. Other
definitions match no better (``python benchmarks/welfare_definitions.py log``, and
``global``): the Lucas measure 0.35%, a utilitarian EV (one lambda for the
distribution-weighted V) 0.46%, the utilitarian EV against the new distribution 0.36%,
scaling labor income only 0.36%, the cut with a floor at d = 1 0.46%; and the value at the
start of the transition path to the new steady state, instead of the new steady state's
value, raises the (linearized) mean by only 0.01 points in either model
(``python benchmarks/welfare_transition.py log``, and ``baseline``: the US wage falls 4.3%
on impact against 4.4% in the long run, R barely moves).
``tests/test_welfare.py::test_published_log_model_gains`` records the gap (strict xfail).

Consumption equivalent (Lucas)
------------------------------
:math:`g(a,z)` scales consumption of the old allocation in every period and state (choices
unchanged) so that it is worth :math:`V^{new}`. With the old policies, V splits exactly as
:math:`V = U_c + U_\psi` with
:math:`U_c = (I - \beta T)^{-1} \sum_j \pi_j u(c_j)` and
:math:`U_\psi = (I - \beta T)^{-1} \sum_j \pi_j (\psi_j - \sigma \log \pi_j)` (T the
household's Markov matrix over (a, z), the lottery weights of the value update), so
:math:`(1+g)^{1-\gamma} U_c + U_\psi = V^{new}` in closed form
(:math:`g = \exp((1-\beta)(V^{new} - V^{old})) - 1` at :math:`\gamma = 1`).

Proposition 2 (marginal changes)
--------------------------------
For a marginal change of log trade costs in a direction :math:`D_{ij}`, with the general
equilibrium responses of wages, interest rates and transfers (implicit function theorem on
the market-clearing conditions), the total derivative of every state's value is split as

.. math::

    dV = (I - \beta T)^{-1} \Big[\underbrace{-\textstyle\sum_j \pi_j u'(c_j) c_j\, d\log p_j}_{A}
    + \underbrace{\textstyle\sum_j \pi_j \frac{u'(c_j)}{p_j}(z\,dw + a\,dR + dT)}_{B}
    + \underbrace{\textstyle\sum_j \pi_j \big(\beta \partial_{a'} EV(a'_j) - \frac{u'(c_j)}{p_j}\big)
      da'_j}_{C} + L \Big]

(A substitution/goods prices, B factor prices, C the change in asset holdings times the
Euler-equation wedge, L the re-choice of varieties, zero by the logit envelope property),
checked against the total derivative computed directly (forward-mode AD through the fixed
point). Aggregate: :math:`dW = \sum \mu\, dV + \sum V d\mu`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.x64 import enable_x64
from hatrade.core.distribution import transition_matrix
from hatrade.core.household import HHParams, HHState, initial_state, policies, solve_fixed_point, utility
from hatrade.core.params import ParameterError

__all__ = ["EVResult", "CountryWelfare", "Decomposition", "equivalent_variation",
           "consumption_equivalent", "value_split", "country_welfare", "welfare",
           "acr_gain", "group_means", "expenditure_quintiles", "income_groups",
           "decompose", "household_problem", "ACR_THETA", "WELFARE_COLUMNS"]

log = logging.getLogger(__name__)

#: Trade elasticity of the ACR benchmark (MODEL.md 5: 100 (1/4.22) log(s_ii/s_ii')).
ACR_THETA: float = 4.22

#: Columns of ``welfare.csv`` (one row per state of each reported country).
WELFARE_COLUMNS = ("country", "a_index", "z_index", "assets", "z", "mass", "lambda",
                   "gain_percent", "cev_percent", "ev_residual", "ev_residual_verified",
                   "ev_gain_error_estimate_points", "ev_defined", "ev_first_root_above_one")

_tree_map = jax.tree_util.tree_map


# ----------------------------------------------------------------------------- inputs

@enable_x64
def household_problem(eq, country) -> tuple[HHParams, HHState]:
    """One country's household inputs at the equilibrium prices and its solved state."""
    from hatrade.core.markets import country_params, model_arrays

    i = eq.world.index(country) if isinstance(country, str) else int(country)
    arrs = model_arrays(eq.world, eq.household, eq.income)
    prm = country_params(arrs, jnp.asarray(eq.prices.w), jnp.asarray(eq.prices.R),
                         jnp.asarray(eq.prices.T), jnp.asarray(eq.prices.beta))
    take = lambda x: x[i]  # noqa: E731
    return _tree_map(take, prm), _tree_map(take, eq.state)


def _scale(prm: HHParams, lam) -> HHParams:
    """Income scaled by lam in the budget and the Euler equation: (lam R, lam w, lam T)."""
    return prm._replace(w=prm.w * lam, R=prm.R * lam, T=prm.T * lam)


# ----------------------------------------------------------------------------- jitted pieces

@partial(jax.jit, static_argnums=(2, 3))
def _solve_V(prm, x0, tol, max_iter):
    x, it = solve_fixed_point(prm, x0, tol, max_iter)
    return policies(x, prm).V, x, it


def _V_lam(prm, x0, lam, tol, max_iter):
    p = _scale(prm, lam)
    x, it = solve_fixed_point(p, x0, tol, max_iter)
    return policies(x, p).V, x, it


@partial(jax.jit, static_argnums=(3, 4))
def _V_lam_tangent(prm, x0, lam, tol, max_iter):
    """V(.; lam), its lam-derivative, the state and its lam-tangent (one lam)."""
    (V, x, it), (dV, dx, _) = jax.jvp(lambda lam_: _V_lam(prm, x0, lam_, tol, max_iter), (lam,),
                                      (jnp.ones_like(lam),))
    return V, dV, x, dx, it


@partial(jax.jit, static_argnums=(3, 4))
def _V_nodes(prm, x0s, lams, tol, max_iter):
    """Batched over nodes: V(.; lam) at every lam in ``lams`` (one vmapped primal solve)."""
    def one(x0, lam):
        V, x, it = _V_lam(prm, x0, lam, tol, max_iter)
        return V, x, it
    return jax.vmap(one)(x0s, lams)


@partial(jax.jit, static_argnums=(5, 6))
def _V_states(prm, x0s, lams, ia, iz, tol, max_iter):
    """Batched over states: V^old(a_s, z_s; lam_s), each state at its own lam (exact)."""
    def one(x0, lam, a, z):
        V, x, it = _V_lam(prm, x0, lam, tol, max_iter)
        return V[a, z], x, it
    return jax.vmap(one)(x0s, lams, ia, iz)


# ----------------------------------------------------------------------------- interpolation

def _hermite(t, h, fa, sa, fb, sb):
    """Cubic Hermite on [0, 1] (t), interval length h; value and d/dlam."""
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    d00, d10, d01, d11 = 6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, -6 * t2 + 6 * t, 3 * t2 - 2 * t
    val = h00 * fa + h10 * h * sa + h01 * fb + h11 * h * sb
    der = (d00 * fa + d10 * h * sa + d01 * fb + d11 * h * sb) / h
    return val, der


def _spline_slopes(lams, F, slope_at=None):
    """Node slopes of cubic splines through (lams, F[:, n]) for every column n.

    ``slope_at`` = (k, s): the exact derivative s (n,) at node k is imposed: a spline on
    each side of node k, clamped to s there and not-a-knot at the far end (two nodes on a
    side: the quadratic with slope s at node k).
    """
    from scipy.interpolate import CubicSpline

    K = len(lams)
    if K == 1:
        return np.zeros_like(F) if slope_at is None else np.asarray(slope_at[1])[None, :]
    if slope_at is None:
        if K == 2:
            sl = (F[1] - F[0]) / (lams[1] - lams[0])
            return np.stack([sl, sl])
        return CubicSpline(lams, F, axis=0, bc_type="not-a-knot")(lams, 1)
    k, s = slope_at
    S = np.empty_like(F)
    S[k] = s
    for idx in (np.arange(0, k + 1), np.arange(k, K)):
        if len(idx) < 2:
            continue
        x, y = lams[idx], F[idx]
        at_start = idx[0] == k
        if len(idx) == 2:
            chord = (y[1] - y[0]) / (x[1] - x[0])
            S[idx[1] if at_start else idx[0]] = 2.0 * chord - s
            continue
        bc = ((1, s), "not-a-knot") if at_start else ("not-a-knot", (1, s))
        S[idx] = CubicSpline(x, y, axis=0, bc_type=bc)(x, 1)
        S[k] = s
    return S


def _hermite_eval(lams, F, S, x):
    """Evaluate the piecewise Hermite interpolant (nodes lams (K,), F, S (K, n)) at x (n,)."""
    K = len(lams)
    k = np.clip(np.searchsorted(lams, x) - 1, 0, K - 2)
    n = np.arange(F.shape[1])
    h = lams[k + 1] - lams[k]
    t = (x - lams[k]) / h
    return _hermite(t, h, F[k, n], S[k, n], F[k + 1, n], S[k + 1, n])


def _hermite_roots(lams, F, S, guess):
    r"""Per column, the root of the piecewise Hermite interpolant of F nearest ``guess``.

    Returns (root, bracketed) where ``bracketed`` is False where F does not change sign on
    the nodes (the root is then a Newton extrapolation from the nearest end node).
    """
    K, n = F.shape
    cols = np.arange(n)
    sign = np.sign(F)
    change = (sign[:-1] * sign[1:] <= 0)  # (K-1, n) intervals with a sign change
    centers = 0.5 * (lams[:-1] + lams[1:])
    dist = np.abs(centers[:, None] - guess[None, :]) + np.where(change, 0.0, np.inf)
    k = np.argmin(dist, axis=0)
    bracketed = np.isfinite(dist[k, cols])
    h = lams[k + 1] - lams[k]
    fa, sa, fb, sb = F[k, cols], S[k, cols], F[k + 1, cols], S[k + 1, cols]
    lo, hi = np.zeros(n), np.ones(n)
    flo = fa
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.abs(fb - fa) > 0, fa / (fa - fb), 0.5)
    t = np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)
    for _ in range(80):
        val, der = _hermite(t, h, fa, sa, fb, sb)
        left = np.sign(val) == np.sign(flo)
        lo = np.where(left, t, lo)
        flo = np.where(left, val, flo)
        hi = np.where(left, hi, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            tn = t - val / (der * h)
        bad = ~np.isfinite(tn) | (tn <= lo) | (tn >= hi)
        tn = np.where(bad, 0.5 * (lo + hi), tn)
        if np.all(np.abs(tn - t) < 1e-15):
            t = tn
            break
        t = tn
    root = lams[k] + t * h
    if not np.all(bracketed):  # Newton from the nearest end node
        nb = ~bracketed
        end = np.where(np.abs(guess - lams[0]) < np.abs(guess - lams[-1]), 0, K - 1)
        fe, se = F[end, cols], S[end, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            ext = lams[end] - fe / np.where(se != 0, se, np.nan)
        root = np.where(nb, ext, root)
    return root, bracketed


def _first_crossing(lams, F):
    """Per column, the first node interval above lambda = 1 where F goes from < 0 to >= 0.

    Returns (k, found): interval [lams[k], lams[k+1]] (k meaningless where not found).
    """
    K, n = F.shape
    if K < 2:
        return np.zeros(n, int), np.zeros(n, bool)
    up = (lams[:-1] >= 1.0)[:, None] & (F[:-1] < 0) & (F[1:] >= 0)
    return np.argmax(up, axis=0), np.any(up, axis=0)


def _predict_crossing(lams, F):
    """Per column, the first zero above the top node of the parabola through three nodes of
    F in the top half of the range (its slope's line where the parabola has none); NaN
    where neither reaches zero above the top node."""
    top = lams[-1]
    if len(lams) < 3:
        return np.full(F.shape[1], np.nan)
    # the top node and the nodes nearest a quarter and a half of the range below it (nodes
    # too close together would measure the kinks of V_old rather than its curvature)
    span = top - lams[0]
    k = [len(lams) - 1]
    for d in (0.25, 0.5):
        j = int(np.argmin(np.abs(lams - (top - d * span)) + np.isin(np.arange(len(lams)), k)))
        k.append(j)
    k = np.array(k)
    x = lams[k] - top
    A = np.stack([np.ones(3), x, x ** 2], axis=1)
    c0, c1, c2 = np.linalg.solve(A, F[k])  # F(top + t) = c0 + c1 t + c2 t^2
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = c1 ** 2 - 4 * c2 * c0
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        r = np.stack([(-c1 - sq) / (2 * c2), (-c1 + sq) / (2 * c2)])
        r = np.where(r > 0, r, np.inf).min(axis=0)
        lin = np.where(c1 > 0, -c0 / c1, np.nan)
    t = np.where(np.isfinite(r), r, lin)
    return top + np.where(t > 0, t, np.nan)


def _loo_estimate(lams, F, S, lam, k1):
    """Interpolation error estimate (V units) at lam: leave-one-node-out prediction error of
    the interpolant at the interior nodes (over twice the spacing), halved, at the nodes
    bracketing lam. Node k1 (lam = 1, exact slope) is never left out."""
    K, n = F.shape
    if K < 4:
        return np.full(n, np.nan)
    loo = np.zeros((K, n))
    for k in range(1, K - 1):
        if k == k1:
            continue
        keep = np.array([j for j in range(K) if j != k])
        kk1 = int(np.searchsorted(lams[keep], lams[k1]))
        Sk = _spline_slopes(lams[keep], F[keep], (kk1, S[k1]))
        val, _ = _hermite_eval(lams[keep], F[keep], Sk, np.full(n, lams[k]))
        loo[k] = np.abs(val - F[k])
    inner = [k for k in range(1, K - 1) if k != k1]
    fill = loo[inner].max(axis=0) if inner else np.zeros(n)
    loo[0], loo[-1], loo[k1] = loo[1], loo[-2], np.maximum(loo[k1], 0.0)
    if k1 in (0, K - 1):
        loo[k1] = fill
    k = np.clip(np.searchsorted(lams, lam) - 1, 0, K - 2)
    cols = np.arange(n)
    return 0.5 * np.maximum(loo[k, cols], loo[k + 1, cols])


# ----------------------------------------------------------------------------- EV

@dataclass
class EVResult:
    r"""Equivalent variation of one country's households (arrays (Na, Nz)).

    Attributes
    ----------
    lam : :math:`\lambda(a, z)`; the gain is ``100 * (lam - 1)`` percent. NaN where the
        EV is not a gain measure (``defined`` False).
    V_old, V_new : values at the old and new equilibrium (hh_tol accuracy).
    dV_dlam : :math:`\partial V^{old}/\partial\lambda` at :math:`\lambda = 1` (exact, AD).
    residual : :math:`V^{old}(a,z;\lambda) - V^{new}(a,z)` evaluated by a solve at each
        state's own :math:`\lambda` (NaN when ``verified`` is False).
    residual_estimate : interpolation error estimate (leave-one-node-out), in V units.
    lam_error_estimate : the same in :math:`\lambda` (divided by the interpolant's slope at
        the root), comparable across countries (V's units scale with
        :math:`A_i^{1-\gamma}`); 100 times it estimates the error of ``gain_percent`` in
        percentage points (``python benchmarks/bench_welfare.py --verify``, US: largest
        actual error 5.0e-5, largest estimate 6.5e-5, the estimate above the actual error
        in 92% of the states).
    verified : whether ``residual`` was evaluated (``verify=True``).
    defined : False where no gain measure exists: the slope at 1 is not positive
        (borrowers near the limit, most with negative total income) and either the
        household is not better off or :math:`V^{old}` does not reach :math:`V^{new}` for
        any feasible :math:`\lambda > 1`. ``lam`` is NaN there; the Lucas measure is
        defined.
    nonmonotone : where :math:`\partial V^{old}/\partial\lambda \le 0` at 1; ``lam`` is
        then the first root above 1 (see the module docstring).
    bracketed : whether the root lay inside the node range.
    nodes : the :math:`\lambda` nodes (including 1).
    work : counters: ``solves`` (one-country primal solves, counting each batch member),
        ``tangents`` (forward-mode directions), ``iterations`` (EGM steps summed over
        batch members), seconds by stage, and ``solve_equivalents`` (wall time over one
        reference household solve, when a reference time is given).
    """

    country: str
    lam: np.ndarray
    V_old: np.ndarray
    V_new: np.ndarray
    dV_dlam: np.ndarray
    residual: np.ndarray
    residual_estimate: np.ndarray
    verified: bool
    defined: np.ndarray
    bracketed: np.ndarray
    nodes: np.ndarray
    work: dict = field(default_factory=dict)
    nonmonotone: np.ndarray | None = None
    lam_error_estimate: np.ndarray | None = None

    @property
    def gain_percent(self) -> np.ndarray:
        return 100.0 * (self.lam - 1.0)

    @property
    def max_residual(self) -> float:
        if not self.verified or not np.any(np.isfinite(self.residual)):
            return float("nan")
        return float(np.nanmax(np.abs(self.residual)))


def _reference_time(prm, tol, max_iter, repeat: int = 3):
    """(seconds, iterations) of one household solve from the author's initial guess
    (compiled first; the fastest of ``repeat``)."""
    x0 = initial_state(prm)
    V, _, it = _solve_V(prm, x0, tol, max_iter)
    V.block_until_ready()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        V, _, it = _solve_V(prm, x0, tol, max_iter)
        V.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return best, int(it)


@enable_x64
def reference_solve_time(eq, country, hh_tol: float = 1e-12, hh_max_iter: int = 5000,
                         repeat: int = 3):
    """Seconds and iterations of one household solve of ``country`` at ``eq``'s prices from
    the author's initial guess: the unit of "household-solve equivalents"."""
    prm, _ = household_problem(eq, country)
    return _reference_time(prm, hh_tol, hh_max_iter, repeat)


@enable_x64
def equivalent_variation(old, new, country, *, n_nodes: int = 8, verify: bool = False,
                         tol: float = 1e-10, hh_tol: float = 1e-12, hh_max_iter: int = 5000,
                         node_batch: int = 4, chunk: int = 64, max_rounds: int = 8,
                         lam_tol: float = 1e-4, refine_rounds: int = 1,
                         reference_seconds: float | None = None) -> EVResult:
    r"""Equivalent variation :math:`\lambda(a,z)` for every state of one country.

    Parameters
    ----------
    old, new : Equilibrium
        Baseline and counterfactual equilibria (same household grid and income process).
    country : str or int
    n_nodes : int
        Nodes of the batched solve besides :math:`\lambda = 1` (one primal solve each,
        vmapped ``node_batch`` at a time, warm-started along the exact tangent at
        :math:`\lambda = 1`).
    verify : bool
        Evaluate every state's residual by a solve at its own :math:`\lambda` and polish
        (secant steps) until all are below ``tol`` (about 2-3 solves per state, batched in
        ``chunk``): exact, but thousands of solve equivalents for 1000 states.
    tol : float
        Residual target for ``verify`` (V units).
    lam_tol, refine_rounds : float, int
        Target for the interpolation error estimate in :math:`\lambda` (1e-4: gains to
        about 0.01 percentage points): states above it get nodes at their roots, one batch
        per round, at most ``refine_rounds`` batches.
    hh_tol : float
        Household tolerance for all welfare solves (V is accurate to about this).
    reference_seconds : float, optional
        Seconds of one household solve, to report ``work["solve_equivalents"]``.

    Returns
    -------
    EVResult
    """
    t_start = time.perf_counter()
    ci = old.world.index(country) if isinstance(country, str) else int(country)
    code = old.world.countries[ci]
    if new.world.countries != old.world.countries:
        raise ParameterError("old and new equilibria have different countries.")
    prm_o, x_o = household_problem(old, ci)
    prm_n, x_n = household_problem(new, ci)
    if prm_o.a_grid.shape != prm_n.a_grid.shape or prm_o.z.shape != prm_n.z.shape:
        raise ParameterError("old and new equilibria have different household grids.")
    Na, Nz = prm_o.a_grid.shape[0], prm_o.z.shape[0]
    work = {"solves": 0, "tangents": 0, "iterations": 0, "seconds": {}}

    # 1. the new values, and the old ones at lam = 1 with their exact derivative
    t0 = time.perf_counter()
    V_new, _, it_n = _solve_V(prm_n, x_n, hh_tol, hh_max_iter)
    one = jnp.asarray(1.0)
    V1, S1, x1, dx1, it_1 = _V_lam_tangent(prm_o, x_o, one, hh_tol, hh_max_iter)
    _check_iter([it_n, it_1], hh_max_iter, code)
    V_new, V1, S1 = (np.asarray(a, float) for a in (V_new, V1, S1))
    work["solves"] += 2
    work["tangents"] += 1
    work["iterations"] += int(it_n) + int(it_1)
    work["seconds"]["new_and_lambda_1"] = time.perf_counter() - t0
    diff = (V_new - V1).ravel()
    S1f = S1.ravel()
    defined = S1f > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lam0 = 1.0 + np.where(defined, diff / S1f, 0.0)

    # 2. batched solves on nodes spanning the first guesses, and 3. the inversion per state
    t0 = time.perf_counter()
    target = V_new.ravel()
    local = np.abs(diff) <= 1e-3 * tol  # equal values (a zero change): the local root
    lams, F = np.array([1.0]), V1.reshape(1, -1)
    xs = HHState(x1.c[None], x1.v[None])
    if np.any(defined & ~local):
        # the bulk of the states sets the range; a few states with a small slope at 1 (far
        # roots) are reached by extra nodes below, so they do not thin out the bulk's nodes
        bulk = defined & ~local & (S1f >= 0.25 * np.median(S1f[defined]))
        g = lam0[bulk] if np.any(bulk) else lam0[defined & ~local]
        lo, hi = float(min(g.min(), 1.0)), float(max(g.max(), 1.0))
        width = max(hi - lo, 1e-6)
        # a margin beyond the guesses, but no nodes on a side of 1 without guesses: the
        # node at 1 (with its exact slope) closes the range there
        lo = lo - 0.1 * width if g.min() < 1.0 else 1.0
        hi = hi + 0.1 * width if g.max() > 1.0 else 1.0
        if lo == 1.0 or hi == 1.0:  # Chebyshev-Lobatto points of one side; 1 is solved
            kk = np.arange(1, n_nodes + 1)
            x = 0.5 - 0.5 * np.cos(np.pi * kk / max(n_nodes, 1))
            new_nodes = 1.0 + (hi - lo) * x if hi > 1.0 else 1.0 - (hi - lo) * x
        else:
            kk = np.arange(n_nodes)
            new_nodes = (0.5 * (lo + hi)
                         - 0.5 * (hi - lo) * np.cos(np.pi * kk / max(n_nodes - 1, 1))
                         if n_nodes > 1 else np.array([hi] if n_nodes else []))
    else:
        new_nodes = np.array([])
    # borrowers near the limit whose value falls with a small scaling but who are better
    # off: their EV is the first root above 1 (below)
    nonmono = ~defined & ~local & (diff > 0)
    stages = 0
    # lambda must keep consumption feasible at the borrowing limit: lam (R a_0 + w z + T)
    # > a_0 where total income there is negative; nodes stay below (a margin of 2%)
    inc0 = np.asarray(prm_o.R * prm_o.a_grid[0] + prm_o.w * prm_o.z + prm_o.T)
    a_min = float(prm_o.a_grid[0])
    with np.errstate(divide="ignore"):
        lam_max = float(np.min(np.where(inc0 < 0, a_min / inc0, np.inf)))
    lam_cap = 1.0 + 0.98 * (lam_max - 1.0) if np.isfinite(lam_max) else np.inf

    def solve_nodes(new_nodes):
        """Batched solves at new nodes; merged into (lams, F, xs), sorted by lambda."""
        nonlocal lams, F, xs
        new_nodes = new_nodes[new_nodes < lam_cap]
        if not len(new_nodes):
            return
        # batches of node_batch nodes of similar lambda (a vmapped loop runs until its
        # slowest member converges; convergence slows as beta lambda R approaches 1)
        new_nodes = np.sort(new_nodes)
        vals, sts = [], []
        for g0 in range(0, len(new_nodes), node_batch):
            grp = new_nodes[g0:g0 + node_batch]
            m = len(grp)
            # pad to node_batch (repeating the last node) so that _V_nodes compiles for
            # one batch size; the padded members are dropped below
            grp = np.concatenate([grp, np.full(node_batch - m, grp[-1])])
            near = np.argmin(np.abs(grp[:, None] - lams[None, :]), axis=1)
            dl = jnp.asarray(grp - lams[near])[:, None, None, None]
            x0s = HHState(jnp.clip(xs.c[jnp.asarray(near)] + dx1.c[None] * dl, 1e-12),
                          xs.v[jnp.asarray(near)] + dx1.v[None] * dl)
            Vk, xk, itk = _V_nodes(prm_o, x0s, jnp.asarray(grp), hh_tol, hh_max_iter)
            itk = np.asarray(itk)
            _check_iter(itk.tolist(), hh_max_iter, code)
            work["solves"] += node_batch
            work["iterations"] += int(itk.max()) * node_batch  # to the slowest member
            vals.append(np.asarray(Vk)[:m].reshape(m, -1))
            sts.append(HHState(xk.c[:m], xk.v[:m]))
        lams = np.concatenate([lams, new_nodes])
        F = np.concatenate([F] + vals)
        xs = HHState(*(jnp.concatenate([a] + [st[j] for st in sts])
                       for j, a in enumerate(xs)))
        order = np.argsort(lams)
        lams, F = lams[order], F[order]
        xs = HHState(*(a[jnp.asarray(order)] for a in xs))

    def fresh(new_nodes):
        new_nodes = np.asarray(new_nodes, float)
        if not len(new_nodes):
            return new_nodes
        return new_nodes[np.min(np.abs(new_nodes[:, None] - lams[None, :]), axis=1) > 1e-9]

    def invert():
        """Spline slopes, each state's root (the first root above 1 for the borrowers
        whose value falls at 1), and the interpolation error estimates (V, lambda)."""
        if len(lams) < 2:
            nan = np.full_like(lam0, np.nan)
            return S1f[None, :], lam0.copy(), np.zeros(lam0.shape, bool), nan, nan
        k1 = int(np.where(lams == 1.0)[0][0])
        S = _spline_slopes(lams, F, (k1, S1f))
        lam, bracketed = _hermite_roots(lams, F - target[None, :], S, lam0)
        if np.any(nonmono):
            cols = np.where(nonmono)[0]
            k, found = _first_crossing(lams, F[:, cols] - target[None, cols])
            guess = 0.5 * (lams[k] + lams[np.minimum(k + 1, len(lams) - 1)])
            r_up, _ = _hermite_roots(lams, F[:, cols] - target[None, cols], S[:, cols], guess)
            lam[cols] = np.where(found, r_up, np.nan)
            bracketed[cols] = found
        est = _loo_estimate(lams, F, S, lam, k1)
        # the same estimate in lambda: divided by |dV_old/dlambda| at the root (V's units
        # differ across countries, A^(1-gamma), so this is the comparable one)
        with np.errstate(divide="ignore", invalid="ignore"):
            _, der = _hermite_eval(lams, F, S, np.where(np.isfinite(lam), lam, 1.0))
            lam_est = np.where(np.isfinite(lam), est / np.abs(der), np.nan)
        return S, lam, bracketed, est, lam_est

    while True:
        new_nodes = fresh(new_nodes)
        if len(new_nodes):
            stages += 1
            solve_nodes(new_nodes)
        if len(lams) < 2:
            break
        S, lam, bracketed, est, lam_est = invert()
        far = defined & ~local & ~bracketed
        if not np.any(far) or stages >= 3:
            break
        # extra nodes towards the roots outside the range (a few states with far roots);
        # a batch above reaches the borrowers' predicted first roots above 1 too (below)
        ext = lam[far]
        span = lams[-1] - lams[0]
        above = ext[np.isfinite(ext) & (ext > lams[-1])]
        below = ext[np.isfinite(ext) & (ext < lams[0])]
        if not len(above) and not len(below):  # no usable extrapolation: widen both ways
            above, below = np.array([lams[-1] + span]), np.array([max(lams[0] - span, 0.05)])
        new_nodes = []
        if len(above):
            if np.any(nonmono):
                pn = _predict_crossing(lams, F[:, nonmono] - target[None, nonmono])
                above = np.concatenate([above, pn[np.isfinite(pn) & (pn > lams[-1])]])
            top = min(above.max() + 0.15 * (above.max() - lams[-1]), lams[-1] + 4 * span,
                      0.5 * (lams[-1] + lam_cap))
            new_nodes += list(np.linspace(lams[-1], top, node_batch + 1)[1:])
        if len(below):
            bot = max(below.min() - 0.1 * (lams[0] - below.min()), lams[0] - 4 * span, 0.05)
            new_nodes += list(np.linspace(bot, lams[0], 3)[:-1])
    # borrowers near the limit (dV/dlam <= 0 at 1) who are better off: V_old
    # first falls in lambda, then rises (lambda R makes saving worth more); their EV is the
    # first root above 1. Nodes above the range (one batch reaching the tangent
    # predictions, more if needed) until V_old crosses V_new in each such state.
    if np.any(nonmono):
        t1 = time.perf_counter()
        cols = np.where(nonmono)[0]
        step = max(0.5 * (lams.max() - 1.0), 0.01)
        for _ in range(max_rounds):
            if np.all(_first_crossing(lams, F[:, cols] - target[None, cols])[1]):
                break
            # predicted crossings: the parabola through the top three nodes (V_old turns up
            # there, convexly), else the tangent at the top node; one batch of nodes
            # reaching past the farthest prediction (not past the feasibility bound)
            top = lams.max()
            pred = _predict_crossing(lams, F[:, cols] - target[None, cols])
            pred = pred[np.isfinite(pred) & (pred > top)]
            reach = min(1.15 * (pred.max() - top), 4 * step) if len(pred) else step
            end = min(top + max(reach, 1e-4), 0.5 * (top + lam_cap))
            new_nodes = fresh(top + (end - top) * np.arange(1, node_batch + 1) / node_batch)
            if top >= lam_cap or not len(new_nodes) or new_nodes.max() <= top:
                break
            step *= 2.0
            stages += 1
            solve_nodes(new_nodes)
        work["seconds"]["gain_side"] = time.perf_counter() - t1

    S, lam, bracketed, est, lam_est = invert()
    # refinement: where the estimated error in lambda exceeds lam_tol, nodes at those
    # states' roots (quantiles of their lambdas; a batch per round)
    refined = 0
    for _ in range(refine_rounds):
        bad = np.isfinite(lam_est) & (lam_est > lam_tol) & ~local & (defined | nonmono)
        if not np.any(bad):
            break
        cand = np.unique(np.quantile(lam[bad], (np.arange(node_batch) + 0.5) / node_batch))
        cand = cand[(cand < lam_cap)
                    & (np.min(np.abs(cand[:, None] - lams[None, :]), axis=1) > 1e-6)]
        if len(cand) > 1:  # nodes closer than 1e-6 measure kinks, not the curve
            cand = cand[np.concatenate([[True], np.diff(cand) > 1e-6])]
        if not len(cand):
            break
        stages += 1
        refined += len(cand)
        solve_nodes(cand)
        S, lam, bracketed, est, lam_est = invert()
    work["refinement_nodes"] = refined
    defined = defined | (nonmono & np.isfinite(lam))
    work["node_stages"] = stages
    work["seconds"]["nodes_and_inversion"] = time.perf_counter() - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(local, 1.0 + np.where(S1f != 0, diff / S1f, 0.0), lam)
    est = np.where(local, np.abs(diff), est)
    undefined = ~defined & ~local
    lam = np.where(undefined, np.nan, lam)
    est = np.where(undefined, np.nan, est)
    with np.errstate(divide="ignore", invalid="ignore"):  # the slope at the root is S1f there
        lam_est = np.where(local, np.abs(diff) / np.abs(S1f), lam_est)
    lam_est = np.where(undefined, np.nan, lam_est)
    bracketed = bracketed & ~undefined

    # 4. optional: evaluate every residual exactly, polish with secant steps
    residual = np.full(Na * Nz, np.nan)
    if verify:
        t0 = time.perf_counter()
        todo = np.where(~undefined & ~local)[0]
        residual[local] = diff[local] - S1f[local] * (lam[local] - 1.0)
        if len(todo):
            lam_v, res_v, info = _verify(prm_o, lams, F, S, xs, lam, target, todo, Na, Nz, tol,
                                         hh_tol, hh_max_iter, chunk, max_rounds, code)
            lam[todo], residual[todo] = lam_v, res_v
            work["solves"] += info["solves"]
            work["iterations"] += info["iterations"]
            work["verify_rounds"] = info["rounds"]
        work["seconds"]["verify"] = time.perf_counter() - t0
    work["seconds"]["total"] = time.perf_counter() - t_start
    if reference_seconds:
        work["reference_seconds"] = float(reference_seconds)
        work["solve_equivalents"] = work["seconds"]["total"] / reference_seconds
        if verify:
            work["solve_equivalents_without_verify"] = (
                (work["seconds"]["total"] - work["seconds"]["verify"]) / reference_seconds)
    far = ~undefined & ~local & ~bracketed
    if np.any(far) and not verify:
        mass = float(np.sum(np.asarray(old.lam[ci]).ravel()[far]))
        worst = np.nanmax(np.abs(est[far])) if np.any(np.isfinite(est[far])) else np.nan
        log.warning("%s: in %d states%s the root lambda lies outside the solved lambda nodes "
                    "(extrapolated from the nearest node; estimated |error| up to %.1e, "
                    "lambda from %.3g to %.3g): rerun with verify=True (--verify-ev) for exact "
                    "residuals there.", code, int(far.sum()), f" (mass {mass:.2e})", worst,
                    np.nanmin(lam[far]), np.nanmax(lam[far]))
    n_bad = int(undefined.sum())
    if n_bad:
        log.warning("%s: in %d states V_old decreases in lambda at 1 (borrowers near the "
                    "limit) and either they are worse off or no feasible lambda above 1 (below "
                    "%.4g, where consumption at the borrowing limit stays positive) makes them "
                    "as well off as in the new equilibrium: the equivalent variation is not a "
                    "gain measure there "
                    "(lambda = NaN; the Lucas measure is reported).", code, n_bad, lam_max)
    shp = (Na, Nz)
    return EVResult(country=code, lam=lam.reshape(shp), V_old=V1, V_new=V_new, dV_dlam=S1,
                    residual=residual.reshape(shp), residual_estimate=est.reshape(shp),
                    lam_error_estimate=lam_est.reshape(shp),
                    verified=bool(verify), defined=(~undefined).reshape(shp),
                    bracketed=bracketed.reshape(shp), nodes=lams, work=work,
                    nonmonotone=(~(S1f > 0) & ~local).reshape(shp))


def _check_iter(its, max_iter, code):
    if any(int(i) >= max_iter for i in np.ravel(its)):
        from hatrade.core.errors import EquilibriumError
        raise EquilibriumError(f"{code}: a welfare household solve did not converge in "
                               f"{max_iter} iterations; try a larger hh_max_iter.")


def _verify(prm, lams, F, S, xs, lam, target, todo, Na, Nz, tol, hh_tol, hh_max_iter, chunk,
            max_rounds, code):
    """Solve at every state's own lam; secant polish until |residual| < tol.

    Works on the states ``todo``; returns (lam, residual, info) for them. The reported
    lam is the evaluated point with the smallest |residual| (never an unevaluated update).
    """
    nall = Na * Nz
    ia_all, iz_all = np.divmod(np.arange(nall), Nz)
    n = len(todo)
    chunk = max(1, min(chunk, n))  # one compiled batch shape for every round
    ia, iz, tgt = ia_all[todo], iz_all[todo], target[todo]
    k = np.argmin(np.abs(lams[:, None] - lam[todo][None, :]), axis=0)
    slope_interp = _hermite_eval(lams, F[:, todo], S[:, todo], lam[todo])[1]
    cur = lam[todo].copy()
    prev_l, prev_r = np.full(n, np.nan), np.full(n, np.nan)
    best_l, best_r, best_s = cur.copy(), np.full(n, np.inf), np.full(n, np.nan)
    st_c = st_v = None
    active = np.arange(n)
    solves = iters = rounds = 0
    while len(active) and rounds < max_rounds:
        rounds += 1
        out_V = np.empty(len(active))
        new_c, new_v = [], []
        for s0 in range(0, len(active), chunk):
            idx = active[s0:s0 + chunk]
            m = len(idx)
            sel = np.concatenate([idx, np.repeat(idx[-1:], chunk - m)])  # one compiled shape
            if st_c is None:
                x0 = HHState(xs.c[jnp.asarray(k[sel])], xs.v[jnp.asarray(k[sel])])
            else:
                x0 = HHState(st_c[jnp.asarray(sel)], st_v[jnp.asarray(sel)])
            Vs, xo, its = _V_states(prm, x0, jnp.asarray(cur[sel]), jnp.asarray(ia[sel]),
                                    jnp.asarray(iz[sel]), hh_tol, hh_max_iter)
            its = np.asarray(its)
            _check_iter(its[:m], hh_max_iter, code)
            out_V[s0:s0 + m] = np.asarray(Vs)[:m]
            new_c.append((idx, xo.c[:m]))
            new_v.append((idx, xo.v[:m]))
            solves += m
            iters += int(its.max()) * chunk
        if st_c is None:
            st_c = jnp.zeros((n,) + xs.c.shape[1:], xs.c.dtype)
            st_v = jnp.zeros((n,) + xs.v.shape[1:], xs.v.dtype)
        for (idx, c), (_, v) in zip(new_c, new_v):
            st_c = st_c.at[jnp.asarray(idx)].set(c)
            st_v = st_v.at[jnp.asarray(idx)].set(v)
        r = out_V - tgt[active]
        better = np.abs(r) < best_r[active]
        best_l[active[better]] = cur[active[better]]
        best_r[active[better]] = np.abs(r[better])
        best_s[active[better]] = r[better]
        pl, pr = prev_l[active], prev_r[active]
        with np.errstate(divide="ignore", invalid="ignore"):
            sec = (r - pr) / (cur[active] - pl)
        use_sec = np.isfinite(sec) & (sec > 0)
        slope = np.where(use_sec, sec, slope_interp[active])
        prev_l[active], prev_r[active] = cur[active], r
        done = np.abs(r) < tol
        cur[active[~done]] = cur[active[~done]] - (r / slope)[~done]
        active = active[~done]
        log.info("%s: EV verification round %d: %d states above %.0e (max |residual| %.2e)",
                 code, rounds, len(active), tol, float(np.max(np.abs(r))))
    if len(active):
        log.warning("%s: %d states did not reach an EV residual below %.0e in %d rounds "
                    "(best %.2e)", code, len(active), tol, max_rounds, float(best_r[active].max()))
    return best_l, best_s, {"solves": solves, "rounds": rounds, "iterations": iters}


# ----------------------------------------------------------------------------- CEV

@enable_x64
def value_split(eq, country):
    r"""Policy evaluation of the old allocation: :math:`U_c`, :math:`U_\psi` and the check.

    Returns (U_c, U_psi, T) with :math:`U_c + U_\psi = V` up to the household tolerance
    (arrays (Na, Nz); T the (Na Nz)^2 Markov matrix).
    """
    ci = eq.world.index(country) if isinstance(country, str) else int(country)
    prm, x = household_problem(eq, ci)
    pol = policies(x, prm)
    Na, Nz, _ = pol.c.shape
    T = transition_matrix(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    r_c = jnp.sum(pol.pi * utility(pol.c, prm.gamma), axis=-1).ravel()
    r_psi = jnp.sum(pol.pi * (prm.psi[None] - prm.sigma * jnp.log(jnp.clip(pol.pi, 1e-300))),
                    axis=-1).ravel()
    A = jnp.eye(Na * Nz) - prm.beta * T
    U = jnp.linalg.solve(A, jnp.stack([r_c, r_psi], axis=1))
    return (np.asarray(U[:, 0]).reshape(Na, Nz), np.asarray(U[:, 1]).reshape(Na, Nz),
            np.asarray(T))


@enable_x64
def consumption_equivalent(old, V_new, country) -> tuple[np.ndarray, float]:
    r"""Lucas consumption equivalent :math:`g(a,z)` (fraction) for target values ``V_new``.

    Solves :math:`(1+g)^{1-\gamma} U_c + U_\psi = V^{new}` per state (the old allocation,
    all consumption scaled by 1+g). Returns (g, split_error) where split_error is
    :math:`\max|U_c + U_\psi - V^{old}|` (the policy evaluation check).
    """
    ci = old.world.index(country) if isinstance(country, str) else int(country)
    U_c, U_psi, _ = value_split(old, ci)
    prm, x = household_problem(old, ci)
    V_old = np.asarray(policies(x, prm).V)
    err = float(np.max(np.abs(U_c + U_psi - V_old)))
    gamma = float(old.household.gamma)
    beta = float(old.beta)
    V_new = np.asarray(V_new, float)
    if abs(gamma - 1.0) < 1e-12:
        g = np.exp((1.0 - beta) * (V_new - U_c - U_psi)) - 1.0
    else:
        ratio = (V_new - U_psi) / U_c
        with np.errstate(invalid="ignore"):
            g = np.where(ratio > 0, ratio ** (1.0 / (1.0 - gamma)) - 1.0, np.nan)
    return g, err


# ----------------------------------------------------------------------------- summaries

@enable_x64
def acr_gain(old, new, country, theta: float = ACR_THETA) -> float:
    r"""ACR benchmark in percent: :math:`100 (1/\theta) \log(s_{ii}/s'_{ii})`."""
    i = old.world.index(country) if isinstance(country, str) else int(country)
    return 100.0 / theta * math.log(old.trade_shares[i, i] / new.trade_shares[i, i])


def _quantile_groups(key, mass, edges):
    """Exact fractional assignment of states to mass quantile groups of ``key``.

    Returns W (n_groups, n_states): the mass of each state in each group (states that
    straddle a boundary are split). Ties are broken by state order (stable sort).
    """
    key, mass = np.ravel(key), np.ravel(mass)
    order = np.argsort(key, kind="stable")
    m = mass[order] / mass.sum()
    cum_hi = np.cumsum(m)
    cum_lo = cum_hi - m
    W = np.zeros((len(edges) - 1, key.size))
    for g in range(len(edges) - 1):
        a, b = edges[g], edges[g + 1]
        W[g, order] = np.clip(np.minimum(cum_hi, b) - np.maximum(cum_lo, a), 0.0, None)
    return W * mass.sum()


def group_means(values, W) -> np.ndarray:
    """Mass-weighted mean of ``values`` (states) in each group (rows of W); states where
    ``values`` is NaN are left out (the group's weights renormalized)."""
    v = np.ravel(values)
    ok = np.isfinite(v)
    Wk = W[:, ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (Wk @ v[ok]) / Wk.sum(axis=1)


def expenditure_quintiles(eq, country):
    r"""Expenditure :math:`e(a,z) = \sum_j \pi_j p_j c_j` and quintile weights (5, n)."""
    i = eq.world.index(country) if isinstance(country, str) else int(country)
    pol = eq.policies
    e = np.sum(pol.pi[i] * pol.c[i] * eq.p[i][None, None, :], axis=-1)
    return e, _quantile_groups(e, eq.lam[i], np.linspace(0, 1, 6))


INCOME_GROUPS = {"bottom_20": (0.0, 0.2), "below_median": (0.0, 0.5),
                 "median_45_55": (0.45, 0.55), "above_median": (0.5, 1.0), "top_20": (0.8, 1.0)}


def income_groups(eq, country):
    r"""Labor income :math:`w z` and weights of the income groups (MODEL.md 5: below/above
    median, the 45-55th percentile band, bottom/top 20%). Ties (states with the same z) are
    split in asset order. Returns (income (Na, Nz), {group: weights (n,)})."""
    i = eq.world.index(country) if isinstance(country, str) else int(country)
    Na = eq.lam.shape[1]
    inc = np.broadcast_to(eq.prices.w[i] * np.asarray(eq.income.z)[None, :], (Na, len(eq.income.z)))
    # tie-break by assets: add a tiny increasing term (states are a-major)
    key = inc + 1e-12 * np.arange(inc.size).reshape(inc.shape) / inc.size
    out = {}
    for name, (a, b) in INCOME_GROUPS.items():
        out[name] = _quantile_groups(key, eq.lam[i], np.array([a, b]))[0]
    return np.asarray(inc), out


@dataclass
class CountryWelfare:
    """Welfare of one country's households: per-state table and summary."""

    country: str
    ev: EVResult
    cev: np.ndarray
    table: object  # pandas DataFrame (WELFARE_COLUMNS)
    summary: dict


@enable_x64
def country_welfare(cf_or_old, new=None, country=None, *, verify: bool = False,
                    n_nodes: int = 8, theta: float = ACR_THETA, hh_tol: float = 1e-12,
                    tol: float = 1e-10, reference_seconds: float | None = None) -> CountryWelfare:
    """EV, CEV and summaries for one country of a counterfactual.

    Parameters
    ----------
    cf_or_old : Counterfactual or Equilibrium (then ``new`` is the new equilibrium)
    country : str
    verify, n_nodes, hh_tol, tol : see :func:`equivalent_variation`.
    theta : trade elasticity of the ACR benchmark.

    Summary conventions: means are weighted by the baseline stationary distribution; the
    EV statistics leave out states where the EV is undefined (``ev.defined``; their mass
    is ``ev.undefined_mass`` and their mean Lucas gain is reported); a household *loses*
    when :math:`V^{new} < V^{old} - tol` (a comparison of values, so it is meaningful in
    every state).
    """
    import pandas as pd

    old, new = (cf_or_old.baseline, cf_or_old.new) if new is None else (cf_or_old, new)
    ci = old.world.index(country)
    ev = equivalent_variation(old, new, country, n_nodes=n_nodes, verify=verify, tol=tol,
                              hh_tol=hh_tol, reference_seconds=reference_seconds)
    g, split_err = consumption_equivalent(old, ev.V_new, country)
    mass = old.lam[ci]
    Na, Nz = mass.shape
    ia, iz = np.meshgrid(np.arange(1, Na + 1), np.arange(1, Nz + 1), indexing="ij")
    gain = ev.gain_percent
    cev_pc = 100.0 * g
    table = pd.DataFrame({
        "country": ev.country,
        "a_index": ia.ravel(), "z_index": iz.ravel(),
        "assets": np.repeat(old.a_grid[ci], Nz),
        "z": np.tile(np.asarray(old.income.z), Na),
        "mass": mass.ravel(), "lambda": ev.lam.ravel(), "gain_percent": gain.ravel(),
        "cev_percent": cev_pc.ravel(),
        "ev_residual": ev.residual.ravel(),
        "ev_residual_verified": ev.verified,
        # without verification: the interpolation error estimate of gain_percent
        "ev_gain_error_estimate_points": (
            np.full(Na * Nz, np.nan) if ev.verified or ev.lam_error_estimate is None
            else 100.0 * np.asarray(ev.lam_error_estimate).ravel()),
        "ev_defined": ev.defined.ravel(),
        # dV/dlam <= 0 at 1 (borrowers near the limit): lambda is the first root above 1
        "ev_first_root_above_one": (ev.nonmonotone & ev.defined).ravel(),
    }, columns=list(WELFARE_COLUMNS))
    _, Wq = expenditure_quintiles(old, ci)
    _, Wi = income_groups(old, ci)
    wsum = mass.sum()
    ok = ev.defined
    mean_gain = float(np.sum(mass[ok] * gain[ok]) / mass[ok].sum()) if ok.any() else float("nan")
    dV = ev.V_new - ev.V_old
    losers = float(np.sum(mass[dV < -tol]) / wsum)
    better = dV > tol
    worse = dV < -tol
    agree = np.where(ok, (np.sign(np.round(gain, 10)) == np.sign(np.round(cev_pc, 10))), True)
    sign_ok = ((cev_pc > 0) == better) | ~(better | worse)
    # social welfare (distribution-weighted V)
    W_old = float(np.sum(old.lam[ci] * ev.V_old))
    W_new = float(np.sum(new.lam[ci] * ev.V_new))
    W_new_old_dist = float(np.sum(old.lam[ci] * ev.V_new))
    est = ev.residual_estimate
    summary = {
        "mean_gain_percent": mean_gain,
        "median_gain_percent": _weighted_median(gain[ok], mass[ok]) if ok.any() else float("nan"),
        "mean_cev_percent": float(np.nansum(mass * cev_pc) / wsum),
        "acr_percent": acr_gain(old, new, ci, theta),
        "acr_theta": theta,
        "share_losers": losers,
        "quintile_gain_percent": {f"Q{k + 1}": float(v) for k, v in
                                  enumerate(group_means(gain, Wq))},
        "quintile_cev_percent": {f"Q{k + 1}": float(v) for k, v in
                                 enumerate(group_means(cev_pc, Wq))},
        "income_group_gain_percent": {k: float(group_means(gain, w[None])[0])
                                      for k, w in Wi.items()},
        "min_gain_percent": float(np.nanmin(gain)) if ok.any() else float("nan"),
        "max_gain_percent": float(np.nanmax(gain)) if ok.any() else float("nan"),
        "social_welfare": {"old": W_old, "new": W_new, "new_at_old_distribution": W_new_old_dist,
                           "change": W_new - W_old,
                           "change_households": W_new_old_dist - W_old,
                           "change_distribution": W_new - W_new_old_dist},
        "home_share": {"old": float(old.trade_shares[ci, ci]),
                       "new": float(new.trade_shares[ci, ci])},
        "ev": {"verified": ev.verified,
               "max_abs_residual": ev.max_residual,
               "max_residual_estimate": float(np.nanmax(est)) if np.any(np.isfinite(est))
               else float("nan"),
               "max_gain_error_estimate_points": (
                   float(100 * np.nanmax(ev.lam_error_estimate))
                   if np.any(np.isfinite(ev.lam_error_estimate)) else float("nan")),
               "states": int(mass.size),
               "first_root_above_one_states": int((ev.nonmonotone & ok).sum()),
               "first_root_above_one_mass": float(mass[ev.nonmonotone & ok].sum() / wsum),
               "undefined_states": int((~ok).sum()),
               "undefined_mass": float(mass[~ok].sum() / wsum),
               "undefined_cev_percent_mean": float(np.sum(mass[~ok] * cev_pc[~ok]) / mass[~ok].sum())
               if (~ok).any() else None,
               "unbracketed_states": int((ok & ~ev.bracketed).sum()),
               "nodes": ev.nodes.tolist(),
               "work": ev.work},
        "cev": {"policy_evaluation_error": split_err,
                "ev_sign_agreement_share": float(np.mean(agree[ok])) if ok.any() else None,
                "ev_sign_disagreement_mass": float(mass[~agree].sum() / wsum),
                "sign_matches_value_change": bool(np.all(sign_ok))},
    }
    return CountryWelfare(country=ev.country, ev=ev, cev=g, table=table, summary=summary)


def _weighted_median(x, w):
    x, w = np.ravel(x), np.ravel(w)
    o = np.argsort(x)
    c = np.cumsum(w[o]) / w.sum()
    return float(x[o][np.searchsorted(c, 0.5)])


def welfare(cf, countries=None, **kw) -> dict:
    """:func:`country_welfare` for several countries of a Counterfactual: {code: result}."""
    countries = list(cf.countries) if countries is None else list(countries)
    return {c: country_welfare(cf, country=c, **kw) for c in countries}


# ----------------------------------------------------------------------------- Prop. 2

@dataclass
class Decomposition:
    r"""Proposition 2 split of a marginal change (per unit change of log trade costs).

    Arrays (Na, Nz) in utils: ``total`` (dV by AD through the fixed point), ``A``
    (goods prices/substitution), ``B_wage``, ``B_interest``, ``B_transfer`` (factor prices
    and transfers; ``B`` their sum), ``C`` (asset holdings x Euler wedge), ``L`` (variety
    re-choice, zero by the logit envelope property, reported). ``sum_error`` =
    max |A + B + C + L - total|. ``dprices``: dw, dR, dT (all countries).
    ``dW``: aggregate split (households' dV at the old distribution, distribution change).
    ``dlog_home_share``: d log s_ii. ``gain_percent``: total / (dV/dlam) * 100, the
    marginal EV in percent per unit log change.
    """

    country: str
    total: np.ndarray
    A: np.ndarray
    B_wage: np.ndarray
    B_interest: np.ndarray
    B_transfer: np.ndarray
    C: np.ndarray
    L: np.ndarray
    sum_error: float
    dprices: dict
    dW: dict
    dlog_home_share: float
    gain_percent: np.ndarray
    general_equilibrium: bool

    @property
    def B(self):
        return self.B_wage + self.B_interest + self.B_transfer


def _eq_residual(arrs, M, financial, tariffs, beta, tol, max_iter):
    """Market-clearing residuals r(u, eps) for the implicit-function derivative.

    u = (w_1..w_{M-1}, R (1 or M), T (M, with tariffs)); eps scales log d along D.
    """
    from hatrade.core.markets import solve_households

    def f(u, eps, D, x0):
        w = jnp.concatenate([u[:M - 1], M - jnp.sum(u[:M - 1], keepdims=True)])
        k = M - 1
        if financial == "autarky":
            R = u[k:k + M]
            k += M
        else:
            R = jnp.broadcast_to(u[k], (M,))
            k += 1
        T = u[k:k + M] if tariffs else jnp.zeros(M)
        a2 = arrs._replace(d=arrs.d * jnp.exp(eps * D))
        agg, sol = solve_households(a2, w, R, T, beta, x0, tol, max_iter)
        Y = agg["Y"]
        parts = [((jnp.sum(agg["M"], axis=0) - Y) / Y)[1:]]
        parts.append(agg["A"] / Y if financial == "autarky"
                     else jnp.sum(agg["A"], keepdims=True) / jnp.sum(Y))
        if tariffs:
            parts.append((T * arrs.L - agg["G"]) / Y)
        return jnp.concatenate(parts)
    return f


@enable_x64
def decompose(eq, country, direction, *, general_equilibrium: bool = True,
              hh_tol: float = 1e-12, hh_max_iter: int = 5000) -> Decomposition:
    r"""Proposition 2: split a marginal change of log trade costs into A, B and C.

    Parameters
    ----------
    eq : Equilibrium (the point of linearization; beta fixed)
    country : str
    direction : (M, M) array or Scenario
        :math:`D_{ij} = d\log d_{ij}` per unit of the change (a Scenario: 1 on its selected
        pairs).
    general_equilibrium : bool
        True: wages, interest rates and transfers respond (implicit function theorem on
        the market-clearing conditions, exact Jacobian). False: all of them held fixed
        (then B = 0; with log utility, Proposition 3).
    """
    from hatrade.analysis.counterfactual import Scenario, selected_pairs
    from hatrade.core.markets import model_arrays, solve_households

    if isinstance(direction, Scenario):
        D = selected_pairs(eq.world, direction).astype(float)
    else:
        D = np.asarray(direction, float)
        if D.shape != (eq.world.M, eq.world.M):
            raise ParameterError(f"direction has shape {D.shape}; it must be "
                                 f"({eq.world.M}, {eq.world.M}).")
        D = D.copy()
        np.fill_diagonal(D, 0.0)
    ci = eq.world.index(country) if isinstance(country, str) else int(country)
    M = eq.world.M
    arrs = model_arrays(eq.world, eq.household, eq.income)
    w, R, T = (jnp.asarray(a) for a in (eq.prices.w, eq.prices.R, eq.prices.T))
    beta = jnp.asarray(eq.prices.beta)
    Dj = jnp.asarray(D)
    tariffs = eq.world.has_tariffs
    # refresh the state at the welfare tolerance
    x0 = eq.state
    if general_equilibrium:
        f = _eq_residual(arrs, M, eq.world.financial, tariffs, beta, hh_tol, hh_max_iter)
        parts = [np.asarray(eq.prices.w)[:M - 1]]
        parts.append(np.asarray(eq.prices.R) if eq.world.financial == "autarky"
                     else np.asarray(eq.prices.R)[:1])
        if tariffs:
            parts.append(np.asarray(eq.prices.T))
        u = jnp.asarray(np.concatenate(parts))
        Ju = jax.jit(jax.jacfwd(lambda uu: f(uu, 0.0, Dj, x0)))(u)
        _, Je = jax.jit(lambda: jax.jvp(lambda e: f(u, e, Dj, x0), (0.0,), (1.0,)))()
        du = -np.linalg.solve(np.asarray(Ju), np.asarray(Je))
        dw = np.concatenate([du[:M - 1], [-np.sum(du[:M - 1])]])
        k = M - 1
        if eq.world.financial == "autarky":
            dR = du[k:k + M]
            k += M
        else:
            dR = np.full(M, du[k])
            k += 1
        dT = du[k:k + M] if tariffs else np.zeros(M)
    else:
        dw, dR, dT = np.zeros(M), np.zeros(M), np.zeros(M)

    def world_fn(eps, dwv, dRv, dTv):
        a2 = arrs._replace(d=arrs.d * jnp.exp(eps * Dj))
        return solve_households(a2, w + eps * dwv, R + eps * dRv, T + eps * dTv, beta, x0, hh_tol,
                      hh_max_iter)

    @jax.jit
    def run(dwv, dRv, dTv):
        return jax.jvp(lambda e: world_fn(e, dwv, dRv, dTv), (0.0,), (1.0,))

    (agg, sol), (dagg, dsol) = run(jnp.asarray(dw), jnp.asarray(dR), jnp.asarray(dT))
    take = lambda x: np.asarray(x[ci])  # noqa: E731
    pol, dpol = _tree_map(take, sol["pol"]), _tree_map(take, dsol["pol"])
    prm, dprm = _tree_map(take, sol["prm"]), _tree_map(take, dsol["prm"])
    lam, dlam = take(sol["lam"]), take(dsol["lam"])
    Na, Nz, _ = pol.c.shape
    g = float(prm.gamma)
    uprime = pol.c ** (-g)
    a = np.asarray(prm.a_grid)[:, None, None]
    z = np.asarray(prm.z)[None, :, None]
    p = np.asarray(prm.p)[None, None, :]
    dlogp = np.asarray(dprm.p)[None, None, :] / p
    A_flow = np.sum(pol.pi * (-uprime * pol.c * dlogp), axis=-1)
    mu = pol.pi * uprime / p
    B_w = np.sum(mu * z * float(dprm.w), axis=-1)
    B_R = np.sum(mu * a * float(dprm.R), axis=-1)
    B_T = np.sum(mu * float(dprm.T), axis=-1)
    # C: Euler wedge times the change in savings; continuation slope of the interpolant
    Vv = np.asarray(pol.V)
    Wc = Vv @ np.asarray(prm.Pz).T  # W[k, z] = sum_z' P[z,z'] V[k, z']
    grid = np.asarray(prm.a_grid)
    hgrid = (grid[-1] - grid[0]) / (len(grid) - 1)
    kk = np.clip(np.floor((pol.a_p - grid[0]) / hgrid).astype(int), 0, len(grid) - 2)
    zi = np.broadcast_to(np.arange(Nz)[None, :, None], pol.a_p.shape)
    slope = (Wc[kk + 1, zi] - Wc[kk, zi]) / hgrid
    C_flow = np.sum(pol.pi * (float(prm.beta) * slope - uprime / p) * dpol.a_p, axis=-1)
    # L: re-choice of varieties (zero by the logit identity psi + v - sigma log pi = V)
    psi = np.asarray(prm.psi)[None]
    q = psi + pol.v - float(prm.sigma) * np.log(np.clip(pol.pi, 1e-300, None)) - float(prm.sigma)
    L_flow = np.sum(dpol.pi * q, axis=-1)
    Tm = np.asarray(transition_matrix(jnp.asarray(pol.a_p), jnp.asarray(pol.pi),
                                      jnp.asarray(grid), jnp.asarray(prm.Pz)))
    Amat = np.eye(Na * Nz) - float(prm.beta) * Tm
    flows = np.stack([A_flow.ravel(), B_w.ravel(), B_R.ravel(), B_T.ravel(), C_flow.ravel(),
                      L_flow.ravel()], axis=1)
    cum = np.linalg.solve(Amat, flows)
    A_, Bw_, BR_, BT_, C_, L_ = (cum[:, k].reshape(Na, Nz) for k in range(6))
    total = np.asarray(dpol.V)
    sum_err = float(np.max(np.abs(A_ + Bw_ + BR_ + BT_ + C_ + L_ - total)))
    Mij, dMij = np.asarray(agg["M"])[ci], np.asarray(dagg["M"])[ci]
    dlog_sii = dMij[ci] / Mij[ci] - dMij.sum() / Mij.sum()
    dW = {"households": float(np.sum(lam * total)), "distribution": float(np.sum(Vv * dlam))}
    dW["total"] = dW["households"] + dW["distribution"]
    # marginal EV in percent: total / dV/dlam at lam = 1
    prm_o, x_o = household_problem(eq, ci)
    _, S1, *_ = _V_lam_tangent(prm_o, x_o, jnp.asarray(1.0), hh_tol, hh_max_iter)
    gain = 100.0 * total / np.asarray(S1)
    return Decomposition(country=eq.world.countries[ci], total=total, A=A_, B_wage=Bw_,
                         B_interest=BR_, B_transfer=BT_, C=C_, L=L_, sum_error=sum_err,
                         dprices={"w": dw.tolist(), "R": dR.tolist(), "T": dT.tolist()},
                         dW=dW, dlog_home_share=float(dlog_sii), gain_percent=gain,
                         general_equilibrium=general_equilibrium)
