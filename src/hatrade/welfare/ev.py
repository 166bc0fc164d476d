r"""Who gains: the equivalent variation of every household state (MODEL.md section 5).

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
   its node values (clamped to the exact slope at 1, :mod:`hatrade.welfare.interpolate`),
   found by vectorized Newton with bisection; where the interpolation error estimate
   exceeds ``lam_tol`` (1e-4 in :math:`\lambda`, 0.01 percentage points of gain), a batch
   of nodes at those states' roots refines it (``refine_rounds`` batches at most);
4. optionally (``verify=True``), every state's residual is *evaluated* by solving the old
   problem at that state's own :math:`\lambda` (vmapped in chunks), and polished with
   secant steps until :math:`|V^{old}(a,z;\lambda) - V^{new}(a,z)| < 10^{-10}` in every
   state; the reported residuals are then those of actual solves.

Steps 1-3 cost about as much as a dozen household solves; step 4 is exact but costs
several solves per state (the costs and errors are measured in ``benchmarks/README.md``,
``bench_welfare.py``). Exactness needs step 4 because :math:`V^{old}(a,z;\lambda)` is
continuous but only *piecewise* smooth in :math:`\lambda`: the discrete household problem
interpolates linearly on the asset grid, so its solution has a kink whenever a policy
:math:`a'(a,z,j)` or an endogenous grid point crosses a grid point, and no interpolation
from a few nodes can be accurate to 1e-10 in V. The interpolation error estimate
(``residual_estimate``, leave-one-node-out) is reported per state, and ``residual`` holds
evaluated residuals only after ``verify=True``.

Borrowers near the limit, most with negative total income :math:`Ra + wz < 0`, are made
worse off by scaling all income up *a little* (:math:`\partial V/\partial\lambda \le 0`
at 1: they pay more interest), but :math:`V^{old}(a,z;\lambda)` turns up again as
:math:`\lambda` grows (the scaled return :math:`\lambda R` makes saving worth more, and
wage income grows). For those who are better off, :math:`\lambda` is the *first root
above 1*, the smallest scaling of income that makes them as well off (``nonmonotone``
True); nodes are added above the bulk's range until :math:`V^{old}` crosses
:math:`V^{new}`, always below the largest :math:`\lambda` at which consumption at the
borrowing limit stays positive. (A root below 1, an income *cut* that would help them by
shrinking their interest bill, would not be a gain measure.) Where no root above 1 exists
below that bound, ``lam`` is NaN (``defined`` False, warned) and the Lucas measure
(:mod:`hatrade.welfare.lucas`) is reported.

Published numbers
-----------------
The paper's US unilateral 10% cut of import costs reports a mean gain of about 1.35%,
2.9% for the poorest expenditure quintile and 0.65% for the richest, no losers, R/w
+4.6%, ACR 0.45%; the global cut 1.97% (ACR 0.73%); the log model 0.21% (unilateral) and
0.44% (global). With this EV the baseline's published welfare is reproduced (the
borrowers at the limit, the first root above 1, carry much of the poorest quintile's
gain). The log model's is **not**: its published gains lie below its own ACR term, which
Proposition 3 makes every log household's price-index gain (with log utility and no
:math:`\psi` the variety choice and the saving policy do not depend on goods prices or on
:math:`(a, z)`; exact in every state when wages and R are held fixed:
``tests/test_welfare.py::test_log_preferences_finite_cut_lucas_gain_is_acr_in_every_state``),
and below the EV of every state, so no weighting of the states reaches them. The EV lies
above the Lucas measure where cash on hand :math:`Ra + wz` is below spending (borrowers)
and below it for savers. Other definitions match no better
(``benchmarks/welfare_definitions.py``: the Lucas measure, a utilitarian EV, labor income
only, a floor at d = 1; ``benchmarks/welfare_transition.py``: the value at the start of
the transition path). ``tests/test_welfare.py::test_published_log_model_gains`` records
the gap (strict xfail).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from hatrade.core.household import HHState
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.welfare.interpolate import (first_crossing, hermite_eval, hermite_roots,
                                         loo_estimate, predict_crossing, spline_slopes)
from hatrade.welfare.problem import (check_iterations, country_index, household_problem,
                                     solve_value, value_tangent, values_at_nodes)
from hatrade.welfare.verify import polish_roots

__all__ = ["EVResult", "EVOptions", "equivalent_variation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EVOptions:
    """Settings of :func:`equivalent_variation` (the defaults are its defaults; see its
    parameters)."""

    n_nodes: int = 8
    verify: bool = False
    tol: float = 1e-10
    hh_tol: float = 1e-12
    hh_max_iter: int = 5000
    node_batch: int = 4
    chunk: int = 64
    max_rounds: int = 8
    lam_tol: float = 1e-4
    refine_rounds: int = 1


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
        percentage points (compared with the verified error in ``benchmarks/README.md``).
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


@dataclass
class _Start:
    r"""What step 1 fixes for one country (flat arrays (n,) over states, a-major).

    ``prm`` the old problem; ``V_new``, ``V1``, ``S1`` (Na, Nz) the new values, the old ones
    at :math:`\lambda = 1` and their slope; ``dx1`` the slope of the old state (warm starts);
    ``diff`` :math:`V^{new} - V^{old}`, ``S1f`` the slope, ``target`` :math:`V^{new}`,
    ``lam0`` the first guesses; masks ``defined`` (slope > 0), ``local`` (no change),
    ``nonmono`` (slope <= 0 but better off: the first root above 1); ``lam_max`` the largest
    :math:`\lambda` with positive consumption at the borrowing limit, ``lam_cap`` the bound
    of the nodes below it.
    """

    code: str
    prm: object
    Na: int
    Nz: int
    V_new: np.ndarray
    V1: np.ndarray
    S1: np.ndarray
    dx1: HHState
    diff: np.ndarray
    S1f: np.ndarray
    target: np.ndarray
    lam0: np.ndarray
    defined: np.ndarray
    local: np.ndarray
    nonmono: np.ndarray
    lam_max: float
    lam_cap: float


@dataclass
class _Nodes:
    """The solved nodes, sorted: ``lams`` (K,), values ``F`` (K, n), states ``xs`` (K, ...)
    (warm starts), and ``stages`` (batches of new nodes so far)."""

    lams: np.ndarray
    F: np.ndarray
    xs: HHState
    stages: int = 0


class _Inversion(NamedTuple):
    """Node slopes ``S`` (K, n), roots ``lam``, ``bracketed``, error estimates in V (``est``)
    and in lambda (``lam_est``), per state."""

    S: np.ndarray
    lam: np.ndarray
    bracketed: np.ndarray
    est: np.ndarray
    lam_est: np.ndarray


# ----------------------------------------------------------------------------- step 1

def _start(old, new, ci: int, opt: EVOptions, work: dict) -> tuple[_Start, _Nodes]:
    """Step 1: the new values, and the old ones at lambda = 1 with their exact derivative."""
    code = old.world.countries[ci]
    prm_o, x_o = household_problem(old, ci)
    prm_n, x_n = household_problem(new, ci)
    if prm_o.a_grid.shape != prm_n.a_grid.shape or prm_o.z.shape != prm_n.z.shape:
        raise ParameterError("old and new equilibria have different household grids.")
    Na, Nz = prm_o.a_grid.shape[0], prm_o.z.shape[0]
    t0 = time.perf_counter()
    V_new, _, it_n = solve_value(prm_n, x_n, opt.hh_tol, opt.hh_max_iter)
    one = jnp.asarray(1.0)
    V1, S1, x1, dx1, it_1 = value_tangent(prm_o, x_o, one, opt.hh_tol, opt.hh_max_iter)
    check_iterations([it_n, it_1], opt.hh_max_iter, code)
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
    local = np.abs(diff) <= 1e-3 * opt.tol  # equal values (a zero change): the local root
    # borrowers near the limit whose value falls with a small scaling but who are better
    # off: their EV is the first root above 1
    nonmono = ~defined & ~local & (diff > 0)
    # lambda must keep consumption feasible at the borrowing limit: lam (R a_0 + w z + T)
    # > a_0 where total income there is negative; nodes stay below (a margin of 2%)
    inc0 = np.asarray(prm_o.R * prm_o.a_grid[0] + prm_o.w * prm_o.z + prm_o.T)
    a_min = float(prm_o.a_grid[0])
    with np.errstate(divide="ignore"):
        lam_max = float(np.min(np.where(inc0 < 0, a_min / inc0, np.inf)))
    lam_cap = 1.0 + 0.98 * (lam_max - 1.0) if np.isfinite(lam_max) else np.inf
    st = _Start(code=code, prm=prm_o, Na=Na, Nz=Nz, V_new=V_new, V1=V1, S1=S1, dx1=dx1,
                diff=diff, S1f=S1f, target=V_new.ravel(), lam0=lam0, defined=defined,
                local=local, nonmono=nonmono, lam_max=lam_max, lam_cap=lam_cap)
    nodes = _Nodes(lams=np.array([1.0]), F=V1.reshape(1, -1), xs=HHState(x1.c[None], x1.v[None]))
    return st, nodes


# ----------------------------------------------------------------------------- nodes

def _bulk_nodes(st: _Start, n_nodes: int) -> np.ndarray:
    """Chebyshev nodes spanning the first guesses of the bulk of the states.

    A few states with a small slope at 1 (far roots) are reached by extra nodes later, so
    they do not thin out the bulk's nodes; no nodes on a side of 1 without guesses (the
    node at 1, with its exact slope, closes the range there)."""
    defined, local, S1f, lam0 = st.defined, st.local, st.S1f, st.lam0
    if not np.any(defined & ~local):
        return np.array([])
    bulk = defined & ~local & (S1f >= 0.25 * np.median(S1f[defined]))
    g = lam0[bulk] if np.any(bulk) else lam0[defined & ~local]
    lo, hi = float(min(g.min(), 1.0)), float(max(g.max(), 1.0))
    width = max(hi - lo, 1e-6)
    lo = lo - 0.1 * width if g.min() < 1.0 else 1.0
    hi = hi + 0.1 * width if g.max() > 1.0 else 1.0
    if lo == 1.0 or hi == 1.0:  # Chebyshev-Lobatto points of one side; 1 is solved
        kk = np.arange(1, n_nodes + 1)
        x = 0.5 - 0.5 * np.cos(np.pi * kk / max(n_nodes, 1))
        return 1.0 + (hi - lo) * x if hi > 1.0 else 1.0 - (hi - lo) * x
    kk = np.arange(n_nodes)
    return (0.5 * (lo + hi) - 0.5 * (hi - lo) * np.cos(np.pi * kk / max(n_nodes - 1, 1))
            if n_nodes > 1 else np.array([hi] if n_nodes else []))


def _fresh(nodes: _Nodes, new_nodes) -> np.ndarray:
    """The candidate nodes not already solved (farther than 1e-9 from every node)."""
    new_nodes = np.asarray(new_nodes, float)
    if not len(new_nodes):
        return new_nodes
    return new_nodes[np.min(np.abs(new_nodes[:, None] - nodes.lams[None, :]), axis=1) > 1e-9]


def _solve_nodes(st: _Start, nodes: _Nodes, new_nodes, opt: EVOptions, work: dict) -> None:
    """Batched solves at new nodes (below ``lam_cap``), merged into ``nodes``, sorted.

    Batches of ``node_batch`` nodes of similar lambda (a vmapped loop runs until its slowest
    member converges; convergence slows as beta lambda R approaches 1), each member
    warm-started from the nearest solved node along the exact tangent at 1.
    """
    new_nodes = new_nodes[new_nodes < st.lam_cap]
    if not len(new_nodes):
        return
    nb = opt.node_batch
    new_nodes = np.sort(new_nodes)
    lams, xs, dx1 = nodes.lams, nodes.xs, st.dx1
    vals, sts = [], []
    for g0 in range(0, len(new_nodes), nb):
        grp = new_nodes[g0:g0 + nb]
        m = len(grp)
        # pad to node_batch (repeating the last node) so that one batch size is compiled;
        # the padded members are dropped below
        grp = np.concatenate([grp, np.full(nb - m, grp[-1])])
        near = np.argmin(np.abs(grp[:, None] - lams[None, :]), axis=1)
        dl = jnp.asarray(grp - lams[near])[:, None, None, None]
        x0s = HHState(jnp.clip(xs.c[jnp.asarray(near)] + dx1.c[None] * dl, 1e-12),
                      xs.v[jnp.asarray(near)] + dx1.v[None] * dl)
        Vk, xk, itk = values_at_nodes(st.prm, x0s, jnp.asarray(grp), opt.hh_tol,
                                      opt.hh_max_iter)
        itk = np.asarray(itk)
        check_iterations(itk.tolist(), opt.hh_max_iter, st.code)
        work["solves"] += nb
        work["iterations"] += int(itk.max()) * nb  # to the slowest member
        vals.append(np.asarray(Vk)[:m].reshape(m, -1))
        sts.append(HHState(xk.c[:m], xk.v[:m]))
    lams = np.concatenate([lams, new_nodes])
    F = np.concatenate([nodes.F] + vals)
    xs = HHState(*(jnp.concatenate([a] + [s[j] for s in sts]) for j, a in enumerate(xs)))
    order = np.argsort(lams)
    nodes.lams, nodes.F = lams[order], F[order]
    nodes.xs = HHState(*(a[jnp.asarray(order)] for a in xs))


def _add_nodes(st: _Start, nodes: _Nodes, new_nodes, opt: EVOptions, work: dict) -> None:
    """One stage: solve the candidates in ``new_nodes`` (already fresh) if there are any."""
    if len(new_nodes):
        nodes.stages += 1
        _solve_nodes(st, nodes, new_nodes, opt, work)


# ----------------------------------------------------------------------------- inversion

def _invert(st: _Start, nodes: _Nodes) -> _Inversion:
    """Spline slopes, each state's root (the first root above 1 for the borrowers whose
    value falls at 1), and the interpolation error estimates (V, lambda)."""
    lams, F, target, lam0 = nodes.lams, nodes.F, st.target, st.lam0
    if len(lams) < 2:
        nan = np.full_like(lam0, np.nan)
        return _Inversion(st.S1f[None, :], lam0.copy(), np.zeros(lam0.shape, bool), nan, nan)
    k1 = int(np.where(lams == 1.0)[0][0])
    S = spline_slopes(lams, F, (k1, st.S1f))
    lam, bracketed = hermite_roots(lams, F - target[None, :], S, lam0)
    if np.any(st.nonmono):
        cols = np.where(st.nonmono)[0]
        k, found = first_crossing(lams, F[:, cols] - target[None, cols])
        guess = 0.5 * (lams[k] + lams[np.minimum(k + 1, len(lams) - 1)])
        r_up, _ = hermite_roots(lams, F[:, cols] - target[None, cols], S[:, cols], guess)
        lam[cols] = np.where(found, r_up, np.nan)
        bracketed[cols] = found
    est = loo_estimate(lams, F, S, lam, k1)
    # the same estimate in lambda: divided by |dV_old/dlambda| at the root (V's units
    # differ across countries, A^(1-gamma), so this is the comparable one)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, der = hermite_eval(lams, F, S, np.where(np.isfinite(lam), lam, 1.0))
        lam_est = np.where(np.isfinite(lam), est / np.abs(der), np.nan)
    return _Inversion(S, lam, bracketed, est, lam_est)


def _extension(st: _Start, nodes: _Nodes, ext: np.ndarray, node_batch: int) -> list:
    """Extra nodes towards the roots ``ext`` outside the node range (a few states with far
    roots); a batch above reaches the borrowers' predicted first roots above 1 too."""
    lams, F = nodes.lams, nodes.F
    span = lams[-1] - lams[0]
    above = ext[np.isfinite(ext) & (ext > lams[-1])]
    below = ext[np.isfinite(ext) & (ext < lams[0])]
    if not len(above) and not len(below):  # no usable extrapolation: widen both ways
        above, below = np.array([lams[-1] + span]), np.array([max(lams[0] - span, 0.05)])
    new_nodes = []
    if len(above):
        if np.any(st.nonmono):
            pn = predict_crossing(lams, F[:, st.nonmono] - st.target[None, st.nonmono])
            above = np.concatenate([above, pn[np.isfinite(pn) & (pn > lams[-1])]])
        top = min(above.max() + 0.15 * (above.max() - lams[-1]), lams[-1] + 4 * span,
                  0.5 * (lams[-1] + st.lam_cap))
        new_nodes += list(np.linspace(lams[-1], top, node_batch + 1)[1:])
    if len(below):
        bot = max(below.min() - 0.1 * (lams[0] - below.min()), lams[0] - 4 * span, 0.05)
        new_nodes += list(np.linspace(bot, lams[0], 3)[:-1])
    return new_nodes


