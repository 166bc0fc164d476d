r"""The Jacobian in use in the Newton-Broyden iteration (:mod:`hatrade.solve.newton`).

A new one is composed from the household block at the iterate (:func:`new_jacobian`,
:func:`hatrade.core.jacobian.equilibrium_jacobian`); after each step Broyden's update

.. math:: J \leftarrow J + \frac{(r(u') - r(u) - J s_u)\, s_u^\top}{s_u^\top s_u},
   \qquad s_u = u' - u,

keeps it current (:func:`update_jacobian`), and it is dropped for a new one under Newton or
when a new one pays for itself (:func:`worth_new_jacobian`).
"""

from __future__ import annotations

import logging
import time

import jax.numpy as jnp
import numpy as np

from hatrade.core.errors import EquilibriumError
from hatrade.core.jacobian import equilibrium_jacobian, household_block
from hatrade.solve.newton_state import Iterate, JacobianState, NewtonProblem, SolveStats
from hatrade.solve.options import SolverOptions

__all__ = ["new_jacobian", "update_jacobian", "worth_new_jacobian"]

log = logging.getLogger(__name__)


def new_jacobian(
    problem: NewtonProblem, cur: Iterate, jac: JacobianState, stats: SolveStats
) -> None:
    """A household-block Jacobian at the iterate ``cur`` (warm tangents from the last block)."""
    opts, layout, rows = problem.options, problem.layout, problem.rows
    t1 = time.perf_counter()
    wp, Rp, Tp, bp = layout.prices(jnp.asarray(cur.u))
    jac.block = household_block(
        problem.arrs,
        wp,
        Rp,
        Tp,
        bp,
        cur.state,
        rows,
        tangents=None if jac.block is None else jac.block.tangents,
        tol=opts.hh_tol,
        max_iter=opts.hh_max_iter,
        tangent_tol=opts.jac_tol,
    )
    J = equilibrium_jacobian(problem.arrs, layout, cur.u, cur.agg, jac.block)
    stats.jacobians += 1
    stats.jacobian_directions += len(rows)
    stats.seconds_jacobian += time.perf_counter() - t1
    log.debug(
        "equilibrium: Jacobian %d (%d household-block directions), %.2f s",
        stats.jacobians,
        len(rows),
        time.perf_counter() - t1,
    )
    jac.J, jac.fresh, jac.err, jac.steps = J, True, cur.err, 0
    if not np.all(np.isfinite(J)):
        raise EquilibriumError(
            "equilibrium Jacobian has non-finite entries; the household "
            "solution is not differentiable here (check the inputs)."
        )
    cond = np.linalg.cond(J)
    if cond > 1e14:
        log.warning("equilibrium Jacobian is near singular (condition number %.1e)", cond)


def worth_new_jacobian(
    options: SolverOptions,
    err: float,
    e_new: float,
    hh_iterations: int,
    n_directions: int,
    warm: bool,
    steps: int = 1,
) -> bool:
    r"""Whether a new Jacobian should pay for itself, in household-iteration equivalents.

    After ``steps`` steps on a (Broyden-updated) Jacobian took the max excess demand from
    ``err`` (where the Jacobian was made) to ``e_new``, at the mean rate
    :math:`\rho = (e_{new}/e)^{1/steps}` (the last step's rate alone is too pessimistic:
    Broyden's convergence speeds up), the remaining steps at that rate are about
    :math:`n = \log(tol/e_{new})/\log\rho`, each a household solve of about the last one's
    iterations (plus about 5 for the policies and the distribution); with a new Jacobian,
    about two. A Jacobian costs ``options.direction_cost`` per direction (60% of it with
    warm tangents). Deterministic: the decision depends on iteration counts, not on
    timings.
    """
    if e_new < options.tol:
        return False
    rho = min(max((e_new / err) ** (1.0 / max(steps, 1)), 1e-3), 0.999)
    n_left = np.log(options.tol / e_new) / np.log(rho)
    cost = options.direction_cost * n_directions * (0.6 if warm else 1.0)
    return bool((n_left - 2.0) * (hh_iterations + 5) > cost)


def update_jacobian(
    problem: NewtonProblem, jac: JacobianState, cur: Iterate, new: Iterate, coarse_step: bool
) -> None:
    """Broyden's update after the step ``cur`` -> ``new`` (not on the coarse stage's step:
    its secant is long and mostly nonlinearity, and updating on it spoils the coarse
    Jacobian for the small steps that follow); then drop the Jacobian under Newton, or
    when progress on an updated one is slow enough that a new one pays."""
    assert jac.J is not None
    J = jac.J
    s_u = new.u - cur.u
    if not coarse_step:
        J = J + np.outer(np.asarray(new.r) - np.asarray(cur.r) - J @ s_u, s_u) / (s_u @ s_u)
    jac.J = jac.last = J
    jac.steps += 1
    opts = problem.options
    if opts.method == "newton" or (
        not jac.fresh
        and worth_new_jacobian(
            opts,
            jac.err,
            new.err,
            int(np.max(np.asarray(new.sol["iterations"]))),
            len(problem.rows),
            warm=jac.block is not None,
            steps=jac.steps,
        )
    ):
        jac.J = None  # Newton, or slow progress on an updated Jacobian: recompute it
    jac.fresh = False
