r"""The Newton-Broyden iteration of :func:`hatrade.solve_equilibrium` (docs/model.md section 3).

The unknowns :math:`u` (M-1 wages, the world rate or beta, or one rate per country, and the
tariff transfers) are iterated on the relative excess demands :math:`r(u)`:

.. math::

    \Delta u = -J^{-1} r(u), \qquad u' = u + s\, \Delta u, \quad s \in \{1, 1/2, \dots\},

with a backtracking line search that accepts :math:`\|r(u')\|_\infty <
(1 - 10^{-4} s) \|r(u)\|_\infty`. The Jacobian :math:`J` is composed from the household
block (:func:`hatrade.core.jacobian.equilibrium_jacobian`); between such Jacobians
Broyden's update

.. math:: J \leftarrow J + \frac{(r(u') - r(u) - J s_u)\, s_u^\top}{s_u^\top s_u},
   \qquad s_u = u' - u,

keeps it current, and a new one is made when it pays for itself
(:func:`~hatrade.solve.broyden.worth_new_jacobian`). Household solves are warm-started from the first-order
prediction of their states, solved inexactly while the excess demands are large
(:meth:`~hatrade.solve.options.SolverOptions.household_tol`) and to ``hh_tol`` before convergence is declared.
An optional coarse stage (:func:`coarse_stage`) finds the first step and Jacobian on a
coarse asset grid (two-grid defect correction).

Every knob is a field of :class:`~hatrade.solve.options.SolverOptions`; the iteration's
state lives in small explicit objects (:class:`Iterate`, :class:`JacobianState`,
:class:`SolveStats`, :mod:`hatrade.solve.newton_state`). The Jacobian in use is made and
updated in :mod:`hatrade.solve.broyden`, the excess demands are compiled in
:mod:`hatrade.solve.world_residual`; this module's public names include theirs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax.numpy as jnp
import numpy as np

from hatrade.core.errors import EquilibriumError
from hatrade.core.jacobian import (
    HouseholdBlock,
    equilibrium_jacobian,
    household_block,
    predict_state,
)
from hatrade.core.markets import check_households, initial_states, model_arrays
from hatrade.solve.broyden import new_jacobian, update_jacobian, worth_new_jacobian
from hatrade.solve.newton_state import (
    CoarseResult,
    Iterate,
    JacobianState,
    NewtonProblem,
    NewtonResult,
    SolveStats,
)
from hatrade.solve.world_residual import reference_jacobian, residual

__all__ = [
    "CoarseResult",
    "Iterate",
    "JacobianState",
    "NewtonProblem",
    "NewtonResult",
    "SolveStats",
    "coarse_stage",
    "newton_solve",
    "reference_jacobian",
    "residual",
    "worth_new_jacobian",
]

log = logging.getLogger(__name__)

#: Halvings of the line search's step before it gives up.
_LINE_SEARCH_STEPS = 12


# ----------------------------------------------------------------------------- household solves


def _excess_demands(problem: NewtonProblem, u, x0, tol_now: float):
    """The (shifted, in the coarse stage) excess demands at ``u``, households to ``tol_now``."""
    opts = problem.options
    r, aux = residual(u, x0, problem.arrs, problem.layout, opts.hh_tol, opts.hh_max_iter, tol_now)
    if problem.shift is not None:
        r = r + problem.shift
    return r, aux


def _refine(problem: NewtonProblem, u, r, aux, tol_used: float, stats: SolveStats):
    """Continue an inexact household solve (from its states) to the tolerance its excess
    demands call for, and to ``hh_tol`` before convergence is declared (not in the coarse
    stage, which needs no exact end). Returns ``(r, aux, err)``."""
    opts = problem.options
    while True:
        e = float(jnp.max(jnp.abs(r)))
        final = e < opts.tol and problem.match is None
        if (
            not np.isfinite(e)
            or tol_used <= opts.hh_tol
            or (not final and tol_used <= max(opts.hh_tol, opts.inexact_slack * opts.inexact * e))
        ):
            return r, aux, e
        tol_used = opts.hh_tol if final else opts.household_tol(e)
        r, aux = _excess_demands(problem, jnp.asarray(u), aux[1]["state"], tol_used)
        stats.household_solves += 1
        log.debug(
            "equilibrium: household solve continued to tolerance %.1e: max excess demand %.3e",
            tol_used,
            float(jnp.max(jnp.abs(r))),
        )


def _solve_at(problem: NewtonProblem, u, u_try, x, block: HouseholdBlock | None, tol_now: float):
    """Households at ``u_try``, warm-started from the first-order prediction of the states.

    Falls back to the plain warm start ``x`` (the states at ``u``) when the predicted start
    fails (non-finite excess demands or a household problem at its iteration cap). Returns
    ``(r, (agg, sol), world solves made)``.
    """
    opts = problem.options
    if opts.predict and block is not None:
        x_pred = predict_state(x, block, problem.layout, u, u_try)
        r_t, (agg_t, sol_t) = _excess_demands(problem, jnp.asarray(u_try), x_pred, tol_now)
        if (
            np.all(np.isfinite(np.asarray(r_t)))
            and np.max(np.asarray(sol_t["iterations"])) < opts.hh_max_iter
        ):
            return r_t, (agg_t, sol_t), 1
        log.debug("equilibrium: predicted warm start failed; restarting from the last states")
        r_t, (agg_t, sol_t) = _excess_demands(problem, jnp.asarray(u_try), x, tol_now)
        return r_t, (agg_t, sol_t), 2
    r_t, (agg_t, sol_t) = _excess_demands(problem, jnp.asarray(u_try), x, tol_now)
    return r_t, (agg_t, sol_t), 1


def _start(problem: NewtonProblem, u, x, stats: SolveStats) -> tuple[NewtonProblem, Iterate]:
    """The first household solve at ``u`` (from states ``x``), loose when solves are
    inexact; in the coarse stage it fixes the shift (the problem returned carries it)."""
    t1 = time.perf_counter()
    tol_now = problem.options.first_household_tol()
    r, (agg, sol) = _excess_demands(problem, jnp.asarray(u), x, tol_now)
    stats.household_solves += 1
    if problem.match is not None:  # the coarse stage (both residuals to this tolerance)
        shift = jnp.asarray(problem.match) - r
        r = r + shift
        problem = replace(problem, shift=shift)
    else:
        r, (agg, sol), _ = _refine(problem, u, r, (agg, sol), tol_now, stats)
    stats.seconds_household += time.perf_counter() - t1
    check_households(sol, problem.world.countries, problem.options.hh_max_iter)
    return problem, Iterate(u=u, r=r, agg=agg, sol=sol, err=float(jnp.max(jnp.abs(r))))


# ----------------------------------------------------------------------------- steps


def _line_search(
    problem: NewtonProblem, cur: Iterate, du, jac: JacobianState, stats: SolveStats
) -> tuple[Iterate, float] | None:
    """Backtrack along ``du`` from ``cur`` until the max excess demand falls enough (or
    below tol); on a quasi-Newton Jacobian (not fresh) only the full step is tried.
    Returns the accepted iterate and step, or None."""
    opts, layout = problem.options, problem.layout
    step = 1.0
    tol_now = opts.household_tol(cur.err)
    for _ in range(_LINE_SEARCH_STEPS):
        u_try = cur.u + step * du
        w_t, R_t, _, b_t = layout.prices(jnp.asarray(u_try))
        if np.all(np.asarray(w_t) > 0) and np.all(np.asarray(R_t) > 0) and 0 < float(b_t) < 1:
            t1 = time.perf_counter()
            r_t, aux, n = _solve_at(problem, cur.u, u_try, cur.state, jac.block, tol_now)
            stats.household_solves += n
            r_t, (agg_t, sol_t), e_t = _refine(problem, u_try, r_t, aux, tol_now, stats)
            stats.seconds_household += time.perf_counter() - t1
            log.debug(
                "equilibrium: household solve at step %.3g: max excess demand %.3e, "
                "%d household iterations (most in a country), %.2f s",
                step,
                e_t,
                int(np.max(np.asarray(sol_t["iterations"]))),
                time.perf_counter() - t1,
            )
            if np.isfinite(e_t) and (e_t < cur.err * (1 - 1e-4 * step) or e_t < opts.tol):
                return Iterate(u=u_try, r=r_t, agg=agg_t, sol=sol_t, err=e_t), step
        step *= 0.5
        if not jac.fresh:  # a quasi-Newton step that does not descend: get a new Jacobian
            return None
    return None


def _history_text(history: list) -> str:
    return str([f"{h:.2e}" for h in history])


def _iterate(
    problem: NewtonProblem,
    cur: Iterate,
    jac: JacobianState,
    du_first,
    stats: SolveStats,
    history: list,
    progress: Callable[[int, float], None] | None,
) -> tuple[Iterate, int]:
    """Newton-Broyden steps from ``cur`` until the max excess demand is below tol; the
    first step is ``du_first`` when given (the coarse stage's). Returns the last iterate and
    the iterations taken."""
    opts = problem.options
    it = 0
    while cur.err >= opts.tol:
        if it >= opts.max_iter:
            raise EquilibriumError(
                f"world equilibrium did not converge: max excess demand {cur.err:.3e} after "
                f"{it} Newton iterations (tol {opts.tol:.1e}); history "
                f"{_history_text(history)}. Try a better starting point (wages, "
                "R_guess/beta_guess), more iterations, or check that the world has an "
                "equilibrium (beta*R < 1, positive resources)."
            )
        if jac.J is None:
            new_jacobian(problem, cur, jac, stats)
        assert jac.J is not None
        coarse_step = du_first is not None
        if coarse_step:  # the coarse stage's step
            du, du_first = du_first, None
        else:
            try:
                du = np.linalg.solve(jac.J, -np.asarray(cur.r))
            except np.linalg.LinAlgError:
                if not jac.fresh:
                    jac.J = None
                    continue
                raise EquilibriumError(
                    f"equilibrium Jacobian is singular at iteration {it + 1} (max excess "
                    f"demand {cur.err:.3e}): the unknowns do not move the markets "
                    "independently. Check the world (trade costs, TFP, labor) or start "
                    "elsewhere."
                ) from None
        found = _line_search(problem, cur, du, jac, stats)
        if found is None:
            if not jac.fresh:
                jac.J = None
                continue
            raise EquilibriumError(
                f"Newton line search failed at iteration {it + 1}: max excess demand "
                f"{cur.err:.3e} could not be reduced (history {_history_text(history)}). Try "
                "another starting point or a tighter hh_tol."
            )
        new, step = found
        update_jacobian(problem, jac, cur, new, coarse_step)
        cur = new
        check_households(cur.sol, problem.world.countries, opts.hh_max_iter)
        it += 1
        history.append(cur.err)
        log.info("equilibrium: Newton %d, step %.3g, max excess demand %.3e", it, step, cur.err)
        if progress:
            progress(it, cur.err)
    return cur, it


# ----------------------------------------------------------------------------- the solve


def newton_solve(
    problem: NewtonProblem,
    u,
    x,
    J: np.ndarray | None,
    *,
    progress: Callable[[int, float], None] | None = None,
    t0: float | None = None,
) -> NewtonResult:
    """The Newton-Broyden iteration from the unknowns ``u`` and household states ``x``,
    with Jacobian ``J`` (array or None), and the coarse stage first when it applies
    (``options.coarse_n_a``, no ``J``, excess demands at least ``coarse_min`` and a grid at
    least twice the coarse one).

    Raises
    ------
    EquilibriumError
        No convergence in ``max_iter`` iterations, a singular or non-finite Jacobian, a
        failed line search, or a household problem that failed.
    """
    t0 = time.perf_counter() if t0 is None else t0
    opts = problem.options
    stats = SolveStats()
    problem, cur = _start(problem, u, x, stats)
    history = [cur.err]
    log.info("equilibrium: start, max excess demand %.3e", cur.err)
    if progress:
        progress(0, cur.err)
    du_first, coarse = None, CoarseResult()
    if (
        opts.coarse_n_a is not None
        and J is None
        and cur.err >= max(opts.tol, opts.coarse_min)
        and problem.household.n_a >= 2 * opts.coarse_n_a
    ):
        coarse = coarse_stage(problem, cur.u, cur.r, opts.coarse_n_a)
        if coarse.u is not None:
            du_first, J = coarse.u - cur.u, coarse.J
    jac = JacobianState(J=J, err=cur.err)
    cur, it = _iterate(problem, cur, jac, du_first, stats, history, progress)
    last = jac.last if jac.last is not None else jac.J
    return NewtonResult(
        final=cur,
        iterations=it,
        history=history,
        stats=stats,
        jacobian=last,
        block=jac.block,
        coarse=coarse,
        seconds=time.perf_counter() - t0,
    )


def coarse_stage(problem: NewtonProblem, u, r, n_a: int) -> CoarseResult:
    """The first step of a solve from a coarse copy of the model (``coarse_n_a``).

    Solves the coarse model's equilibrium (``household.n_a`` replaced by ``n_a``) with its
    excess demands shifted by the constant that makes them equal the full model's ``r`` at
    ``u`` (defect correction), loosely (``coarse_tol``, ``coarse_jac_tol``,
    ``coarse_max_iter``), and makes a coarse Jacobian at its solution. The result has no
    ``u`` when the stage failed (logged) or had nothing to do.
    """
    opts = problem.options
    t1 = time.perf_counter()
    hh_c = problem.household.replace(n_a=n_a)
    arrs_c = model_arrays(problem.world, hh_c, problem.income)
    w, Rv, Tv, b = problem.layout.prices(jnp.asarray(u))
    x_c = initial_states(arrs_c, w, Rv, Tv, b)
    coarse = replace(
        problem,
        household=hh_c,
        arrs=arrs_c,
        match=r,
        shift=None,
        options=opts.replace(
            tol=max(opts.tol, opts.coarse_tol),
            max_iter=opts.coarse_max_iter,
            jac_tol=max(opts.jac_tol, opts.coarse_jac_tol),
            method="broyden",
            coarse_n_a=None,
        ),
    )
    try:
        res = newton_solve(coarse, u, x_c, None)
    except EquilibriumError as e:
        log.info(
            "equilibrium: coarse stage (n_a = %d) failed, solving on the full grid only: %s", n_a, e
        )
        return CoarseResult(seconds=time.perf_counter() - t1)
    if res.iterations == 0:
        return CoarseResult(
            household_solves=res.stats.household_solves, seconds=time.perf_counter() - t1
        )
    # a fresh coarse Jacobian at the coarse solution (the Broyden-updated one satisfies the
    # coarse steps' secants but can be far off in other directions)
    J, u_c = _coarse_jacobian(coarse, res, opts.jac_tol)
    out = CoarseResult(
        u=u_c,
        J=J,
        household_solves=res.stats.household_solves,
        jacobians=res.stats.jacobians + 1,
        seconds=time.perf_counter() - t1,
    )
    log.info(
        "equilibrium: coarse stage (n_a = %d): %d household solves, %d Jacobian(s), %.2f s",
        n_a,
        out.household_solves,
        out.jacobians,
        out.seconds,
    )
    return out


def _coarse_jacobian(
    coarse: NewtonProblem, res: NewtonResult, jac_tol: float
) -> tuple[np.ndarray, Any]:
    """A household-block Jacobian of the coarse model at its solution (tangents to the full
    solve's ``jac_tol``, warm from the coarse solve's last block), and that solution's
    unknowns."""
    layout, opts = coarse.layout, coarse.options
    w, R, T, b = (np.asarray(a) for a in layout.prices(jnp.asarray(res.final.u)))
    beta = float(b)
    u_c = layout.pack(w, R, T, beta)
    agg = {k: np.asarray(v) for k, v in res.final.agg.items()}
    block = household_block(
        coarse.arrs,
        jnp.asarray(w),
        jnp.asarray(R),
        jnp.asarray(T),
        jnp.asarray(beta),
        res.final.state,
        coarse.rows,
        tol=opts.hh_tol,
        max_iter=opts.hh_max_iter,
        tangent_tol=jac_tol,
        tangents=None if res.block is None else res.block.tangents,
    )
    return equilibrium_jacobian(coarse.arrs, layout, u_c, agg, block), u_c
