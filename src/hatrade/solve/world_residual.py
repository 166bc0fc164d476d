r"""The world's excess demands at the solver's unknowns, and their reference Jacobian.

:func:`residual` evaluates the relative excess demands :math:`r(u)` (docs/model.md section 3)
of :func:`hatrade.core.markets.residual_fn`, compiled once per static layout key
(:meth:`~hatrade.core.markets.Layout.split`), for the Newton-Broyden iteration
(:mod:`hatrade.solve.newton`). :func:`reference_jacobian` differentiates it in forward mode
through the whole world, one direction per unknown: the check of the household-block
Jacobian that the solver composes (:func:`hatrade.core.jacobian.equilibrium_jacobian`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.markets import Layout, ModelArrays, residual_fn

__all__ = ["reference_jacobian", "residual"]


def residual(
    u,
    x0,
    arrs: ModelArrays,
    layout: Layout,
    tol: float,
    max_iter: int,
    tol_now: float | None = None,
):
    """Excess demands at the unknowns ``u`` (households from ``x0``, solved to ``tol_now``,
    default ``tol``), compiled once per static layout key (:meth:`Layout.split`); not for
    differentiation (see :func:`reference_jacobian`).

    Returns ``(r, (aggregates, solution))`` as :func:`hatrade.core.markets.residual_fn`.
    """
    key, nums = layout.split()
    tol_now = np.float64(tol if tol_now is None else tol_now)
    return _residual_jit(u, x0, nums, arrs, tol_now, key, tol, max_iter)


@partial(jax.jit, static_argnums=(5, 6, 7))
def _residual_jit(u, x0, nums, arrs, tol_now, key, tol, max_iter):
    return residual_fn(arrs, key.bind(nums), tol, max_iter)(u, x0, tol_now)


def reference_jacobian(
    u,
    x0,
    dx0,
    arrs: ModelArrays,
    layout: Layout,
    tol: float,
    max_iter: int,
    ttol: float | None = None,
):
    """Reference Jacobian of the residuals: forward mode through the whole world, one
    direction per unknown (the solver composes it from the household block instead,
    :func:`hatrade.core.jacobian.equilibrium_jacobian`; tests check that the two agree).

    ``dx0`` (batched over directions, or None) warm-starts the implicit-differentiation
    tangents of the household states; returns ``(J, r, state tangents)``, the tangents for
    the next call.
    """
    key, nums = layout.split()
    return _jacobian_jit(u, x0, dx0, nums, arrs, key, tol, max_iter, ttol)


@partial(jax.jit, static_argnums=(5, 6, 7, 8))
def _jacobian_jit(u, x0, dx0, nums, arrs, key, tol, max_iter, ttol=None):
    f = residual_fn(arrs, key.bind(nums), tol, max_iter, ttol)
    n = u.shape[0]
    eye = jnp.eye(n, dtype=u.dtype)
    if dx0 is None:
        dx0 = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), x0)

    def one(du, dx):
        (r, _), (dr, (_, dsol)) = jax.jvp(f, (u, x0), (du, dx))
        return dr, dsol["state"], r

    dr, dstate, r = jax.vmap(one, out_axes=(1, 0, None))(eye, dx0)
    return dr, r, dstate