def _cover_roots(st: _Start, nodes: _Nodes, opt: EVOptions, work: dict) -> None:
    """Step 2: the bulk's nodes, then (at most 3 stages in all) nodes towards the roots
    that fall outside the range."""
    new_nodes = _bulk_nodes(st, opt.n_nodes)
    while True:
        _add_nodes(st, nodes, _fresh(nodes, new_nodes), opt, work)
        if len(nodes.lams) < 2:
            return
        inv = _invert(st, nodes)
        far = st.defined & ~st.local & ~inv.bracketed
        if not np.any(far) or nodes.stages >= 3:
            return
        new_nodes = _extension(st, nodes, inv.lam[far], opt.node_batch)


def _gain_side(st: _Start, nodes: _Nodes, opt: EVOptions, work: dict) -> None:
    """Nodes above the range until V_old crosses V_new in every borrower whose value
    first falls in lambda (dV/dlam <= 0 at 1) but who is better off.

    V_old turns up again as lambda grows (lambda R makes saving worth more): each round
    predicts the crossings (the parabola through the top three nodes, else the tangent at
    the top node) and solves one batch of nodes reaching past the farthest prediction, not
    past the feasibility bound.
    """
    if not np.any(st.nonmono):
        return
    t1 = time.perf_counter()
    cols = np.where(st.nonmono)[0]
    tgt = st.target[None, cols]
    step = max(0.5 * (nodes.lams.max() - 1.0), 0.01)
    for _ in range(opt.max_rounds):
        if np.all(first_crossing(nodes.lams, nodes.F[:, cols] - tgt)[1]):
            break
        top = nodes.lams.max()
        pred = predict_crossing(nodes.lams, nodes.F[:, cols] - tgt)
        pred = pred[np.isfinite(pred) & (pred > top)]
        reach = min(1.15 * (pred.max() - top), 4 * step) if len(pred) else step
        end = min(top + max(reach, 1e-4), 0.5 * (top + st.lam_cap))
        new_nodes = _fresh(nodes, top + (end - top) * np.arange(1, opt.node_batch + 1)
                           / opt.node_batch)
        if top >= st.lam_cap or not len(new_nodes) or new_nodes.max() <= top:
            break
        step *= 2.0
        _add_nodes(st, nodes, new_nodes, opt, work)
    work["seconds"]["gain_side"] = time.perf_counter() - t1


