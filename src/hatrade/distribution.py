r"""The stationary distribution over (assets, income) (MODEL.md 2.2).

With the lottery (Young) method, mass :math:`\lambda(a,z)\pi_j(a,z) P(z,z')` at
:math:`a'_j(a,z)` is split between the two bracketing grid points
:math:`a_k \le a' \le a_{k+1}` in proportion to distance. The stationary :math:`\lambda`
solves :math:`\lambda = \lambda T`, :math:`\sum \lambda = 1`, directly (a dense LU solve of
the Na*Nz system): exact to machine precision.

Derivatives: a custom JVP solves :math:`(I - T^\top) d\lambda = \partial_\theta
\mathrm{push}(\lambda)`, :math:`\sum d\lambda = 0`, with the same LU factors; the tangent of
the push is computed by scatter-adds, so no tangent of the dense matrix is ever formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve

from .household import locate

__all__ = ["transition_matrix", "push", "stationary_distribution", "iterate_distribution"]


def transition_matrix(a_p, pi, a_grid, Pz):
    """Markov matrix over flattened states (a-major: index a * Nz + z), rows sum to one.

    Parameters
    ----------
    a_p, pi : (Na, Nz, M) next-period assets and choice probabilities.
    a_grid : (Na,) linear grid.  Pz : (Nz, Nz) income transitions.
    """
    Na, Nz, M = a_p.shape
    k, wt = locate(a_p, a_grid)
    rows = jnp.broadcast_to((jnp.arange(Na)[:, None, None] * Nz + jnp.arange(Nz)[None, :, None]),
                            a_p.shape)
    Q = jnp.zeros((Na * Nz, Na), dtype=a_p.dtype)
    Q = Q.at[rows.ravel(), k.ravel()].add((pi * wt).ravel())
    Q = Q.at[rows.ravel(), (k + 1).ravel()].add((pi * (1.0 - wt)).ravel())
    zrow = jnp.tile(jnp.arange(Nz), Na)  # income state of each row
    T = Q[:, :, None] * Pz[zrow][:, None, :]  # (Na*Nz, Na, Nz)
    return T.reshape(Na * Nz, Na * Nz)


def push(lam, a_p, pi, a_grid, Pz):
    """One step of the distribution, ``lam @ T``, without forming T. lam is (Na, Nz)."""
    Na, Nz, _ = a_p.shape
    k, wt = locate(a_p, a_grid)
    mass = lam[..., None] * pi
    zi = jnp.broadcast_to(jnp.arange(Nz)[None, :, None], a_p.shape)
    Y = jnp.zeros((Na, Nz), dtype=lam.dtype)
    Y = Y.at[k, zi].add(mass * wt).at[k + 1, zi].add(mass * (1.0 - wt))
    return Y @ Pz


def _factor(a_p, pi, a_grid, Pz):
    Na, Nz, _ = a_p.shape
    n = Na * Nz
    T = transition_matrix(a_p, pi, a_grid, Pz)
    A = (T.T - jnp.eye(n, dtype=T.dtype)).at[0, :].set(1.0)
    return lu_factor(A)


@jax.custom_jvp
def stationary_distribution(a_p, pi, a_grid, Pz):
    """Stationary distribution lambda (Na, Nz): solves lambda T = lambda with sum one."""
    Na, Nz, _ = a_p.shape
    lu = _factor(a_p, pi, a_grid, Pz)
    b = jnp.zeros(Na * Nz, dtype=a_p.dtype).at[0].set(1.0)
    return lu_solve(lu, b).reshape(Na, Nz)


@stationary_distribution.defjvp
def _stationary_jvp(primals, tangents):
    a_p, pi, a_grid, Pz = primals
    Na, Nz, _ = a_p.shape
    lu = _factor(a_p, pi, a_grid, Pz)
    b = jnp.zeros(Na * Nz, dtype=a_p.dtype).at[0].set(1.0)
    lam = lu_solve(lu, b).reshape(Na, Nz)
    _, r = jax.jvp(lambda *args: push(lam, *args), primals, tangents)
    rhs = (-r.ravel()).at[0].set(0.0)
    dlam = lu_solve(lu, rhs).reshape(Na, Nz)
    return lam, dlam


def iterate_distribution(a_p, pi, a_grid, Pz, lam0=None, tol=1e-12, max_iter=100_000):
    """Forward iteration lambda <- lambda T to ``tol`` (a cross-check of the direct solve)."""
    Na, Nz, _ = a_p.shape
    lam0 = jnp.full((Na, Nz), 1.0 / (Na * Nz)) if lam0 is None else lam0

    def cond(c):
        _, it, err = c
        return (it < max_iter) & (err > tol)

    def body(c):
        lam, it, _ = c
        new = push(lam, a_p, pi, a_grid, Pz)
        return new, it + 1, jnp.max(jnp.abs(new - lam))

    lam, it, err = jax.lax.while_loop(cond, body, (lam0, 0, jnp.inf))
    return lam, it, err
