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

Both passes run in chunks of horizons and stop once what remains is below a tolerance
relative to what was computed (``tol``, default 1e-12): news about period s moves the
policies by an amount that decays geometrically in s (by 6e-5 to 2.5e-3 per 25 periods,
depending on the country, in the baseline calibration: ``benchmarks/transition.py --horizons``), and :math:`\mathcal E_u` converges to its mean under the
stationary distribution, beyond which :math:`\mathcal E_u \cdot \mathcal D_s = 0` since
every :math:`\mathcal D_s` has zero mass. The product in step 3 is then one matrix
product over the horizons and expectation vectors that matter (numpy, BLAS).

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

__all__ = ["accumulate", "direction_names", "fake_news_jacobian", "fake_news_matrix"]


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


def _linearized(prm: HHParams, x: HHState, lam, L):
    """The steady-state step's tangent map, the outputs' and the push's, and their primals."""
    f = _step_fn(prm)
    primals = (x.c, x.v, prm.p, prm.w, prm.R, prm.T, prm.p, prm.R)
    (c0, _, ap0, pi0), f_lin = jax.linearize(f, *primals)
    _, out_lin = jax.linearize(_outputs(lam, L), ap0, pi0, c0, prm.p)
    _, push_lin = jax.linearize(lambda a, q: push(lam, a, q, prm.a_grid, prm.Pz), ap0, pi0)
    return f_lin, out_lin, push_lin, (c0, ap0, pi0)


@partial(jax.jit, static_argnums=(4, 5))
def _backward_chunk(
    prm: HHParams, x: HHState, lam, L, n: int, transfers: bool, carry, s0, dirs, inst=None
):
    """Horizons s0 .. s0 + n - 1 of the backward pass, every direction (vmapped).

    ``dirs`` (D, K): the directions, combinations of the inputs; ``carry`` (D, Na, Nz, M)
    x 2: the tangent state (dc, dv) after s0 backward steps.
    Returns the new carry, dY (D, n, O) and dD (D, n, Na, Nz)."""
    M = prm.p.shape[0]
    f_lin, out_lin, push_lin, _ = _linearized(prm, x, lam, L)

    def per_dir(e, carry_e):
        dp, dw, dR = prm.p * e[:M], e[M], e[M + 1]
        dT = _transfer_tangent(e, dw, M, transfers, inst, prm.z)

        def body(carry, s):
            cur, nxt = (s == 0).astype(dw.dtype), (s == 1).astype(dw.dtype)
            dc, dv = carry
            dcn, dvn, dap, dpi = f_lin(dc, dv, cur * dp, cur * dw, cur * dR, cur * dT,
                                       nxt * dp, nxt * dR)  # fmt: skip
            return (dcn, dvn), (out_lin(dap, dpi, dcn, cur * dp), push_lin(dap, dpi))

        return jax.lax.scan(body, carry_e, s0 + jnp.arange(n))

    return jax.vmap(per_dir)(dirs, carry)


@partial(jax.jit, static_argnums=(4,))
def _expectation_chunk(prm: HHParams, x: HHState, lam, E, n: int):
    """Expectation vectors E_u .. E_{u + n - 1} from E = E_u (O, Na, Nz): (next E, stack)."""
    _, _, _, (_, ap0, pi0) = _linearized(prm, x, lam, 1.0)
    _, pull = jax.vjp(lambda lm: push(lm, ap0, pi0, prm.a_grid, prm.Pz), lam)

    def ebody(E, _):
        return jax.vmap(lambda e: pull(e)[0])(E), E

    return jax.lax.scan(ebody, E, None, length=n)


@jax.jit
def _outputs_per_state(prm: HHParams, x: HHState, lam, L):
    """y (O, Na, Nz): each output per household state at the steady state."""
    _, _, _, (c0, ap0, pi0) = _linearized(prm, x, lam, L)
    spend = jnp.moveaxis(pi0 * c0 * prm.p[None, None, :], -1, 0)
    return L * jnp.concatenate([spend, jnp.sum(pi0 * ap0, -1)[None]])


def _tail_small(block: np.ndarray, peak: float, tol: float) -> bool:
    """True when a chunk's largest entry is below ``tol`` times the largest so far."""
    return float(np.max(np.abs(block), initial=0.0)) <= tol * peak


def _backward(prm, x, lam, L, n: int, transfers: bool, tol: float, chunk: int, dirs, inst=None):
    """dY (D, S, O) and dD (D, S, Na, Nz) for the horizons s < S at which news still moves
    the outputs by more than ``tol`` (relative to the largest effect); S <= n."""
    (Na, Nz), D = lam.shape, dirs.shape[0]
    carry = (jnp.zeros((D,) + x.c.shape), jnp.zeros((D,) + x.v.shape))
    dY, dD, peak_y, peak_d, s0 = [], [], 0.0, 0.0, 0
    while s0 < n:
        carry, (y, d) = _backward_chunk(prm, x, lam, L, chunk, transfers, carry, s0, dirs, inst)
        y, d = np.asarray(y)[:, : n - s0], np.asarray(d)[:, : n - s0]
        small = s0 > 0 and _tail_small(y, peak_y, tol) and _tail_small(d, peak_d, tol)
        peak_y = max(peak_y, float(np.max(np.abs(y))))
        peak_d = max(peak_d, float(np.max(np.abs(d))))
        dY.append(y)
        dD.append(d)
        s0 += chunk
        if small:
            break
    return np.concatenate(dY, axis=1), np.concatenate(dD, axis=1).reshape(D, -1, Na * Nz)


