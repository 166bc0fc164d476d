r"""Exact tangents of one country's household policies to its prices (implicit derivatives).

For a country's converged household problem (fixed point of the EGM step at given prices),
the derivatives of the policies :math:`(c_j, a'_j, \pi_j)(a, z)` in a batch of price
directions :math:`dp` (forward mode, all directions batched with ``vmap``), with the
implicit-function theorem at the fixed point. Used by :mod:`hatrade.analysis.elasticity`
(Proposition 1 elasticities).

Computation
-----------
Derivatives are exact: forward-mode AD (one tangent direction :math:`dp = p_{ij} e_j` per
partner, all partners batched with ``vmap``) through the converged household problem of
country :math:`i` alone (the only problem that depends on :math:`p_{i\cdot}` at fixed
prices), with the implicit-function theorem at the fixed point. Two routes:

``method="direct"`` (default)
    The EGM step depends on the state :math:`(c, v)` only through the two
    :math:`N_a \times N_z` arrays :math:`E(a',z) = \beta R \sum_{z'} P_{zz'} m(a',z')`,
    :math:`m = \sum_j \pi_j u'(c_j)/p_j`, and :math:`W(a',z) = \sum_{z'} P_{zz'} V(a',z')`.
    With :math:`P^\top = A B` of rank :math:`r` (5 for the paper's income process, whose
    transitory part is i.i.d.), the fixed point lives in :math:`\hat e = (\beta R\, m A,
    V A)`, of size :math:`2 N_a r`. Given :math:`(E, W)`, one step acts separately on each
    income state, and each :math:`c_j(a,z), v_j(a,z)` depends on :math:`(E, W)` at no more
    than four neighboring asset points (the endogenous-grid knots bracketing :math:`a`);
    eight colored forward directions therefore recover the whole Jacobian of the step,
    which is assembled (with the exact local derivatives of :math:`(m, V)` in
    :math:`(c_j, v_j)`) into the :math:`2N_a r \times 2N_a r` matrix :math:`\hat K`.
    :math:`(I - \hat K)\,d\hat e = b` is solved by LU for all partners at once and then
    polished by iterative refinement against the exact linearized step (the true residual
    is checked, so the result does not rest on the sparsity argument; should it stay above
    ``lin_tol`` the computation falls back to ``"jvp"`` with a warning). In all: one batch
    of 8 + P linearized EGM steps, one of P, and one LU of size :math:`2N_a r` (1000 in the
    paper), instead of a tangent iteration per partner. No EGM code is
    duplicated: the step in (E, W) is :func:`hatrade.core.household.egm_step` applied to a state
    with the given (m, V) and uniform choice probabilities, with :math:`P_z = I`.
``method="jvp"``
    ``jax.jvp`` through :func:`hatrade.core.household.solve_fixed_point`, whose custom JVP
    iterates the tangent to ``tangent_tol`` (a cross-check; several times slower).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.household import (
    HHParams,
    HHState,
    egm_step,
    locate,
    logit,
    marginal_utility,
    policies,
    solve_fixed_point,
)

__all__ = ["income_factors", "tangents_jvp", "tangents_direct"]


def income_factors(Pz: np.ndarray, rtol: float = 1e-12):
    """P^T = A @ B with A (Nz, r), B (r, Nz), r = numerical rank of P."""
    U, s, Vt = np.linalg.svd(np.asarray(Pz, float).T)
    r = max(1, int(np.sum(s > rtol * s[0])))
    return U[:, :r] * s[:r], Vt[:r]


# ----------------------------------------------------------------------------- tangents


def _pol_arrays(pol):
    return pol.c, pol.a_p, pol.pi


@partial(jax.jit, static_argnums=(3, 4, 5))
def tangents_jvp(prm, x, dps, tol, max_iter, tangent_tol):
    """Policy tangents by ``jax.jvp`` through ``solve_fixed_point`` (its custom JVP iterates
    the tangent to ``tangent_tol``), batched over the price directions ``dps`` (P, M).

    Returns
    -------
    primal : (c, a_p, pi), each (Na, Nz, M), at the converged state ``x``.
    tangents : (dc, da, dpi), each (P, Na, Nz, M).
    """

    def out(p):
        pr = prm._replace(p=p)
        xx, _ = solve_fixed_point(pr, x, tol, max_iter, tangent_tol)
        return _pol_arrays(policies(xx, pr))

    primal = out(prm.p)
    tang = jax.vmap(lambda dp: jax.jvp(out, (prm.p,), (dp,))[1])(dps)
    return primal, tang


class _Reduced:
    r"""The household step written in the reduced state (module docstring, 'direct').

    ``H``: state (c, v) -> (m, V); ``S``: (m, V) -> a state with these (m, V) (uniform
    choice probabilities); ``step(E, W, p)``: one EGM step given :math:`E(a', z)` and
    :math:`W(a', z)` with the income mixing already applied (``egm_step`` with
    :math:`P_z = I`); ``expand``/``mix``: between the reduced state :math:`\hat e` (2, Na, r)
    and (E, W) / (m, V).
    """

    def __init__(self, prm: HHParams, Af, Bf):
        self.prm, self.Af, self.Bf = prm, Af, Bf
        Nz, M = prm.psi.shape
        self.bR = prm.beta * prm.R
        self.eyeZ = jnp.eye(Nz, dtype=prm.p.dtype)
        self.logM = jnp.log(jnp.asarray(M, prm.p.dtype))

    def H(self, c, v, p):
        pi, V = logit(v, self.prm._replace(p=p))
        m = jnp.sum(pi * marginal_utility(c, self.prm.gamma) / p, axis=-1)
        return m, V

    def S(self, m, V, p):
        c = (m[..., None] * p) ** (-1.0 / self.prm.gamma)
        v = V[..., None] - self.prm.psi[None, :, :] - self.prm.sigma * self.logM
        return HHState(c, v)

    def step(self, E, W, p):
        (c, v), a_p = egm_step(self.S(E / self.bR, W, p), self.prm._replace(p=p, Pz=self.eyeZ))
        return c, v, a_p

    def expand(self, eh):
        return eh[..., 0, :, :] @ self.Bf, eh[..., 1, :, :] @ self.Bf

    def mix(self, m, V):
        return jnp.stack([self.bR * m @ self.Af, V @ self.Af], axis=-3)

    def mixH(self, c1, v1, p, dc, dv, dp):
        """Tangent of mix(H(c, v, p)) at (c1, v1, p)."""
        return self.mix(*jax.jvp(self.H, (c1, v1, p), (dc, dv, dp))[1])


@jax.jit
def _direct_setup(prm, x, Af, Bf):
    red = _Reduced(prm, Af, Bf)
    eh = red.mix(*red.H(x.c, x.v, prm.p))  # (2, Na, r): reduced state of the converged problem
    E0, W0 = red.expand(eh)
    return E0, W0, red.step(E0, W0, prm.p)


@jax.jit
def _step_tangents(prm, Af, Bf, E0, W0, dE, dW, dP):
    """Tangents (dc, dv, da) of one step at (E0, W0, p) in a batch of directions."""
    red = _Reduced(prm, Af, Bf)
    return jax.vmap(lambda a, b, c: jax.jvp(red.step, (E0, W0, prm.p), (a, b, c))[1])(dE, dW, dP)


@jax.jit
def _direct_assemble(prm, Af, Bf, c1, v1, a1, dXc, dXv):
    r"""LU factors of :math:`I - \hat K` from the 8 colored step tangents (module docstring)."""
    red = _Reduced(prm, Af, Bf)
    Na, Nz, M = c1.shape
    r = Af.shape[1]
    n = 2 * Na * r
    p = prm.p
    # local derivatives of (m, V)(a, z) in c_j(a, z) and v_j(a, z): (2 out, Na, Nz, M)
    onehot = jnp.broadcast_to(jnp.eye(M, dtype=c1.dtype)[:, None, None, :], (M,) + c1.shape)
    Hc = jax.vmap(lambda e: jnp.stack(jax.jvp(lambda c: red.H(c, v1, p), (c1,), (e,))[1]))(onehot)
    Hv = jax.vmap(lambda e: jnp.stack(jax.jvp(lambda v: red.H(c1, v, p), (v1,), (e,))[1]))(onehot)
    Hc, Hv = jnp.moveaxis(Hc, 0, -1), jnp.moveaxis(Hv, 0, -1)
    # C[t_out, t_in, a, z, k] = d(m, V)(a, z) / d(E, W)(k, z); (a, z, j) depends on (E, W)(., z)
    # only at the knots kloc-1 .. kloc+2 around a'(a, z, j), each of a different color mod 4
    kloc, _ = locate(a1, prm.a_grid)
    kk = kloc[None] - 1 + jnp.arange(4)[:, None, None, None]  # (4 offsets, Na, Nz, M)
    valid = ((kk >= 0) & (kk < Na)).astype(c1.dtype)
    colr = jnp.mod(kk, 4)
    gc = jnp.stack([jnp.take_along_axis(dXc[t], colr, axis=0) for t in range(2)]) * valid
    gv = jnp.stack([jnp.take_along_axis(dXv[t], colr, axis=0) for t in range(2)]) * valid
    val = Hc[:, None, None] * gc[None] + Hv[:, None, None] * gv[None]  # (2, 2, 4, Na, Nz, M)
    shape = val.shape
    idx = [
        jnp.broadcast_to(jnp.arange(2).reshape(2, 1, 1, 1, 1, 1), shape),
        jnp.broadcast_to(jnp.arange(2).reshape(1, 2, 1, 1, 1, 1), shape),
        jnp.broadcast_to(jnp.arange(Na).reshape(1, 1, 1, Na, 1, 1), shape),
        jnp.broadcast_to(jnp.arange(Nz).reshape(1, 1, 1, 1, Nz, 1), shape),
        jnp.broadcast_to(kk[None, None] + 1, shape),
    ]
    C = jnp.zeros((2, 2, Na, Nz, Na + 4), dtype=c1.dtype).at[tuple(idx)].add(val)[..., 1 : Na + 1]
    MixA = jnp.stack([red.bR * Af, Af])  # (2, Nz, r)
    K = jnp.einsum("Tzq,Ttazk,rz->Taqtkr", MixA, C, Bf).reshape(n, n)
    return jax.scipy.linalg.lu_factor(jnp.eye(n, dtype=K.dtype) - K)


@jax.jit
def _direct_rhs(prm, Af, Bf, c1, v1, Tc, Tv, dps):
    red = _Reduced(prm, Af, Bf)
    b = jax.vmap(lambda dc, dv, dp: red.mixH(c1, v1, prm.p, dc, dv, dp))(Tc, Tv, dps)
    return b.reshape(b.shape[0], -1)


@jax.jit
def _lu_step(lu, de, res):
    return de + jax.scipy.linalg.lu_solve(lu, res.T).T


@jax.jit
def _direct_residual(prm, Af, Bf, c1, v1, b, de, Tc, Tv):
    r"""Residual :math:`b - (I - \hat K) d\hat e` with the exact linearized step."""
    red = _Reduced(prm, Af, Bf)
    zp = jnp.zeros_like(prm.p)
    Fe = jax.vmap(lambda dc, dv: red.mixH(c1, v1, prm.p, dc, dv, zp))(Tc, Tv)
    return b - (de - Fe.reshape(de.shape))


@jax.jit
def _expand_batch(Af, Bf, de):
    e = de.reshape(de.shape[0], 2, -1, Af.shape[1])
    return e[:, 0] @ Bf, e[:, 1] @ Bf


@jax.jit
def _direct_finish(prm, v1, Te, Tp):
    dc, dv, da = (a + b for a, b in zip(Te, Tp))
    lg = lambda v: logit(v, prm)[0]  # noqa: E731
    return lg(v1), (dc, da, jax.vmap(lambda d: jax.jvp(lg, (v1,), (d,))[1])(dv))


def tangents_direct(prm, x, dps, Af, Bf, lin_tol, max_refine):
    """Policy tangents for a batch of price directions ``dps`` (P, M) by the assembled
    reduced Jacobian, one LU and iterative refinement (module docstring).

    Returns (primal (c, a_p, pi), tangents (dc, da, dpi) each (P, Na, Nz, M), relative
    residual, refinement steps).
    """
    P, M = dps.shape
    E0, W0, (c1, v1, a1) = _direct_setup(prm, x, Af, Bf)
    Na, Nz = E0.shape
    # one batch of 8 + P directions: 2 (E, W) x 4 colors, then the P price directions;
    # later batches (refinement) are padded to the same size so that one compilation serves
    B = 8 + P
    kgrid = jnp.arange(Na)
    pats = jnp.stack(
        [
            jnp.broadcast_to(((kgrid % 4) == col).astype(E0.dtype)[:, None], (Na, Nz))
            for col in range(4)
        ]
    )
    z4, zP = jnp.zeros_like(pats), jnp.zeros((P, Na, Nz), E0.dtype)
    zB = jnp.zeros((B, M), dps.dtype)
    T = _step_tangents(
        prm,
        Af,
        Bf,
        E0,
        W0,
        jnp.concatenate([pats, z4, zP]),
        jnp.concatenate([z4, pats, zP]),
        zB.at[8:].set(dps),
    )
    dXc = T[0][:8].reshape(2, 4, Na, Nz, M)
    dXv = T[1][:8].reshape(2, 4, Na, Nz, M)
    Tp = tuple(a[8:] for a in T)
    b = _direct_rhs(prm, Af, Bf, c1, v1, Tp[0], Tp[1], dps)
    lu = _direct_assemble(prm, Af, Bf, c1, v1, a1, dXc, dXv)
    scale = max(1.0, float(jnp.max(jnp.abs(b))))
    de, res = jnp.zeros_like(b), b
    pad = jnp.zeros((8, Na, Nz), E0.dtype)
    k = 0
    while True:
        de = _lu_step(lu, de, res)
        dEe, dWe = _expand_batch(Af, Bf, de)
        Te = _step_tangents(
            prm, Af, Bf, E0, W0, jnp.concatenate([dEe, pad]), jnp.concatenate([dWe, pad]), zB
        )
        Te = tuple(a[:P] for a in Te)
        res = _direct_residual(prm, Af, Bf, c1, v1, b, de, Te[0], Te[1])
        rel = float(jnp.max(jnp.abs(res))) / scale
        if not np.isfinite(rel) or rel <= lin_tol or k >= max_refine:
            break
        k += 1
    pi1, tang = _direct_finish(prm, v1, Te, Tp)
    return (c1, a1, pi1), tang, rel, k
