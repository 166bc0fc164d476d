r"""The planner's allocation at given multipliers and weights, and the conditions that pin
the multipliers down.

The math (notation, derivation) is in the docstring of :mod:`hatrade.analysis.planner`: for
multipliers :math:`\chi_j` and weights :math:`\omega_i` per person, consumption is
:math:`c_{ij} = (u')^{-1}(\chi_j d_{ij}/\omega_i)`, the choice probabilities
:math:`\pi_{ij}(z)` are logit in :math:`n_{ij} + \psi_i(z,j)` with
:math:`n_{ij} = u(c_{ij}) - u'(c_{ij})c_{ij}`, and the multipliers clear the resource
constraints :math:`A_j L_j \bar N = \sum_i L_i\pi_{ij}c_{ij}d_{ij}` (with matched weights,
jointly with the spending shares). Both systems are solved by Newton's method on the logs
with the exact Jacobian (``jax.jacfwd``) and a backtracking line search, in float64.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.household import utility
from hatrade.core.income import IncomeProcess
from hatrade.core.markets import model_arrays
from hatrade.core.params import Household, World

__all__ = [
    "PlannerError",
    "planner_arrays",
    "allocation",
    "resource_residual",
    "matched_residual",
    "solve_multipliers",
    "solve_matched",
]

log = logging.getLogger(__name__)


class PlannerError(RuntimeError):
    """The planner's problem has no (numerically found) solution."""


def planner_arrays(world: World, hh: Household, inc: IncomeProcess) -> dict:
    """Arrays of the planner's problem; sigma and psi exactly as in the decentralized model."""
    arrs = model_arrays(world, hh, inc)
    mu = np.asarray(inc.dist, float)
    return dict(
        A=arrs.A,
        L=arrs.L,
        d=arrs.d,
        sigma=arrs.sigma,
        psi=arrs.psi,
        mu=jnp.asarray(mu),
        nbar=jnp.asarray(float(mu @ np.asarray(inc.z))),
        gamma=arrs.gamma,
    )


def allocation(log_chi, log_w, log_d, ar):
    """Allocation for multipliers chi, weights omega and trade costs d (all in logs)."""
    g = ar["gamma"]
    mu_c = jnp.exp(log_chi[None, :] + log_d - log_w[:, None])  # u'(c_ij) = chi_j d_ij / w_i
    c = mu_c ** (-1.0 / g)
    uc = utility(c, g)
    n = uc - mu_c * c
    sig = ar["sigma"][:, None, None]
    val = (n[:, None, :] + ar["psi"]) / sig  # (M, Nz, M)
    logpi_z = jax.nn.log_softmax(val, axis=-1)
    pi_z = jnp.exp(logpi_z)
    pi = jnp.einsum("z,izj->ij", ar["mu"], pi_z)
    U = jnp.einsum("z,izj->i", ar["mu"], pi_z * (uc[:, None, :] + ar["psi"] - sig * logpi_z))
    d = jnp.exp(log_d)
    demand = jnp.einsum("i,ij->j", ar["L"], pi * c * d)
    supply = ar["A"] * ar["L"] * ar["nbar"]
    # value per country at shadow prices chi (utils): L_i pi_ij chi_j d_ij c_ij
    value = ar["L"][:, None] * pi * jnp.exp(log_w)[:, None] * mu_c * c
    return dict(
        c=c, mu_c=mu_c, n=n, pi_z=pi_z, pi=pi, U=U, demand=demand, supply=supply, value=value
    )


def resource_residual(log_chi, log_w, log_d, ar):
    r"""Resource constraints in logs, :math:`\log\sum_i L_i\pi_{ij}c_{ij}d_{ij} - \log A_jL_j\bar N`."""
    a = allocation(log_chi, log_w, log_d, ar)
    return jnp.log(a["demand"]) - jnp.log(a["supply"])


def matched_residual(x, log_d, ar, target_share):
    """Unknowns (log chi, log omega); resource constraints, spending shares, normalization."""
    M = target_share.shape[0]
    log_chi, log_w = x[:M], x[M:]
    a = allocation(log_chi, log_w, log_d, ar)
    E = jnp.sum(a["value"], axis=1)
    share = E / jnp.sum(E)
    L = ar["L"]
    norm = jnp.log(jnp.sum(L * jnp.exp(log_w)) / jnp.sum(L))
    return jnp.concatenate(
        [
            jnp.log(a["demand"]) - jnp.log(a["supply"]),
            jnp.log(share[:-1]) - jnp.log(target_share[:-1]),
            norm[None],
        ]
    )