def _expectations(prm, x, lam, y, n: int, tol: float, chunk: int):
    """E_u (U, O, Na Nz) for u < U, where E_u is within ``tol`` (relative to y's spread) of
    its mean under lam (beyond, E_u . D_s = 0 since every D_s has zero mass); U <= n."""
    lam_np = np.asarray(lam).ravel()
    yv = np.asarray(y).reshape(y.shape[0], -1)
    spread = np.max(np.abs(yv - (yv @ lam_np)[:, None]), axis=1)
    scale = np.where(spread > 0, spread, 1.0)[None, :, None]
    E, Es, u0 = y, [], 0
    while u0 < n:
        E, stack = _expectation_chunk(prm, x, lam, E, chunk)
        st = np.asarray(stack)[: n - u0].reshape(-1, yv.shape[0], yv.shape[1])
        Es.append(st)
        u0 += chunk
        dev = np.abs(st[-1:] - (st[-1:] @ lam_np)[..., None]) / scale
        if float(np.max(dev)) <= tol:
            break
    return np.concatenate(Es, axis=0)


@enable_x64
def fake_news_matrix(
    prm: HHParams,
    x: HHState,
    lam,
    L,
    n: int,
    transfers: bool = False,
    instruments=None,
    tol: float = 1e-12,
    chunk: int = 10,
    directions=None,
):
    r"""The fake-news matrix :math:`F[t, o, s, k]` where it is not negligible (numpy).

    Same parameters as :func:`fake_news_jacobian`, and ``directions`` (D, K), optional:
    combinations of the K input directions to take instead of each input (the Jacobian in
    them is the Jacobian times ``directions.T``; default the identity, D = K: fewer
    directions cost proportionally less). Returns F of shape (U + 1, O, S, D) with
    U + 1 <= n rows t and S <= n horizons s: :math:`F[0, s] = \mathcal Y_s`,
    :math:`F[t, s] = \mathcal E_{t-1} \cdot \mathcal D_s`; beyond them F is zero to
    ``tol``. The Jacobian is its diagonal sums (:func:`accumulate`).
    """
    lam = jnp.asarray(lam)
    chunk = max(1, min(int(chunk), int(n)))
    inst = None if instruments is None else tuple(jnp.asarray(v) for v in instruments)
    K = prm.p.shape[0] + 2 + int(transfers)
    dirs = jnp.eye(K) if directions is None else jnp.asarray(directions, dtype=float)
    if dirs.ndim != 2 or dirs.shape[1] != K:
        raise ValueError(f"directions must be (D, {K}), got {dirs.shape}")
    dY, dD = _backward(prm, x, lam, jnp.asarray(L), int(n), bool(transfers), tol, chunk, dirs, inst)
    y = _outputs_per_state(prm, x, lam, jnp.asarray(L))
    Es = _expectations(prm, x, lam, y, int(n) - 1, tol, chunk)  # Es[u] = E_u
    K, S, n_out = dY.shape
    U = Es.shape[0]
    F = np.empty((U + 1, n_out, S, K), dtype=np.float64)
    F[0] = np.transpose(dY, (2, 1, 0))
    # F[t = u + 1, o, s, k] = E_u[o] . D_s[k]: one matrix product (U O) x (Na Nz) x (K S)
    F1 = (Es.reshape(U * n_out, -1) @ dD.reshape(K * S, -1).T).reshape(U, n_out, K, S)
    F[1:] = np.transpose(F1, (0, 1, 3, 2))
    return F


def accumulate(F: np.ndarray, n: int) -> np.ndarray:
    r"""The Jacobian from a fake-news matrix: :math:`J[t, s] = F[t, s] + J[t-1, s-1]`.

    ``F`` (n_t, ..., n_s, ...) with n_t, n_s <= n (zero beyond): axes 0 and 2 are t and s.
    Returns J (n, F.shape[1], n, F.shape[3])."""
    J = np.zeros((n, F.shape[1], n) + F.shape[3:], dtype=np.float64)
    J[: F.shape[0], :, : F.shape[2]] = F
    for t in range(1, n):  # in place, row by row
        J[t, :, 1:] += J[t - 1, :, :-1]
    return J


@enable_x64
def fake_news_jacobian(
    prm: HHParams,
    x: HHState,
    lam,
    L,
    n: int,
    transfers: bool = False,
    instruments=None,
    tol: float = 1e-12,
    chunk: int = 10,
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
    tol : float
        Truncation: the backward pass stops at the first chunk of horizons whose effects
        (:math:`\mathcal Y_s`, :math:`\mathcal D_s`) are all below ``tol`` times the
        largest so far, and the expectation vectors at the first :math:`\mathcal E_u`
        within ``tol`` (relative to the outputs' spread across states) of its mean under
        the stationary distribution; the dropped entries of the fake-news matrix are then
        of order ``tol`` relative to its largest (news effects and the memory of the
        distribution decay geometrically). Default 1e-12; 0 computes all
        n horizons and n expectation vectors.
    chunk : int
        Horizons per compiled step of both passes (and per truncation check). Default 10.

    Returns
    -------
    numpy.ndarray
        ``J[t, o, s, k]``: outputs o = (M_i0..M_i,M-1, A_i), directions k =
        :func:`direction_names`. Column s = 0 is an unanticipated shock at t = 0.
    """
    F = fake_news_matrix(prm, x, lam, L, n, transfers, instruments, tol, chunk)
    return accumulate(F, int(n))
