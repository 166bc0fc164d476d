r"""Matrix-free criterion gradients: GMRES on the equilibrium's tangent system.

For one instrument direction :math:`e_k` the implicit function theorem in forward form is

.. math::

    F_u\, \dot u = -F_\theta e_k, \qquad \frac{dC}{d\theta_k} = C_u \dot u + C_\theta e_k,

and every product :math:`(F_u, C_u)\,v + (F_\theta, C_\theta)\,s` is **one world tangent
direction** (:func:`world_jvps`: every country's household fixed point and stationary
distribution differentiated along the change of its own inputs, all countries at once),
instead of the :math:`M + 3` directions of the full household-block Jacobian. The system is
solved by GMRES (:func:`tangent_gmres`, Arnoldi with right preconditioning by the solver's
Jacobian at the solution, Broyden-updated, or the previous gradient's), starting from the
previous evaluation's :math:`\dot u`; every direction's tangent iterations start from the
combination of an earlier household block's state tangents that its input changes give
(:class:`KrylovWarm`), so each costs a fraction of a cold one; with a good preconditioner a
few directions suffice. Products are exact (to the
tangent tolerance); GMRES stops when the residual of the tangent system is below ``tol``,
so the result equals the full-Jacobian adjoint gradient to that tolerance
(``tests/test_policy.py`` checks both against each other and against finite differences).
The products also give :math:`F_u` exactly on the Krylov space, a multi-secant update of the
preconditioner (:func:`secant_update`) that is the next equilibrium solve's starting
Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import stationary_distribution
from hatrade.core.household import HHState, policies
from hatrade.core.markets import aggregate, country_params, income_transfers, solve_countries

__all__ = ["KrylovWarm", "TangentSolve", "secant_update", "tangent_gmres", "world_jvps"]

tree_map = jax.tree_util.tree_map


@partial(jax.jit, static_argnums=(7, 8, 9))
def world_jvps(arrs, w0, R0, T0, beta, state, dins, tol, max_iter, ttol, dstate):
    r"""Forward derivatives of every country's (M_ij, A_i, household state) along input
    tangents ``dins`` (leading axis: direction): ``p`` (n, M, M) of :math:`\log p_{ik}`,
    ``w`` (n, M) of :math:`\log w_i` in income, ``R``, ``T``, ``tau`` (n, M). ``arrs`` must
    carry both instruments (``tau`` and ``rebate`` arrays); ``dstate`` warm-starts the
    tangent iterations (zeros: from the direct effect)."""
    M = w0.shape[0]
    base = country_params(arrs, w0, R0, T0, beta)

    def f(xp, xw, R, T, tau, x0):
        w = w0 * jnp.exp(xw)
        a2 = arrs._replace(tau=tau)
        prm = base._replace(p=base.p * jnp.exp(xp), w=w, R=R, T=income_transfers(a2, w, T))
        x, _ = solve_countries(prm, x0, tol, max_iter, ttol)
        pol = jax.vmap(policies)(x, prm)
        lam = jax.vmap(stationary_distribution)(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
        agg = aggregate(arrs, prm, pol, lam)
        return agg["M"], agg["A"], x

    zM = jnp.zeros(M)
    primal = (jnp.zeros((M, M)), zM, base.R, T0, arrs.tau, state)

    def one(dp, dw, dR, dT, dtau, dx):
        return jax.jvp(f, primal, (dp, dw, dR, dT, dtau, dx))[1]

    return jax.vmap(one)(dins["p"], dins["w"], dins["R"], dins["T"], dins["tau"], dstate)


@dataclass
class KrylovWarm:
    """Warm start of the next gradient: per instrument, the tangent of the unknowns
    :math:`\\dot u` (n_theta, n; None if unknown), and ``basis``, the state tangents of a
    household block (rows p, w, R, T; HHState of (rows, M, ...) arrays) whose combination
    along a direction's input changes starts that direction's tangent iterations."""

    du: np.ndarray | None
    basis: HHState


@dataclass
class TangentSolve:
    """One instrument's solution: ``du`` the tangent of the unknowns, ``dC`` the total
    derivative of the criterion, ``Z``/``AZ`` the
    Krylov directions and their exact products :math:`F_u z`, ``directions`` the world
    tangent directions used, ``residual`` of the tangent system; ``history``: (residual,
    dC) after the first product and after every Krylov direction (how fast GMRES
    converged, a diagnostic of the preconditioner)."""

    du: np.ndarray
    dC: float
    Z: list
    AZ: list
    directions: int
    residual: float
    history: list


def tangent_gmres(product, du0, precondition, *, tol: float, max_iter: int) -> TangentSolve | None:
    r"""Solve :math:`F_u \dot u = -F_\theta e_k` by right-preconditioned GMRES.

    ``product(v, s)`` returns (dF, dC) of the direction :math:`(v, s e_k)`
    (one world tangent direction); ``precondition(r)`` applies an approximate
    :math:`F_u^{-1}`. The first product is at the warm start :math:`(\dot u_0, e_k)`; each
    further one at a Krylov direction scaled to the current residual (tangent iterations
    stop on an absolute tolerance, so small directions are cheap). Returns None when the
    residual is not below ``tol`` after ``max_iter`` Krylov directions (the caller falls
    back to the full Jacobian).
    """
    dF0, dC0 = product(du0, 1.0)
    r0 = -np.asarray(dF0)
    beta = float(np.linalg.norm(r0))
    n = r0.size
    V, Z, AZ, dCs = [r0 / max(beta, 1e-300)], [], [], []
    H = np.zeros((max_iter + 1, max_iter))
    y, res = np.zeros(0), beta
    history = [(beta, float(dC0))]
    for j in range(max_iter):
        if res <= tol:
            break
        z = precondition(V[j])
        dF, dC = product(beta * z, 0.0)  # scaled: absolute tangent tolerance
        Az = np.asarray(dF) / beta
        Z.append(z), AZ.append(Az), dCs.append(float(dC) / beta)
        wv = Az.copy()
        for i in range(j + 1):  # modified Gram-Schmidt, twice
            H[i, j] = V[i] @ wv
            wv -= H[i, j] * V[i]
        for i in range(j + 1):
            c = V[i] @ wv
            H[i, j] += c
            wv -= c * V[i]
        H[j + 1, j] = np.linalg.norm(wv)
        V.append(wv / max(H[j + 1, j], 1e-300))
        e1 = np.zeros(j + 2)
        e1[0] = beta
        y = np.linalg.lstsq(H[: j + 2, : j + 1], e1, rcond=None)[0]
        res = float(np.linalg.norm(e1 - H[: j + 2, : j + 1] @ y))
        history.append((res, float(dC0) + float(np.dot(dCs, y))))
        if j + 1 >= n:
            break
    if res > tol:
        return None
    du = np.asarray(du0, float) + (np.array(Z).T @ y if Z else 0.0)
    dC = float(dC0) + float(np.dot(dCs, y)) if Z else float(dC0)
    return TangentSolve(du, dC, Z, AZ, 1 + len(Z), res, history)


def secant_update(P: np.ndarray, Z: list, AZ: list) -> np.ndarray:
    r"""The preconditioner made exact on the Krylov directions: :math:`P + (AZ - PZ) Z^+`
    (a multi-secant Broyden update; the columns of Z are directions with known products
    :math:`F_u z`)."""
    if not Z:
        return P
    Zm, AZm = np.array(Z).T, np.array(AZ).T
    return P + (AZm - P @ Zm) @ np.linalg.pinv(Zm)
