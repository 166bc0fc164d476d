r"""One country's household problem for welfare: inputs at equilibrium prices, income
scaling and the compiled value solves the welfare measures are built from.

The equivalent variation scales all income of a household by :math:`\lambda` at the old
goods prices, in the budget *and* the Euler equation: the problem at
:math:`(\lambda R, \lambda w, \lambda T)` (:func:`scale_income`). The solves here return
the value :math:`V(a, z; \lambda)` of every state, batched over values of
:math:`\lambda` (:func:`values_at_nodes`) or over states, each at its own :math:`\lambda`
(:func:`values_at_states`), and its exact :math:`\lambda`-derivative by forward-mode
differentiation through the fixed point (:func:`value_tangent`).
"""

from __future__ import annotations

import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.household import (
    HHParams,
    HHState,
    initial_state,
    policies,
    solve_fixed_point,
)
from hatrade.core.x64 import enable_x64

__all__ = [
    "check_iterations",
    "country_index",
    "household_problem",
    "reference_solve_time",
    "reference_time",
    "scale_income",
    "solve_value",
    "value_at",
    "value_tangent",
    "values_at_nodes",
    "values_at_states",
]

tree_map = jax.tree_util.tree_map


def country_index(eq, country) -> int:
    """Index of ``country`` (a code or an index) in ``eq``'s world."""
    return eq.world.index(country) if isinstance(country, str) else int(country)


@enable_x64
def household_problem(eq, country) -> tuple[HHParams, HHState]:
    """One country's household inputs at the equilibrium prices and its solved state."""
    from hatrade.core.markets import country_params, model_arrays

    i = country_index(eq, country)
    arrs = model_arrays(eq.world, eq.household, eq.income)
    prm = country_params(
        arrs,
        jnp.asarray(eq.prices.w),
        jnp.asarray(eq.prices.R),
        jnp.asarray(eq.prices.T),
        jnp.asarray(eq.prices.beta),
    )

    def take(x):
        return x[i]

    return tree_map(take, prm), tree_map(take, eq.state)


def scale_income(prm: HHParams, lam) -> HHParams:
    """Income scaled by lam in the budget and the Euler equation: (lam R, lam w, lam T)."""
    return prm._replace(w=prm.w * lam, R=prm.R * lam, T=prm.T * lam)


@partial(jax.jit, static_argnums=(2, 3))
def solve_value(prm, x0, tol, max_iter):
    """(V, state, iterations) of one household problem from ``x0``."""
    x, it = solve_fixed_point(prm, x0, tol, max_iter)
    return policies(x, prm).V, x, it


def value_at(prm, x0, lam, tol, max_iter):
    """(V, state, iterations) of the problem with income scaled by ``lam`` (not compiled)."""
    p = scale_income(prm, lam)
    x, it = solve_fixed_point(p, x0, tol, max_iter)
    return policies(x, p).V, x, it


@partial(jax.jit, static_argnums=(3, 4))
def value_tangent(prm, x0, lam, tol, max_iter):
    """V(.; lam), its lam-derivative, the state and its lam-tangent (one lam)."""
    (V, x, it), (dV, dx, _) = jax.jvp(
        lambda lam_: value_at(prm, x0, lam_, tol, max_iter), (lam,), (jnp.ones_like(lam),)
    )
    return V, dV, x, dx, it


@partial(jax.jit, static_argnums=(3, 4))
def values_at_nodes(prm, x0s, lams, tol, max_iter):
    """Batched over nodes: V(.; lam) at every lam in ``lams`` (one vmapped primal solve)."""

    def one(x0, lam):
        V, x, it = value_at(prm, x0, lam, tol, max_iter)
        return V, x, it

    return jax.vmap(one)(x0s, lams)


@partial(jax.jit, static_argnums=(5, 6))
def values_at_states(prm, x0s, lams, ia, iz, tol, max_iter):
    """Batched over states: V^old(a_s, z_s; lam_s), each state at its own lam (exact)."""

    def one(x0, lam, a, z):
        V, x, it = value_at(prm, x0, lam, tol, max_iter)
        return V[a, z], x, it

    return jax.vmap(one)(x0s, lams, ia, iz)


def check_iterations(its, max_iter, code):
    """Raise :class:`~hatrade.core.errors.EquilibriumError` where a solve hit ``max_iter``."""
    if any(int(i) >= max_iter for i in np.ravel(its)):
        from hatrade.core.errors import EquilibriumError

        raise EquilibriumError(
            f"{code}: a welfare household solve did not converge in "
            f"{max_iter} iterations; try a larger hh_max_iter."
        )


def reference_time(prm, tol, max_iter, repeat: int = 3):
    """(seconds, iterations) of one household solve from the author's initial guess
    (compiled first; the fastest of ``repeat``)."""
    x0 = initial_state(prm)
    V, _, it = solve_value(prm, x0, tol, max_iter)
    V.block_until_ready()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        V, _, it = solve_value(prm, x0, tol, max_iter)
        V.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return best, int(it)


@enable_x64
def reference_solve_time(
    eq, country, hh_tol: float = 1e-12, hh_max_iter: int = 5000, repeat: int = 3
):
    """Seconds and iterations of one household solve of ``country`` at ``eq``'s prices from
    the author's initial guess: the unit of "household-solve equivalents"."""
    prm, _ = household_problem(eq, country)
    return reference_time(prm, hh_tol, hh_max_iter, repeat)
