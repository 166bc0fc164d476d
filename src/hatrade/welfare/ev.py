r"""Who gains: the equivalent variation of every household state (docs/model.md section 5).

For a household in state :math:`(a, z)` of country :math:`i`, :math:`\lambda(a,z)` is the
proportional scaling of all of its income, at the *old* goods prices, that makes it as
well off as in the new equilibrium:

.. math::

    V^{old}(a, z; \lambda) = V^{new}(a, z),

where :math:`V^{old}(\cdot;\lambda)` solves the household problem with old goods prices
:math:`p_{ij}` and income scaled in the budget *and* the Euler equation,
:math:`p_j c + a' = \lambda (R a + w z + T)` with return :math:`\lambda R` on savings
(equivalently: the problem at :math:`(\lambda R, \lambda w, \lambda T)`). V includes
:math:`\psi` (docs/model.md 2). The gain is :math:`100(\lambda - 1)` percent.

All states are computed together (:func:`equivalent_variation`; steps 1-3 in
:mod:`hatrade.welfare.inversion`, step 4 in :mod:`hatrade.welfare.verify`):

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
The paper's welfare numbers are in :mod:`hatrade.data.published` (keys ``welfare.*``);
docs/model.md section 8 says where each comes from. With this EV the baseline's are
reproduced (the borrowers at the limit, the first root above 1, carry much of the poorest
quintile's gain). The log model's published means are **not**: they lie below its own ACR
term, which Proposition 3 makes every log household's price-index gain (exact in every
state when wages and R are held fixed:
``tests/test_welfare.py::test_log_preferences_finite_cut_lucas_gain_is_acr_in_every_state``),
and below the EV of every state. The EV lies above the Lucas measure where cash on hand
:math:`Ra + wz` is below spending (borrowers) and below it for savers. The cause of the gap
is in docs/model.md section 8, the definitions tried (``benchmarks/welfare_definitions.py``;
the EV at the start of the transition path, :mod:`hatrade.welfare.transition`, moves the
log model's unilateral mean by +0.009 points: ``benchmarks/welfare_transition.py``) in
docs/differences.md; ``tests/test_welfare.py::test_published_log_model_gains`` records the
gap (strict xfail).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.welfare.interpolate import hermite_eval
from hatrade.welfare.inversion import (
    EVOptions,
    EVStart,
    Inversion,
    Nodes,
    cover_roots,
    finish,
    first_guesses,
    invert,
    reach_first_roots,
    refine,
)
from hatrade.welfare.problem import country_index
from hatrade.welfare.verify import polish_roots

__all__ = ["EVOptions", "EVResult", "equivalent_variation"]

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- EV


def _verify(st: EVStart, nodes: Nodes, S, lam, todo, opt: EVOptions):
    """Step 4 on the states ``todo``: :func:`hatrade.welfare.verify.polish_roots` from the
    interpolated roots, warm-started at the nearest nodes. Returns (lam, residual, info)."""
    ia_all, iz_all = np.divmod(np.arange(st.Na * st.Nz), st.Nz)
    k = np.argmin(np.abs(nodes.lams[:, None] - lam[todo][None, :]), axis=0)
    slope = hermite_eval(nodes.lams, nodes.F[:, todo], S[:, todo], lam[todo])[1]
    return polish_roots(
        st.prm,
        st.code,
        nodes.xs,
        k,
        lam[todo],
        slope,
        st.target[todo],
        ia_all[todo],
        iz_all[todo],
        tol=opt.tol,
        hh_tol=opt.hh_tol,
        hh_max_iter=opt.hh_max_iter,
        chunk=opt.chunk,
        max_rounds=opt.max_rounds,
    )


def _verified_residuals(
    st: EVStart, nodes: Nodes, inv: Inversion, undefined, opt: EVOptions, work: dict
) -> np.ndarray:
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
                work["seconds"]["total"] - work["seconds"]["verify"]
            ) / reference_seconds


def _warn(old, ci: int, st: EVStart, inv: Inversion, undefined, verify: bool) -> None:
    """Warnings: roots extrapolated outside the nodes, states without a gain measure."""
    lam, est, code = inv.lam, inv.est, st.code
    far = ~undefined & ~st.local & ~inv.bracketed
    if np.any(far) and not verify:
        mass = float(np.sum(np.asarray(old.lam[ci]).ravel()[far]))
        worst = np.nanmax(np.abs(est[far])) if np.any(np.isfinite(est[far])) else np.nan
        log.warning(
            "%s: in %d states%s the root lambda lies outside the solved lambda nodes "
            "(extrapolated from the nearest node; estimated |error| up to %.1e, "
            "lambda from %.3g to %.3g): rerun with verify=True (--verify-ev) for exact "
            "residuals there.",
            code,
            int(far.sum()),
            f" (mass {mass:.2e})",
            worst,
            np.nanmin(lam[far]),
            np.nanmax(lam[far]),
        )
    n_bad = int(undefined.sum())
    if n_bad:
        log.warning(
            "%s: in %d states V_old decreases in lambda at 1 (borrowers near the "
            "limit) and either they are worse off or no feasible lambda above 1 (below "
            "%.4g, where consumption at the borrowing limit stays positive) makes them "
            "as well off as in the new equilibrium: the equivalent variation is not a "
            "gain measure there "
            "(lambda = NaN; the Lucas measure is reported).",
            code,
            n_bad,
            st.lam_max,
        )


@enable_x64
def equivalent_variation(
    old,
    new,
    country,
    *,
    n_nodes: int = 8,
    verify: bool = False,
    tol: float = 1e-10,
    hh_tol: float = 1e-12,
    hh_max_iter: int = 5000,
    node_batch: int = 4,
    chunk: int = 64,
    max_rounds: int = 8,
    lam_tol: float = 1e-4,
    refine_rounds: int = 1,
    reference_seconds: float | None = None,
    target=None,
) -> EVResult:
    r"""Equivalent variation :math:`\lambda(a,z)` for every state of one country.

    Parameters
    ----------
    old, new : Equilibrium
        Baseline and counterfactual equilibria (same household grid and income process).
    country : str or int
    n_nodes : int
        Nodes of the batched solve besides :math:`\lambda = 1` (one primal solve each,
        vmapped ``node_batch`` at a time, warm-started along the exact tangent at
        :math:`\lambda = 1`); an integer >= 3 (every option's range:
        :data:`hatrade.welfare.inversion.EV_RANGES`, checked before any work).
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
    target : array (Na, Nz), optional
        The values to reach instead of the new steady state's, :math:`V^{old}(a, z;
        \lambda) = \text{target}(a, z)` (e.g. the value at the start of a transition,
        :mod:`hatrade.welfare.transition`); ``V_new`` then holds it.

    Returns
    -------
    EVResult
    """
    opt = EVOptions(
        n_nodes=n_nodes,
        verify=verify,
        tol=tol,
        hh_tol=hh_tol,
        hh_max_iter=hh_max_iter,
        node_batch=node_batch,
        chunk=chunk,
        max_rounds=max_rounds,
        lam_tol=lam_tol,
        refine_rounds=refine_rounds,
    )
    t_start = time.perf_counter()
    ci = country_index(old, country)
    if new.world.countries != old.world.countries:
        raise ParameterError("old and new equilibria have different countries.")
    work = {"solves": 0, "tangents": 0, "iterations": 0, "seconds": {}}
    if target is not None and np.shape(target) != old.lam[ci].shape:
        raise ParameterError(
            f"target has shape {np.shape(target)}; it must be {old.lam[ci].shape} (Na, Nz)."
        )
    st, nodes = first_guesses(old, new, ci, opt, work, target)
    # 2. batched solves on nodes spanning the first guesses, and 3. the inversion per state
    t0 = time.perf_counter()
    cover_roots(st, nodes, opt, work)
    reach_first_roots(st, nodes, opt, work)
    inv = refine(st, nodes, invert(st, nodes), opt, work)
    inv, undefined = finish(st, inv)
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
    return EVResult(
        country=st.code,
        lam=inv.lam.reshape(shp),
        V_old=st.V1,
        V_new=st.V_new,
        dV_dlam=st.S1,
        residual=residual.reshape(shp),
        residual_estimate=inv.est.reshape(shp),
        lam_error_estimate=inv.lam_est.reshape(shp),
        verified=bool(verify),
        defined=(~undefined).reshape(shp),
        bracketed=inv.bracketed.reshape(shp),
        nodes=nodes.lams,
        work=work,
        nonmonotone=(~(st.S1f > 0) & ~st.local).reshape(shp),
    )
