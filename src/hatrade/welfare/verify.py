r"""Exact equivalent variations: every state's residual evaluated by a solve at its own
:math:`\lambda`, polished by secant steps (step 4 of :mod:`hatrade.welfare.ev`).

For each state :math:`s = (a, z)` with a first :math:`\lambda_s` (the interpolated root),
the old problem is solved at :math:`\lambda_s` (vmapped over states in chunks of one
compiled size) and :math:`r_s = V^{old}(a, z; \lambda_s) - V^{new}(a, z)` is evaluated;
:math:`\lambda_s \leftarrow \lambda_s - r_s / m_s` with :math:`m_s` the secant slope
through the last two evaluations (the interpolant's slope where no positive secant
exists), until :math:`|r_s| <` ``tol``. The reported :math:`\lambda_s` is the evaluated
point with the smallest :math:`|r_s|`, never an unevaluated update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from hatrade.core.household import HHState
from hatrade.welfare.problem import check_iterations, values_at_states

__all__ = ["polish_roots"]

log = logging.getLogger(__name__)


@dataclass
class _Polish:
    """Secant polish of n states: the current point ``cur``, the previous point and
    residual, the best evaluated point and residual, the interpolant's slope (the first
    step), and the solved states (warm starts)."""

    cur: np.ndarray
    prev_l: np.ndarray
    prev_r: np.ndarray
    best_l: np.ndarray
    best_r: np.ndarray
    best_s: np.ndarray
    slope_interp: np.ndarray
    warm: HHState | None = None


def _evaluate_states(
    prm, code, xs, k, pol: _Polish, ia, iz, active, chunk: int, hh_tol: float, hh_max_iter: int
) -> tuple[np.ndarray, int, int]:
    """V^old of the ``active`` states, each at its own ``cur`` lambda (vmapped ``chunk`` at a
    time, warm-started from node ``k`` of ``xs``, then from the state's last solve). Returns
    (values, solves, iterations); the solved states go to ``pol.warm``."""
    n = len(pol.cur)
    out_V = np.empty(len(active))
    new_c, new_v = [], []
    solves = iters = 0
    for s0 in range(0, len(active), chunk):
        idx = active[s0 : s0 + chunk]
        m = len(idx)
        sel = np.concatenate([idx, np.repeat(idx[-1:], chunk - m)])  # one compiled shape
        if pol.warm is None:
            x0 = HHState(xs.c[jnp.asarray(k[sel])], xs.v[jnp.asarray(k[sel])])
        else:
            x0 = HHState(pol.warm.c[jnp.asarray(sel)], pol.warm.v[jnp.asarray(sel)])
        Vs, xo, its = values_at_states(
            prm,
            x0,
            jnp.asarray(pol.cur[sel]),
            jnp.asarray(ia[sel]),
            jnp.asarray(iz[sel]),
            hh_tol,
            hh_max_iter,
        )
        its = np.asarray(its)
        check_iterations(its[:m], hh_max_iter, code)
        out_V[s0 : s0 + m] = np.asarray(Vs)[:m]
        new_c.append((idx, xo.c[:m]))
        new_v.append((idx, xo.v[:m]))
        solves += m
        iters += int(its.max()) * chunk
    if pol.warm is None:
        pol.warm = HHState(
            jnp.zeros((n,) + xs.c.shape[1:], xs.c.dtype),
            jnp.zeros((n,) + xs.v.shape[1:], xs.v.dtype),
        )
    st_c, st_v = pol.warm
    for (idx, c), (_, v) in zip(new_c, new_v):
        st_c = st_c.at[jnp.asarray(idx)].set(c)
        st_v = st_v.at[jnp.asarray(idx)].set(v)
    pol.warm = HHState(st_c, st_v)
    return out_V, solves, iters


def _secant_step(pol: _Polish, active, r, tol: float):
    """Record the residuals ``r`` of the ``active`` states (best so far), take a secant step
    (the interpolant's slope where no positive secant exists) where |r| >= tol; returns
    the states still active."""
    better = np.abs(r) < pol.best_r[active]
    pol.best_l[active[better]] = pol.cur[active[better]]
    pol.best_r[active[better]] = np.abs(r[better])
    pol.best_s[active[better]] = r[better]
    pl, pr = pol.prev_l[active], pol.prev_r[active]
    with np.errstate(divide="ignore", invalid="ignore"):
        sec = (r - pr) / (pol.cur[active] - pl)
    use_sec = np.isfinite(sec) & (sec > 0)
    slope = np.where(use_sec, sec, pol.slope_interp[active])
    pol.prev_l[active], pol.prev_r[active] = pol.cur[active], r
    done = np.abs(r) < tol
    pol.cur[active[~done]] = pol.cur[active[~done]] - (r / slope)[~done]
    return active[~done]


def polish_roots(
    prm,
    code,
    xs,
    k,
    lam,
    slope,
    target,
    ia,
    iz,
    *,
    tol: float,
    hh_tol: float,
    hh_max_iter: int,
    chunk: int,
    max_rounds: int,
):
    r"""Evaluated roots :math:`V^{old}(a_s, z_s; \lambda_s) = V^{new}_s` of n states.

    Parameters
    ----------
    prm : HHParams
        The old problem (income unscaled).
    code : str
        The country (messages).
    xs, k : HHState (K, ...), int array (n,)
        Solved node states; state s is first warm-started from node ``k[s]``.
    lam, slope, target : arrays (n,)
        First points (the interpolated roots), the interpolant's slope there,
        :math:`V^{new}` of the states.
    ia, iz : int arrays (n,)
        The states' asset and income indices.
    tol, hh_tol, hh_max_iter, chunk, max_rounds
        Residual target (V units), household tolerance and iteration limit, states per
        vmapped solve, most rounds.

    Returns
    -------
    (lam, residual, info)
        The best evaluated point and its residual per state; ``info``: solves, rounds,
        iterations.
    """
    n = len(lam)
    chunk = max(1, min(chunk, n))  # one compiled batch shape for every round
    cur = np.array(lam, float)
    pol = _Polish(
        cur=cur,
        prev_l=np.full(n, np.nan),
        prev_r=np.full(n, np.nan),
        best_l=cur.copy(),
        best_r=np.full(n, np.inf),
        best_s=np.full(n, np.nan),
        slope_interp=slope,
    )
    active = np.arange(n)
    solves = iters = rounds = 0
    while len(active) and rounds < max_rounds:
        rounds += 1
        out_V, s, it = _evaluate_states(
            prm, code, xs, k, pol, ia, iz, active, chunk, hh_tol, hh_max_iter
        )
        solves, iters = solves + s, iters + it
        r = out_V - target[active]
        active = _secant_step(pol, active, r, tol)
        log.info(
            "%s: EV verification round %d: %d states above %.0e (max |residual| %.2e)",
            code,
            rounds,
            len(active),
            tol,
            float(np.max(np.abs(r))),
        )
    if len(active):
        log.warning(
            "%s: %d states did not reach an EV residual below %.0e in %d rounds (best %.2e)",
            code,
            len(active),
            tol,
            max_rounds,
            float(pol.best_r[active].max()),
        )
    return pol.best_l, pol.best_s, {"solves": solves, "rounds": rounds, "iterations": iters}