def _refine(st: _Start, nodes: _Nodes, inv: _Inversion, opt: EVOptions,
            work: dict) -> _Inversion:
    """Step 3's refinement: where the estimated error in lambda exceeds ``lam_tol``, nodes
    at those states' roots (quantiles of their lambdas; one batch per round)."""
    refined = 0
    nb = opt.node_batch
    for _ in range(opt.refine_rounds):
        bad = (np.isfinite(inv.lam_est) & (inv.lam_est > opt.lam_tol) & ~st.local
               & (st.defined | st.nonmono))
        if not np.any(bad):
            break
        cand = np.unique(np.quantile(inv.lam[bad], (np.arange(nb) + 0.5) / nb))
        cand = cand[(cand < st.lam_cap)
                    & (np.min(np.abs(cand[:, None] - nodes.lams[None, :]), axis=1) > 1e-6)]
        if len(cand) > 1:  # nodes closer than 1e-6 measure kinks, not the curve
            cand = cand[np.concatenate([[True], np.diff(cand) > 1e-6])]
        if not len(cand):
            break
        refined += len(cand)
        _add_nodes(st, nodes, cand, opt, work)
        inv = _invert(st, nodes)
    work["refinement_nodes"] = refined
    return inv


def _finish(st: _Start, inv: _Inversion) -> tuple[_Inversion, np.ndarray]:
    """The final roots: the local root where nothing changes, NaN where the EV is not a
    gain measure. Returns the inversion and the mask of those undefined states."""
    local, diff, S1f = st.local, st.diff, st.S1f
    defined = st.defined | (st.nonmono & np.isfinite(inv.lam))
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(local, 1.0 + np.where(S1f != 0, diff / S1f, 0.0), inv.lam)
    est = np.where(local, np.abs(diff), inv.est)
    undefined = ~defined & ~local
    lam = np.where(undefined, np.nan, lam)
    est = np.where(undefined, np.nan, est)
    with np.errstate(divide="ignore", invalid="ignore"):  # the slope at the root is S1f there
        lam_est = np.where(local, np.abs(diff) / np.abs(S1f), inv.lam_est)
    lam_est = np.where(undefined, np.nan, lam_est)
    bracketed = inv.bracketed & ~undefined
    return _Inversion(inv.S, lam, bracketed, est, lam_est), undefined


