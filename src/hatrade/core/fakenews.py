r"""Sequence-space Jacobians of one country's household block by the fake-news algorithm.

Auclert, Bardóczy, Rognlie and Straub (Econometrica 2021). Around a steady state, the
household block maps paths of its inputs to paths of its aggregate outputs; the Jacobian
:math:`\mathcal J[t, o, s, k] = \partial Y^o_t / \partial x^k_s` follows from

1. one backward pass per input direction k: the tangent of the policies at t = 0 to a
   shock to input k at horizon s (news at t = 0 about period s) is the tangent of
   :math:`s` backward steps (:func:`hatrade.core.household.step` linearized at the
   steady state, ``jax.linearize``), all horizons in one scan and all directions vmapped.
   It gives the *fake-news* effects :math:`\mathcal Y_s` (outputs at t = 0 with the
   steady-state distribution) and :math:`\mathcal D_s` (the distribution at t = 1);
2. expectation vectors :math:`\mathcal E_u = (\Lambda^\top)^u y` (the steady-state
   transition transposed, applied u times to each output per state);
3. the fake-news matrix :math:`F[0, s] = \mathcal Y_s`,
   :math:`F[t, s] = \mathcal E_{t-1} \cdot \mathcal D_s` (t >= 1), and
   :math:`\mathcal J[t, s] = F[t, s] + \mathcal J[t-1, s-1]`.

Inputs (directions ``k``): the relative change of each variety's price
:math:`dp_{ik}/p_{ik}` (M directions, k = 0..M-1), the wage in income :math:`w_i` (level),
the return :math:`R_{i,s}` paid at s on assets carried into s (level: it is this period's
return in the budget at s and next period's in the Euler equation at s - 1) and,
optionally, the transfer :math:`T_{i,s}` (level). With policy instruments
(:mod:`hatrade.core.instruments`) the household's transfer is
:math:`T_{i,s} r_i(z) + \tau_i w_{i,s} (1 - z)`: direction ``T`` moves it by
:math:`r_i(z)\,dT` and direction ``w`` also by :math:`\tau_i (1 - z)\,dw` (the labor tax's
rebate net of the tax), so the Jacobian stays exact. Outputs: spending at consumer prices
:math:`M_{ij}` (M outputs, j = 0..M-1, times the labor force) and asset demand
:math:`A'_i`. Memory: per direction the tangent state (two (Na, Nz, M) arrays) in the scan
and per horizon only the outputs' and the distribution's tangents.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import push
from hatrade.core.household import HHParams, HHState, logit, step
from hatrade.core.x64 import enable_x64

__all__ = ["fake_news_jacobian", "direction_names"]


def direction_names(M: int, transfers: bool) -> tuple:
    """Labels of the input directions: ``p_0..p_{M-1}``, ``w``, ``R`` and ``T``."""
    return tuple(f"p_{k}" for k in range(M)) + ("w", "R") + (("T",) if transfers else ())


def _transfer_tangent(e, dw, M: int, transfers: bool, inst, z):
    r"""The tangent of the household's transfer for direction vector ``e``: the scalar
    :math:`dT` without instruments; with ``inst = (r, tau)`` (by income state)
    :math:`r(z)\,dT + \tau (1 - z)\,dw`."""
    dT = e[M + 2] if transfers else jnp.zeros((), e.dtype)
    if inst is None:
        return dT
    r, tau = inst
    return r * dT + tau * (1.0 - z) * dw


def _step_fn(prm: HHParams):
    def f(c, v, p, w, R, T, p_next, R_next):
        pr = prm._replace(p=p, w=w, R=R, T=T)
        mu = jnp.exp(-pr.gamma * jnp.log(c))
        c1, _, v1, a1 = step(c, mu, v, pr, p_next, R_next)
        pi, _ = logit(v1, pr)
        return c1, v1, a1, pi

    return f


def _outputs(lam, L):
    def f(a_p, pi, c, p):
        Mi = L * jnp.einsum("az,azj->j", lam, pi * c * p[None, None, :])
        Ai = L * jnp.einsum("az,azj->", lam, pi * a_p)
        return jnp.concatenate([Mi, Ai[None]])

    return f


@partial(jax.jit, static_argnums=(4, 5))
def _fake_news(prm: HHParams, x: HHState, lam, L, n: int, transfers: bool, inst=None):
    M = prm.p.shape[0]
    f = _step_fn(prm)
    primals = (x.c, x.v, prm.p, prm.w, prm.R, prm.T, prm.p, prm.R)
    (c0, _, ap0, pi0), f_lin = jax.linearize(f, *primals)
    out = _outputs(lam, L)
    _, out_lin = jax.linearize(out, ap0, pi0, c0, prm.p)
    _, push_lin = jax.linearize(lambda a, q: push(lam, a, q, prm.a_grid, prm.Pz), ap0, pi0)
    K = M + 2 + int(transfers)

    def per_dir(e):
        dp, dw, dR = prm.p * e[:M], e[M], e[M + 1]
        dT = _transfer_tangent(e, dw, M, transfers, inst, prm.z)

        def body(carry, s):
            cur, nxt = (s == 0).astype(dw.dtype), (s == 1).astype(dw.dtype)
            dc, dv = carry
            dcn, dvn, dap, dpi = f_lin(dc, dv, cur * dp, cur * dw, cur * dR, cur * dT,
                                       nxt * dp, nxt * dR)  # fmt: skip
            return (dcn, dvn), (out_lin(dap, dpi, dcn, cur * dp), push_lin(dap, dpi))

        carry0 = (jnp.zeros_like(x.c), jnp.zeros_like(x.v))
        _, (dY, dD) = jax.lax.scan(body, carry0, jnp.arange(n))
        return dY, dD  # (n, O), (n, Na, Nz)

    dY, dD = jax.vmap(per_dir)(jnp.eye(K))  # (K, n, O), (K, n, Na, Nz)
    y = L * jnp.concatenate(
        [jnp.moveaxis(pi0 * c0 * prm.p[None, None, :], -1, 0), jnp.sum(pi0 * ap0, -1)[None]]
    )  # (O, Na, Nz): outputs per state
    _, pull = jax.vjp(lambda lm: push(lm, ap0, pi0, prm.a_grid, prm.Pz), lam)

    def ebody(E, _):
        return jax.vmap(lambda e: pull(e)[0])(E), E

    _, Es = jax.lax.scan(ebody, y, None, length=n - 1)  # Es[u] = E_u, u = 0..n-2
    F1 = jnp.einsum("uoaz,ksaz->uosk", Es, dD)  # F[t = u + 1]
    F0 = jnp.transpose(dY, (2, 1, 0))  # (O, s, K)
    return F0, F1


@enable_x64
def fake_news_jacobian(
    prm: HHParams, x: HHState, lam, L, n: int, transfers: bool = False, instruments=None
):
    r"""The household block's Jacobian :math:`\mathcal J[t, o, s, k]` (numpy, (n, O, n, K)).

    Parameters
    ----------
    prm : HHParams
        One country's inputs at the steady state.
    x : HHState
        Its steady-state household state (the fixed point).
    lam : (Na, Nz) its stationary distribution.
    L : labor force (outputs are aggregates: per-household values times L).
    n : number of periods (rows t and columns s).
    transfers : bool
        Include the transfer direction ``T``.
    instruments : tuple (r, tau), optional
        The country's rebate weights r (Nz,) and labor-tax rate tau when the world has
        policy instruments (then ``prm.T`` is by income state, (Nz,)); None without them.

    Returns
    -------
    numpy.ndarray
        ``J[t, o, s, k]``: outputs o = (M_i0..M_i,M-1, A_i), directions k =
        :func:`direction_names`. Column s = 0 is an unanticipated shock at t = 0.
    """
    inst = None if instruments is None else tuple(jnp.asarray(v) for v in instruments)
    F0, F1 = _fake_news(prm, x, jnp.asarray(lam), jnp.asarray(L), int(n), bool(transfers), inst)
    J = np.empty((n,) + F0.shape, dtype=np.float64)
    J[0] = np.asarray(F0)
    J[1:] = np.asarray(F1)
    del F1
    for t in range(1, n):  # J[t, s] = F[t, s] + J[t-1, s-1], in place
        J[t, :, 1:, :] += J[t - 1, :, :-1, :]
    return J
