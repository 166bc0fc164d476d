r"""Direct evaluation of a perfect-foresight path: policies backward, distributions forward.

Timing (docs/transitions.md): period t's households hold assets :math:`a` bought at t-1
and receive the return :math:`R_t` on them (:math:`R_0` is the old steady state's: bonds
bought before the shock), earn :math:`w_{i,t} z` and the transfer :math:`T_{i,t}` (tariff
revenue of period t), and choose :math:`c_t` and :math:`a'_t` facing next period's prices
:math:`p_{t+1}` and return :math:`R_{t+1}` in their Euler equation:

.. math::

    p_{ij,t} c + a' = R_{i,t} a + w_{i,t} z + T_{i,t}, \qquad
    u'(c)/p_{ij,t} = \beta R_{i,t+1} E_t \textstyle\sum_k \pi_k(a',z') u'(c'_k)/p_{ik,t+1}.

TFP :math:`A_{i,t}` scales goods prices :math:`p_{ij,t} = d_{ij,t} w_{j,t}(1+t_{ij,t})/A_{j,t}`,
the taste-shock scales :math:`\sigma_{i,t}, \psi_{i,t} \propto A_{i,t}^{1-\gamma}` and the
asset grid, :math:`\mathcal G_{i,t} = A_{i,t}\, g` (g the normalized grid): the assets
*chosen* at t lie on :math:`\mathcal G_{i,t}`, so the assets *held* at t on
:math:`\mathcal G_{i,t-1}` (at t = 0 the old steady state's grid, that of ``lam0``). Period
t's step maps next period's state on :math:`\mathcal G_{i,t}` (its logit with next period's
scales) to this period's on :math:`\mathcal G_{i,t-1}`; the forward pass puts a' on
:math:`\mathcal G_{i,t}` by the lottery.

From period T on the economy is at the terminal steady state: the backward pass starts
from its household state (:func:`hatrade.core.household.step` with next-period prices, T
times, backward), the forward pass pushes the distribution from ``lam0`` (the old
stationary one) with the period's policies and aggregates every period as the steady
state does (:func:`hatrade.core.markets.aggregate`).

Memory: when every period's policies fit (``segment=None``: :math:`a'` and :math:`\pi`,
:func:`stored_bytes`), one backward pass keeps them and the forward pass reads them.
Otherwise the backward pass keeps only the household state at every ``segment``-th period
(checkpoints); the forward pass recomputes one segment's policies from its checkpoint,
pushes the distribution through it and drops them, so at most ``segment`` periods of
policies are held at once (a second backward pass of work).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hatrade.core.distribution import push
from hatrade.core.household import HHState, Policies, logit, step
from hatrade.core.markets import ModelArrays, aggregate, country_params

__all__ = ["PathInputs", "PathOutputs", "evaluate_path", "stored_bytes"]


class PathInputs(NamedTuple):
    r"""Everything that varies over the path, each with a leading period axis of length T.

    d, t : (T, M, M) trade costs and tariffs. L : (T, M) labor. w : (T, M) wages.
    R : (T + 1, M) returns paid at t on assets carried into t (R[0] the old steady
    state's, R[T] the return on the assets chosen in the last period). T : (T, M) transfers.
    d_end, t_end : (M, M) the terminal trade costs and tariffs; w_end, T_end, R_end : (M,)
    terminal wages, transfers and return (prices from period T on; in period T the budget
    pays ``R[T]`` on the assets carried in, the return set by period T-1's bond market).
    A : (T, M) TFP (None: the terminal world's, ``arrs.A``, in every period); A_start : (M,)
    the TFP of the grid of the assets carried into period 0, the old steady state's (None:
    ``arrs.A``). TFP from period T on is the terminal world's.
    """

    d: jax.Array
    t: jax.Array
    L: jax.Array
    w: jax.Array
    R: jax.Array
    T: jax.Array
    d_end: jax.Array
    t_end: jax.Array
    w_end: jax.Array
    T_end: jax.Array
    R_end: jax.Array
    A: jax.Array | None = None
    A_start: jax.Array | None = None


class PathOutputs(NamedTuple):
    """Aggregates of every period (leading axis T) and the value at t = 0.

    M : (T, M, M) spending at consumer prices; X : the same at factory prices; A : (T, M)
    assets chosen in t (bought at t, paid R_{t+1} at t+1); A_held : (T, M) assets carried
    into t; G : (T, M) tariff revenue; N, Y : (T, M) labor in efficiency units and income
    w N; V0 : (M, Na, Nz) the value at t = 0 (before taste shocks, as the steady state's
    ``policies.V``); lam_end : (M, Na, Nz) the distribution entering period T.
    """

    M: jax.Array
    X: jax.Array
    A: jax.Array
    A_held: jax.Array
    G: jax.Array
    N: jax.Array
    Y: jax.Array
    V0: jax.Array
    lam_end: jax.Array


def _scaled(arrs: ModelArrays, A):
    r"""Asset grid (M, Na), taste-shock scale (M,) and psi of TFP A (M,): the terminal
    world's scaled by :math:`A/A^{end}` and :math:`(A/A^{end})^{1-\gamma}` (docs/model.md
    1.1; exactly the terminal ones where A is the terminal TFP)."""
    r = A / arrs.A
    s = r ** (1.0 - arrs.gamma)
    return arrs.a_grid * r[:, None], arrs.sigma * s, arrs.psi * s[:, None, None]


def _prices(arrs: ModelArrays, d, t, w, R, T, beta, A, A_held):
    """Period inputs of households with TFP A holding assets on the grid of TFP A_held."""
    held, _, _ = _scaled(arrs, A_held)
    _, sigma, psi = _scaled(arrs, A)
    arrs_t = arrs._replace(d=d, t=t, A=A, a_grid=held, sigma=sigma, psi=psi)
    return country_params(arrs_t, w, R, T, beta)


def _goods_prices(d, t, w, A):
    return d * (w / A)[None, :] * (1.0 + t)


def _period_inputs(arrs: ModelArrays, pin: PathInputs):
    """Per-period scan inputs: own prices' pieces, next-period goods prices and return,
    and the TFP of the period, of the grid of the assets held, and of the next period."""
    A, A_start = pin.A, pin.A_start
    assert A is not None and A_start is not None  # filled in by evaluate_path
    p_all = jax.vmap(_goods_prices)(pin.d, pin.t, pin.w, A)
    p_end = _goods_prices(pin.d_end, pin.t_end, pin.w_end, arrs.A)
    p_next = jnp.concatenate([p_all[1:], p_end[None]], axis=0)
    A_held = jnp.concatenate([A_start[None], A[:-1]], axis=0)
    A_next = jnp.concatenate([A[1:], arrs.A[None]], axis=0)
    return (pin.d, pin.t, pin.w, pin.R[:-1], pin.T, p_next, pin.R[1:], A, A_held, A_next)


def _backward_period(arrs: ModelArrays, beta):
    """One period of the backward pass, all countries: (state_{t+1}, inputs_t) -> state_t.

    The state at t + 1 lies on the grid of the assets chosen at t (TFP A), state_t on the
    grid of the assets held at t (TFP A_held); next period's logit uses A_next's scales.
    """

    def body(x_next: HHState, inp):
        d, t, w, R, T, p_next, R_next, A, A_held, A_next = inp
        prm = _prices(arrs, d, t, w, R, T, beta, A, A_held)
        grid, _, _ = _scaled(arrs, A)
        _, sig_n, psi_n = _scaled(arrs, A_next)

        def one(c, v, pr, pn, rn, gn, sn, qn):
            mu = jnp.exp(-pr.gamma * jnp.log(c))
            c_new, _, v_new, a_p = step(c, mu, v, pr, pn, rn, gn, sn, qn)
            return c_new, v_new, a_p

        c, v, a_p = jax.vmap(one)(x_next.c, x_next.v, prm, p_next, R_next, grid, sig_n, psi_n)
        return HHState(c, v), a_p

    return body


def _segments(tree, n_seg: int):
    return jax.tree_util.tree_map(lambda x: x.reshape((n_seg, -1) + x.shape[1:]), tree)


def _forward_segment(arrs: ModelArrays, beta, back):
    """The forward pass through one segment: recompute its policies, push, aggregate.

    The distribution entering t lies on the grid of the assets held at t; the lottery
    puts a' on the grid of period t's TFP (that of the assets chosen at t).
    """

    def body(lam, inp):
        xs_seg, L_seg, x_end = inp
        _, (c_all, v_all, a_all) = jax.lax.scan(
            lambda x, i: (lambda y: (y[0], (y[0].c, y[0].v, y[1])))(back(x, i)),
            x_end,
            xs_seg,
            reverse=True,
        )

        def period(lam_t, inp_t):
            (d, t, w, R, T, _, _, A, A_held, _), L, c, v, a_p = inp_t
            prm = _prices(arrs, d, t, w, R, T, beta, A, A_held)
            grid, _, _ = _scaled(arrs, A)
            pi, _ = jax.vmap(logit)(v, prm)
            pol = Policies(c=c, a_p=a_p, v=v, pi=pi, V=None)
            agg = aggregate(arrs._replace(d=d, t=t, L=L), prm, pol, lam_t)
            held = L * jnp.einsum("kaz,ka->k", lam_t, prm.a_grid)
            lam_n = jax.vmap(push)(lam_t, a_p, pi, grid, prm.Pz)
            out = (agg["M"], agg["X"], agg["A"], held, agg["G"], agg["N"], agg["Y"])
            return lam_n, out

        return jax.lax.scan(period, lam, (xs_seg, L_seg, c_all, v_all, a_all))

    return body


@jax.jit
def _evaluate(arrs: ModelArrays, pin: PathInputs, beta, x_end: HHState, lam0, n_seg_arr):
    n_seg = n_seg_arr.shape[0]
    back = _backward_period(arrs, beta)
    xs = _period_inputs(arrs, pin)
    segs = _segments(xs, n_seg)
    A, A_held = xs[7], xs[8]  # TFP of each period and of the grid of the assets held

    def seg_back(x_next, xs_seg):
        x, _ = jax.lax.scan(lambda x_, i: (back(x_, i)[0], None), x_next, xs_seg, reverse=True)
        return x, x_next  # output: the state entering the segment's last period's successor

    # period T: the terminal steady state's prices and TFP but the return R[T] in the
    # budget, on assets held on the grid of period T-1's TFP
    p_end = _goods_prices(pin.d_end, pin.t_end, pin.w_end, arrs.A)
    inp_T = (pin.d_end, pin.t_end, pin.w_end, pin.R[-1], pin.T_end, p_end, pin.R_end,
             arrs.A, A[-1], arrs.A)  # fmt: skip
    x_T, _ = back(x_end, inp_T)
    x0, ends = jax.lax.scan(seg_back, x_T, segs, reverse=True)
    prm0 = _prices(arrs, pin.d[0], pin.t[0], pin.w[0], pin.R[0], pin.T[0], beta, A[0],
                   A_held[0])  # fmt: skip
    _, V0 = jax.vmap(logit)(x0.v, prm0)
    fwd = _forward_segment(arrs, beta, back)
    lam_end, outs = jax.lax.scan(fwd, lam0, (segs, _segments(pin.L, n_seg), ends))
    outs = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), outs)
    M, X, Ap, Ah, G, N, Y = outs  # the per-period fields of PathOutputs, in order
    return PathOutputs(M, X, Ap, Ah, G, N, Y, V0=V0, lam_end=lam_end)


def _forward_period(arrs: ModelArrays, beta):
    """One period of the forward pass from stored policies (a', pi): push and aggregate.

    Consumption is :math:`c_j = (R a + w z + T - a'_j)/p_j`, the budget of the step that
    chose a' (:func:`hatrade.core.household.step`)."""

    def period(lam_t, inp_t):
        (d, t, w, R, T, _, _, A, A_held, _), L, a_p, pi = inp_t
        prm = _prices(arrs, d, t, w, R, T, beta, A, A_held)
        grid, _, _ = _scaled(arrs, A)
        income = prm.w[:, None] * prm.z + prm.T.reshape(prm.T.shape[0], -1)  # (M, Nz)
        cash = prm.R[:, None, None] * prm.a_grid[:, :, None] + income[:, None, :]
        c = (cash[..., None] - a_p) * (1.0 / prm.p)[:, None, None, :]
        pol = Policies(c=c, a_p=a_p, v=None, pi=pi, V=None)
        agg = aggregate(arrs._replace(d=d, t=t, L=L), prm, pol, lam_t)
        held = L * jnp.einsum("kaz,ka->k", lam_t, prm.a_grid)
        lam_n = jax.vmap(push)(lam_t, a_p, pi, grid, prm.Pz)
        return lam_n, (agg["M"], agg["X"], agg["A"], held, agg["G"], agg["N"], agg["Y"])

    return period


@jax.jit
def _evaluate_stored(arrs: ModelArrays, pin: PathInputs, beta, x_end: HHState, lam0):
    """One backward pass keeping every period's (a', pi), then the forward pass."""
    back = _backward_period(arrs, beta)
    xs = _period_inputs(arrs, pin)
    A, A_held = xs[7], xs[8]
    p_end = _goods_prices(pin.d_end, pin.t_end, pin.w_end, arrs.A)
    inp_T = (pin.d_end, pin.t_end, pin.w_end, pin.R[-1], pin.T_end, p_end, pin.R_end,
             arrs.A, A[-1], arrs.A)  # fmt: skip
    x_T, _ = back(x_end, inp_T)

    def body(x_next, inp):
        x, a_p = back(x_next, inp)
        d, t, w, R, T, _, _, A_t, A_h, _ = inp
        pi, _ = jax.vmap(logit)(x.v, _prices(arrs, d, t, w, R, T, beta, A_t, A_h))
        return x, (a_p, pi)

    x0, (a_all, pi_all) = jax.lax.scan(body, x_T, xs, reverse=True)
    prm0 = _prices(arrs, pin.d[0], pin.t[0], pin.w[0], pin.R[0], pin.T[0], beta, A[0],
                   A_held[0])  # fmt: skip
    _, V0 = jax.vmap(logit)(x0.v, prm0)
    lam_end, outs = jax.lax.scan(_forward_period(arrs, beta), lam0, (xs, pin.L, a_all, pi_all))
    M, X, Ap, Ah, G, N, Y = outs
    return PathOutputs(M, X, Ap, Ah, G, N, Y, V0=V0, lam_end=lam_end)


def stored_bytes(arrs: ModelArrays, periods: int) -> int:
    """Memory of the policies (a', pi) of every period that :func:`evaluate_path` keeps
    with ``segment=None``: 2 T M Na Nz M float64 numbers."""
    M, (Na,), Nz = arrs.A.shape[0], arrs.a_grid.shape[1:], arrs.z.shape[0]
    return 2 * 8 * periods * M * Na * Nz * M


def evaluate_path(
    arrs: ModelArrays, pin: PathInputs, beta, x_end: HHState, lam0, segment: int | None = 25
) -> PathOutputs:
    r"""Aggregates of a path of prices and the value at t = 0 (module docstring).

    Parameters
    ----------
    arrs : ModelArrays
        The terminal world's arrays (d, t, L and TFP are taken from ``pin`` period by
        period; the asset grid and the taste-shock scales are the terminal ones scaled with
        the period's TFP, module docstring).
    pin : PathInputs
        The path; its number of periods must be a multiple of ``segment``.
    beta : discount factor.
    x_end : HHState
        The terminal steady state's household state (leading axis: country): the state
        from period T + 1 on.
    lam0 : (M, Na, Nz) the distribution entering period 0.
    segment : int or None
        Periods per checkpoint segment (memory: about ``segment`` + T/``segment`` periods of
        household arrays; the policies are computed twice). None: one backward pass that
        keeps every period's policies a' and pi (:func:`stored_bytes`), the forward pass
        reads them.
    """
    n = pin.w.shape[0]
    if segment is not None and n % segment:
        raise ValueError(f"path length {n} is not a multiple of segment {segment}")
    if pin.A is None:
        pin = pin._replace(A=jnp.broadcast_to(arrs.A, (n,) + arrs.A.shape))
    if pin.A_start is None:
        pin = pin._replace(A_start=arrs.A)
    if segment is None:
        return _evaluate_stored(arrs, pin, beta, x_end, lam0)
    return _evaluate(arrs, pin, beta, x_end, lam0, jnp.zeros(n // segment))