# ----------------------------------------------------------------------------- EV

def _verify(st: _Start, nodes: _Nodes, S, lam, todo, opt: EVOptions):
    """Step 4 on the states ``todo``: :func:`hatrade.welfare.verify.polish_roots` from the
    interpolated roots, warm-started at the nearest nodes. Returns (lam, residual, info)."""
    ia_all, iz_all = np.divmod(np.arange(st.Na * st.Nz), st.Nz)
    k = np.argmin(np.abs(nodes.lams[:, None] - lam[todo][None, :]), axis=0)
    slope = hermite_eval(nodes.lams, nodes.F[:, todo], S[:, todo], lam[todo])[1]
    return polish_roots(st.prm, st.code, nodes.xs, k, lam[todo], slope, st.target[todo],
                        ia_all[todo], iz_all[todo], tol=opt.tol, hh_tol=opt.hh_tol,
                        hh_max_iter=opt.hh_max_iter, chunk=opt.chunk,
                        max_rounds=opt.max_rounds)


def _verified_residuals(st: _Start, nodes: _Nodes, inv: _Inversion, undefined, opt: EVOptions,
                        work: dict) -> np.ndarray:
    """Step 4 (``verify``): every residual evaluated; ``inv.lam`` polished in place."""
    t0 = time.perf_counter()
    lam, local = inv.lam, st.local
    residual = np.full(st.Na * st.Nz, np.nan)
    todo = np.where(~undefined & ~local)[0]
    residual[local] = st.diff[local] - st.S1f[local] * (lam[local] - 1.0)
    if len(todo):
        lam_v, res_v, info = _verify(st, nodes, inv.S, lam, todo, opt)
        lam[todo], residual[todo] = lam_v, res_v
        work["solves"] += info["solves"]
        work["iterations"] += info["iterations"]
        work["verify_rounds"] = info["rounds"]
    work["seconds"]["verify"] = time.perf_counter() - t0
    return residual


