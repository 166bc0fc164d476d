r"""The stationary distribution over (assets, income) (docs/model.md 2.2).

With the lottery (Young) method, mass :math:`\lambda(a,z)\pi_j(a,z) P(z,z')` at
:math:`a'_j(a,z)` is split between the two bracketing grid points
:math:`a_k \le a' \le a_{k+1}` in proportion to distance. The transition factors as

.. math::

    T[(a,z),(k,z')] = Q_z[a,k]\, P(z,z'), \qquad
    Q_z[a,k] = \sum_j \pi_j(a,z)\, \omega_k\big(a'_j(a,z)\big),

with :math:`\omega_k` the lottery weight of node k (at most two nodes per (a, z, j)), so
one step of the distribution costs Nz products of an Na x Na matrix with a vector
(:func:`transition_blocks`, :func:`apply_transition`) instead of an (Na Nz)^2 one; with few
varieties (40 M <= Na, e.g. the one-good limit) the step is 2 Na Nz M scatter-adds instead.

Solvers (``method``):

``"krylov"`` (default)
    BiCGStab on the nonsingular system

    .. math::

        \lambda - \lambda T + u\,(\textstyle\sum \lambda) = u,

    whose unique solution is the stationary distribution (multiply by the ones vector:
    :math:`\sum\lambda = 1`, then :math:`\lambda = \lambda T`) for any u with positive sum.
    u, also the starting guess, is uniform in assets with the income chain's stationary
    marginal (so the slow income modes never enter). The result is clipped at zero
    (round-off negatives ~1e-17) and normalized to sum one; the solver stops when *that*
    distribution's residual :math:`\max|\lambda T - \lambda|` is at most ``tol``
    (restarting from the current iterate after a breakdown, or when the recursively updated
    residual has drifted from the true one). About 15-35 iterations (two products with T
    each) at Na = 100, Nz = 10; error against the exact solution about 10 x ``tol``.
``"direct"``
    A dense LU solve of the Na Nz system, exact to machine precision but O((Na Nz)^3):
    a cross-check and fallback.

:func:`stationary_distribution_info` also returns the iterations and the final residual
(``residual > tol``, or not finite, means the solver did not converge: callers should
raise), and :func:`distribution_residual` measures any candidate.

Derivatives: a custom JVP solves, with the same method,

.. math::

    d\lambda - d\lambda\, T + u \textstyle\sum d\lambda = \lambda\, dT
    \quad(\text{direct: } (I - T^\top) d\lambda = (\lambda\,dT)^\top,\ \textstyle\sum d\lambda = 0),

the implicit derivative of the fixed point (for tangents that keep the rows of T summing to
one, :math:`\sum \lambda\,dT = 0` and so :math:`\sum d\lambda = 0` in both). The right-hand
side :math:`\lambda\,dT` is the tangent of the product :math:`\lambda T` at fixed
:math:`\lambda` (through the blocks or the scatter weights); no tangent of the dense matrix
is formed. The Krylov tangent solve stops when its residual is below ``tol_tangent`` times
the largest entry of the right-hand side. Reverse mode is not supported (nor needed: the
library differentiates in forward mode).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve

from hatrade.core.household import locate

__all__ = [
    "METHODS",
    "DistributionInfo",
    "apply_transition",
    "distribution_residual",
    "iterate_distribution",
    "push",
    "stationary_distribution",
    "stationary_distribution_info",
    "transition_blocks",
    "transition_matrix",
]

METHODS = ("krylov", "direct")
TOL = 1e-14  # default residual tolerance of the Krylov solve (errors ~1e-13)
TOL_TANGENT = 1e-12  # relative residual tolerance of the Krylov tangent solve
MAX_ITER = 500  # BiCGStab iterations (all restarts together)
_MAX_RESTARTS = 8


class DistributionInfo(NamedTuple):
    """Diagnostics of a stationary-distribution solve (JAX scalars, float).

    iterations : BiCGStab iterations over all restarts (0 for ``"direct"``).
    residual : :math:`\\max(\\max|\\lambda T - \\lambda|, |\\sum\\lambda - 1|)` of the
        returned distribution. Above the tolerance (or NaN): not converged.
    """

    iterations: jax.Array
    residual: jax.Array


def transition_matrix(a_p, pi, a_grid, Pz):
    """Markov matrix over flattened states (a-major: index a * Nz + z), rows sum to one.

    Parameters
    ----------
    a_p, pi : (Na, Nz, M) next-period assets and choice probabilities.
    a_grid : (Na,) linear grid.  Pz : (Nz, Nz) income transitions.
    """
    Na, Nz, _ = a_p.shape
    k, wt = locate(a_p, a_grid)
    rows = jnp.broadcast_to(
        (jnp.arange(Na)[:, None, None] * Nz + jnp.arange(Nz)[None, :, None]), a_p.shape
    )
    Q = jnp.zeros((Na * Nz, Na), dtype=a_p.dtype)
    Q = Q.at[rows.ravel(), k.ravel()].add((pi * wt).ravel())
    Q = Q.at[rows.ravel(), (k + 1).ravel()].add((pi * (1.0 - wt)).ravel())
    zrow = jnp.tile(jnp.arange(Nz), Na)  # income state of each row
    T = Q[:, :, None] * Pz[zrow][:, None, :]  # (Na*Nz, Na, Nz)
    return T.reshape(Na * Nz, Na * Nz)


def transition_blocks(a_p, pi, a_grid):
    r"""The asset part of the transition, :math:`Q_z[a,k]`, an (Nz, Na, Na) array.

    :math:`Q_z[a,k] = \sum_j \pi_j(a,z)\,\omega_k(a'_j(a,z))` (lottery weights); rows sum
    to one when the choice probabilities do. Built with one flat scatter-add.
    """
    Na, Nz, _ = a_p.shape
    k, wt = locate(a_p, a_grid)
    base = (jnp.arange(Nz)[None, :, None] * Na + jnp.arange(Na)[:, None, None]) * Na + k
    idx = jnp.concatenate([base.ravel(), base.ravel() + 1])
    val = jnp.concatenate([(pi * wt).ravel(), (pi * (1.0 - wt)).ravel()])
    return jnp.zeros(Nz * Na * Na, dtype=val.dtype).at[idx].add(val).reshape(Nz, Na, Na)


def apply_transition(lam, Q, Pz):
    r"""One step :math:`\lambda T`: :math:`\lambda'(k,z') = \sum_z P(z,z') \sum_a Q_z[a,k]\lambda(a,z)`."""
    return jnp.einsum("zak,az->kz", Q, lam) @ Pz


def push(lam, a_p, pi, a_grid, Pz):
    """One step of the distribution, ``lam @ T``, by scatter-adds (no matrix). lam is (Na, Nz)."""
    Na, Nz, _ = a_p.shape
    k, wt = locate(a_p, a_grid)
    mass = lam[..., None] * pi
    zi = jnp.broadcast_to(jnp.arange(Nz)[None, :, None], a_p.shape)
    Y = jnp.zeros((Na, Nz), dtype=lam.dtype)
    Y = Y.at[k, zi].add(mass * wt).at[k + 1, zi].add(mass * (1.0 - wt))
    return Y @ Pz


def _use_scatter(Na, M):
    """Static choice of the product with T: scatter-adds (2 Na Nz M of them) when there are
    few varieties, the dense blocks (Nz Na^2 multiply-adds, fast on CPU) otherwise.
    Measured (Na = 100, Nz = 10): one product 3.7 us by scatter vs 9 us dense at M = 1,
    64 us vs 9 us at M = 19."""
    return 40 * M <= Na


def _transition_operator(a_p, pi, a_grid, Pz):
    """x -> x T on z-major arrays x (Nz, Na) (no transposes inside iterations)."""
    Na, Nz, M = a_p.shape
    PzT = Pz.T
    if _use_scatter(Na, M):
        k, wt = locate(a_p, a_grid)
        zoff = jnp.arange(Nz)[None, :, None] * Na
        dst = jnp.concatenate([(zoff + k).ravel(), (zoff + k + 1).ravel()])
        w = jnp.stack([pi * wt, pi * (1.0 - wt)])

        def op(x):
            vals = (w * x.T[None, :, :, None]).ravel()
            return PzT @ jnp.zeros(Nz * Na, dtype=vals.dtype).at[dst].add(vals).reshape(Nz, Na)
    else:
        Q = transition_blocks(a_p, pi, a_grid)

        def op(x):
            return PzT @ jnp.einsum("zak,za->zk", Q, x)

    return op


def _residual(lam, op):
    res = jnp.maximum(jnp.max(jnp.abs(op(lam.T) - lam.T)), jnp.abs(jnp.sum(lam) - 1.0))
    return jnp.where(jnp.isnan(res), jnp.inf, res)


def distribution_residual(lam, a_p, pi, a_grid, Pz):
    r""":math:`\max(\max|\lambda T - \lambda|, |\sum\lambda - 1|)`: how far ``lam`` (Na, Nz)
    is from being the stationary distribution of the policies (a scalar; inf if NaN)."""
    return _residual(lam, _transition_operator(a_p, pi, a_grid, Pz))


# ----------------------------------------------------------------------------- BiCGStab


def _bicgstab(A, b, x0, tol, max_iter, check=None):
    """Solve A x = b (A a linear map on arrays shaped like b) by restarted BiCGStab.

    Stops when the *true* residual max|b - A x| (or ``check(x)`` if given) is <= tol, after
    ``max_iter`` iterations in all, or after a few restarts. A restart (from the current
    iterate, with the true residual) follows a breakdown (a zero or non-finite inner
    product) or a recursive residual below tol whose true residual is not. Returns
    (x, iterations, final true residual or check). Under vmap the loops run until the
    slowest member stops; members that have stopped keep their values.
    """
    one = jnp.ones((), b.dtype)

    def dot(p, q):
        return jnp.sum(p * q)

    def inner(x, r, budget):
        rhat = r

        def cond(c):
            return (c["k"] < budget) & (c["err"] > tol) & c["ok"]

        def body(c):
            rho = dot(rhat, c["r"])
            beta = (rho / c["rho"]) * (c["alpha"] / c["omega"])
            p = c["r"] + beta * (c["p"] - c["omega"] * c["v"])
            v = A(p)
            alpha = rho / dot(rhat, v)
            s = c["r"] - alpha * v
            t = A(s)
            omega = dot(t, s) / dot(t, t)
            x = c["x"] + alpha * p + omega * s
            r = s - omega * t
            err = jnp.max(jnp.abs(r))
            ok = jnp.isfinite(err) & (omega != 0)
            return {
                "x": jnp.where(ok, x, c["x"]),
                "r": r,
                "p": p,
                "v": v,
                "rho": rho,
                "alpha": alpha,
                "omega": omega,
                "k": c["k"] + 1,
                "err": err,
                "ok": ok,
            }

        zero = jnp.zeros_like(b)
        c = {
            "x": x,
            "r": r,
            "p": zero,
            "v": zero,
            "rho": one,
            "alpha": one,
            "omega": one,
            "k": jnp.zeros((), jnp.int32),
            "err": jnp.max(jnp.abs(r)),
            "ok": jnp.array(True),
        }
        c = jax.lax.while_loop(cond, body, c)
        return c["x"], c["k"]

    def outer_cond(c):
        _, _, err, it, n = c
        return (err > tol) & (it < max_iter) & (n < _MAX_RESTARTS)

    def outer_body(c):
        x, r, err, it, n = c
        x, k = inner(x, r, max_iter - it)
        r = b - A(x)
        err = jnp.max(jnp.abs(r)) if check is None else check(x)
        return x, r, jnp.where(jnp.isnan(err), jnp.inf, err), it + k, n + 1

    r0 = b - A(x0)
    c = (x0, r0, jnp.max(jnp.abs(r0)), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    x, _, err, it, _ = jax.lax.while_loop(outer_cond, outer_body, c)
    return x, it, err


def _augmented(op, u):
    """x -> x - x T + u sum(x) on z-major arrays (Nz, Na).

    Nonsingular when the chain has one stationary distribution; the solution with right
    side u is lambda (transposed).
    """
    return lambda x: x - op(x) + u * jnp.sum(x)


def _start(Pz, Na):
    """u: uniform in assets with the income chain's stationary marginal (z-major, (Nz, Na)).

    With the right marginal the slow income modes (eigenvalues of P, e.g. 0.9) are absent
    from the start and from the Krylov space (the marginal of x T is that of x times P): about
    15% fewer iterations. Uniform over all states if P's stationary vector is not found.
    """
    Nz = Pz.shape[0]
    A = (Pz.T - jnp.eye(Nz, dtype=Pz.dtype)).at[0].set(1.0)
    pz = jnp.linalg.solve(A, jnp.zeros(Nz, dtype=Pz.dtype).at[0].set(1.0))
    ok = jnp.all(jnp.isfinite(pz)) & jnp.all(pz > 0)
    pz = jnp.where(ok, pz, 1.0 / Nz)
    return jnp.broadcast_to(pz[:, None] / Na, (Nz, Na))


def _finish(x):
    """z-major iterate -> lambda (Na, Nz): round-off negatives (~1e-17; the solution is >= 0)
    set to zero and the sum made one (the augmented system leaves it ~1e-13 off)."""
    lam = jnp.maximum(x.T, 0.0)
    return lam / jnp.sum(lam)


def _krylov_primal(op, Pz, Na, tol, max_iter):
    """BiCGStab until the residual of the returned lambda (after :func:`_finish`) <= tol."""
    u = _start(Pz, Na)
    x, it, _ = _bicgstab(
        _augmented(op, u), u, u, tol, max_iter, check=lambda x: _residual(_finish(x), op)
    )
    return _finish(x), it


def _direct_factor(a_p, pi, a_grid, Pz):
    Na, Nz, _ = a_p.shape
    n = Na * Nz
    T = transition_matrix(a_p, pi, a_grid, Pz)
    A = (T.T - jnp.eye(n, dtype=T.dtype)).at[0, :].set(1.0)
    return lu_factor(A)


def _direct_primal(lu, Na, Nz, dtype):
    b = jnp.zeros(Na * Nz, dtype=dtype).at[0].set(1.0)
    return lu_solve(lu, b).reshape(Na, Nz)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _stationary(method, tol, tol_tangent, max_iter, a_p, pi, a_grid, Pz):
    Na, Nz, _ = a_p.shape
    op = _transition_operator(a_p, pi, a_grid, Pz)
    if method == "direct":
        lam = _direct_primal(_direct_factor(a_p, pi, a_grid, Pz), Na, Nz, a_p.dtype)
        it = jnp.zeros((), jnp.int32)
    else:
        lam, it = _krylov_primal(op, Pz, Na, tol, max_iter)
    return lam, DistributionInfo(it.astype(a_p.dtype), _residual(lam, op))


@_stationary.defjvp
def _stationary_jvp(method, tol, tol_tangent, max_iter, primals, tangents):
    a_p, pi, a_grid, Pz = primals
    Na, Nz, _ = a_p.shape
    op = _transition_operator(*primals)
    if method == "direct":
        lu = _direct_factor(a_p, pi, a_grid, Pz)
        lam = _direct_primal(lu, Na, Nz, a_p.dtype)
        it = jnp.zeros((), jnp.int32)
    else:
        lam, it = _krylov_primal(op, Pz, Na, tol, max_iter)
    info = DistributionInfo(it.astype(a_p.dtype), _residual(lam, op))
    # lambda dT (z-major): the tangent of the product with T at fixed lambda
    _, r = jax.jvp(lambda *args: _transition_operator(*args)(lam.T), primals, tangents)
    if method == "direct":
        dlam = lu_solve(lu, (-r.T).ravel().at[0].set(0.0)).reshape(Na, Nz)
    else:
        scale = jnp.max(jnp.abs(r))
        dlam, _, _ = _bicgstab(
            _augmented(op, _start(Pz, Na)), r, jnp.zeros_like(r), tol_tangent * scale, max_iter
        )
        dlam = dlam.T
    return (lam, info), (dlam, jax.tree.map(jnp.zeros_like, info))


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"stationary distribution: method={method!r}; allowed: {METHODS}")


def stationary_distribution_info(
    a_p,
    pi,
    a_grid,
    Pz,
    method: str = "krylov",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    tol_tangent: float = TOL_TANGENT,
):
    """Like :func:`stationary_distribution`, also returning :class:`DistributionInfo`.

    Not converged (callers should raise) when ``info.residual > tol`` or is not finite,
    e.g. ``iterations == max_iter``. For ``"direct"`` the residual is reported too.
    """
    _check_method(method)
    return _stationary(method, float(tol), float(tol_tangent), int(max_iter), a_p, pi, a_grid, Pz)


def stationary_distribution(
    a_p,
    pi,
    a_grid,
    Pz,
    method: str = "krylov",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    tol_tangent: float = TOL_TANGENT,
):
    r"""Stationary distribution :math:`\lambda` (Na, Nz): :math:`\lambda T = \lambda`, sum one.

    Parameters
    ----------
    a_p, pi : (Na, Nz, M) next-period assets and choice probabilities (from
        :func:`hatrade.core.household.policies`).
    a_grid : (Na,) linear asset grid.  Pz : (Nz, Nz) income transition matrix.
    method : ``"krylov"`` (default; BiCGStab on the sparse factorized transition) or
        ``"direct"`` (dense LU, O((Na Nz)^3); a cross-check).
    tol : Krylov residual tolerance (max-abs; the error is about 10 x tol).
    max_iter : Krylov iteration cap (each iteration: two products with T).
    tol_tangent : relative residual tolerance of the Krylov tangent solve (JVP).

    Jit-able and vmap-able; differentiable in forward mode (custom JVP, implicit
    differentiation). Convergence is not checked here: use
    :func:`stationary_distribution_info` (or :func:`distribution_residual`) and raise if the
    residual exceeds ``tol``.
    """
    return stationary_distribution_info(a_p, pi, a_grid, Pz, method, tol, max_iter, tol_tangent)[0]


def iterate_distribution(a_p, pi, a_grid, Pz, lam0=None, tol=1e-12, max_iter=100_000):
    """Forward iteration lambda <- lambda T to ``tol`` (a cross-check of the solvers).

    Returns (lambda, iterations, last step max|lambda T - lambda|). The step is the product
    used by the Krylov solver (dense blocks or scatter-adds), built once.
    """
    Na, Nz, _ = a_p.shape
    x0 = jnp.full((Nz, Na), 1.0 / (Na * Nz), dtype=a_p.dtype) if lam0 is None else lam0.T
    op = _transition_operator(a_p, pi, a_grid, Pz)

    def cond(c):
        _, it, err = c
        return (it < max_iter) & (err > tol)

    def body(c):
        x, it, _ = c
        new = op(x)
        return new, it + 1, jnp.max(jnp.abs(new - x))

    x, it, err = jax.lax.while_loop(cond, body, (x0, 0, jnp.inf))
    return x.T, it, err