_res_resource = jax.jit(resource_residual)
_jac_resource = jax.jit(jax.jacfwd(resource_residual, argnums=0))
_res_matched = jax.jit(matched_residual)
_jac_matched = jax.jit(jax.jacfwd(matched_residual, argnums=0))


def _newton(F, J, x0, args, *, tol, max_iter, what, max_step=5.0):
    """Newton's method with the exact Jacobian ``J`` (jacfwd) and backtracking on max |F|.

    ``F(x, *args)`` and ``J(x, *args)`` are jitted module-level functions (no retracing).
    """
    x = np.asarray(x0, float)
    r = np.asarray(F(x, *args))
    if not np.all(np.isfinite(r)):
        raise PlannerError(
            f"{what}: the residual is not finite at the starting point; check "
            "that TFP, labor, trade costs and weights are of reasonable size."
        )
    err = float(np.max(np.abs(r)))
    history = [err]
    it = 0
    while err > tol:
        if it >= max_iter:
            raise PlannerError(
                f"{what} did not converge: max residual {err:.3e} after {it} Newton iterations "
                f"(tol {tol:.1e}); history {[f'{h:.1e}' for h in history]}. The world may have "
                "no interior solution (extreme weights, TFP or trade costs)."
            )
        Jx = np.asarray(J(x, *args))
        if not np.all(np.isfinite(Jx)):
            raise PlannerError(f"{what}: the Jacobian has non-finite entries at iteration {it}.")
        try:
            dx = np.linalg.solve(Jx, -r)
        except np.linalg.LinAlgError:
            raise PlannerError(
                f"{what}: singular Jacobian at iteration {it} (max residual "
                f"{err:.3e}); the problem has no locally unique solution."
            ) from None
        big = np.max(np.abs(dx))
        if big > max_step:
            dx *= max_step / big
        step, ok = 1.0, False
        for _ in range(40):
            x_try = x + step * dx
            r_try = np.asarray(F(x_try, *args))
            e_try = float(np.max(np.abs(r_try)))
            if np.isfinite(e_try) and (e_try < (1.0 - 1e-4 * step) * err or e_try <= tol):
                ok = True
                break
            step *= 0.5
        if not ok:
            if err < 1e3 * tol:  # at machine precision: cannot improve further
                break
            raise PlannerError(
                f"{what}: line search failed at iteration {it + 1} (max residual "
                f"{err:.3e}, history {[f'{h:.1e}' for h in history]})."
            )
        x, r, err = x_try, r_try, e_try
        it += 1
        history.append(err)
        log.debug("%s: Newton %d, step %.3g, max residual %.3e", what, it, step, err)
    return x, it, history


def solve_multipliers(log_chi0, log_w, log_d, ar, *, tol: float, max_iter: int, what: str):
    r"""Multipliers :math:`\log\chi` that clear the resource constraints at fixed weights.

    Newton's method (exact Jacobian, backtracking) on :func:`resource_residual` from
    ``log_chi0``, for weights ``log_w`` and trade costs ``log_d``.

    Returns
    -------
    log_chi : ndarray (M,)
    iterations : int
    history : list of float
        Max absolute residual after each iteration.

    Raises
    ------
    PlannerError
        When Newton's method fails.
    """
    return _newton(
        _res_resource,
        _jac_resource,
        log_chi0,
        (log_w, log_d, ar),
        tol=tol,
        max_iter=max_iter,
        what=what,
    )


def solve_matched(x0, log_d, ar, target_share, *, tol: float, max_iter: int, what: str):
    r"""Multipliers and weights :math:`(\log\chi, \log\omega)` that clear the resource
    constraints and give each country the spending share ``target_share``.

    Newton's method (exact Jacobian, backtracking) on :func:`matched_residual` from ``x0``
    (the ``2M`` unknowns stacked), for trade costs ``log_d``; the weights are normalized to
    a population-weighted mean of one.

    Returns
    -------
    x : ndarray (2M,)
        ``log chi`` then ``log omega``.
    iterations : int
    history : list of float
        Max absolute residual after each iteration.

    Raises
    ------
    PlannerError
        When Newton's method fails.
    """
    return _newton(
        _res_matched,
        _jac_matched,
        x0,
        (log_d, ar, target_share),
        tol=tol,
        max_iter=max_iter,
        what=what,
    )