def _record_time(work: dict, t_start: float, reference_seconds, verify: bool) -> None:
    work["seconds"]["total"] = time.perf_counter() - t_start
    if reference_seconds:
        work["reference_seconds"] = float(reference_seconds)
        work["solve_equivalents"] = work["seconds"]["total"] / reference_seconds
        if verify:
            work["solve_equivalents_without_verify"] = (
                (work["seconds"]["total"] - work["seconds"]["verify"]) / reference_seconds)


def _warn(old, ci: int, st: _Start, inv: _Inversion, undefined, verify: bool) -> None:
    """Warnings: roots extrapolated outside the nodes, states without a gain measure."""
    lam, est, code = inv.lam, inv.est, st.code
    far = ~undefined & ~st.local & ~inv.bracketed
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
                    "(lambda = NaN; the Lucas measure is reported).", code, n_bad, st.lam_max)


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
        (secant steps, at most ``max_rounds``) until all are below ``tol`` (about 2-3
        solves per state, batched in ``chunk``): exact, but thousands of solve
        equivalents for 1000 states.
    tol : float
        Residual target for ``verify`` (V units).
    lam_tol, refine_rounds : float, int
        Target for the interpolation error estimate in :math:`\lambda` (1e-4: gains to
        about 0.01 percentage points): states above it get nodes at their roots, one batch
        per round, at most ``refine_rounds`` batches.
    hh_tol, hh_max_iter : float, int
        Household tolerance and iteration limit of all welfare solves (V is accurate to
        about ``hh_tol``).
    max_rounds : int
        Also the most rounds of nodes searching the borrowers' first roots above 1.
    reference_seconds : float, optional
        Seconds of one household solve, to report ``work["solve_equivalents"]``.

    Returns
    -------
    EVResult
    """
    opt = EVOptions(n_nodes=n_nodes, verify=verify, tol=tol, hh_tol=hh_tol,
                    hh_max_iter=hh_max_iter, node_batch=node_batch, chunk=chunk,
                    max_rounds=max_rounds, lam_tol=lam_tol, refine_rounds=refine_rounds)
    t_start = time.perf_counter()
    ci = country_index(old, country)
    if new.world.countries != old.world.countries:
        raise ParameterError("old and new equilibria have different countries.")
    work = {"solves": 0, "tangents": 0, "iterations": 0, "seconds": {}}
    st, nodes = _start(old, new, ci, opt, work)
    # 2. batched solves on nodes spanning the first guesses, and 3. the inversion per state
    t0 = time.perf_counter()
    _cover_roots(st, nodes, opt, work)
    _gain_side(st, nodes, opt, work)
    inv = _refine(st, nodes, _invert(st, nodes), opt, work)
    inv, undefined = _finish(st, inv)
    work["node_stages"] = nodes.stages
    work["seconds"]["nodes_and_inversion"] = time.perf_counter() - t0
    # 4. optional: evaluate every residual exactly, polish with secant steps
    if verify:
        residual = _verified_residuals(st, nodes, inv, undefined, opt, work)
    else:
        residual = np.full(st.Na * st.Nz, np.nan)
    _record_time(work, t_start, reference_seconds, verify)
    _warn(old, ci, st, inv, undefined, verify)
    shp = (st.Na, st.Nz)
    return EVResult(country=st.code, lam=inv.lam.reshape(shp), V_old=st.V1, V_new=st.V_new,
                    dV_dlam=st.S1, residual=residual.reshape(shp),
                    residual_estimate=inv.est.reshape(shp),
                    lam_error_estimate=inv.lam_est.reshape(shp),
                    verified=bool(verify), defined=(~undefined).reshape(shp),
                    bracketed=inv.bracketed.reshape(shp), nodes=nodes.lams, work=work,
                    nonmonotone=(~(st.S1f > 0) & ~st.local).reshape(shp))


#: Names that lived in this module before the welfare package was split, and the modules
#: they live in now (the old import paths keep working for one release).
_MOVED = {"country_welfare": "summary", "welfare": "summary", "CountryWelfare": "summary",
          "acr_gain": "summary", "group_means": "summary", "expenditure_quintiles": "summary",
          "income_groups": "summary", "ACR_THETA": "summary", "WELFARE_COLUMNS": "summary",
          "value_split": "lucas", "consumption_equivalent": "lucas",
          "decompose": "decompose", "Decomposition": "decompose",
          "reference_solve_time": "problem"}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(f"hatrade.welfare.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
