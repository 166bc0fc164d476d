r"""Interpolation of a value in :math:`\lambda` through solved nodes, and its roots.

Every state's value :math:`V^{old}(a, z; \lambda)` is known at a few nodes
:math:`\lambda_k` (the columns of ``F`` are states, its rows nodes). Between nodes it is
interpolated by piecewise cubic Hermite polynomials whose node slopes are those of a
cubic spline (clamped to the exact slope at :math:`\lambda = 1`, not-a-knot at the far
ends). Per state: the root of the interpolant nearest a guess (vectorized Newton with
bisection), the first crossing above 1, a predicted crossing above the top node, and a
leave-one-node-out estimate of the interpolation error.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "first_crossing",
    "hermite",
    "hermite_eval",
    "hermite_roots",
    "loo_estimate",
    "predict_crossing",
    "spline_slopes",
]


def hermite(t, h, fa, sa, fb, sb):
    """Cubic Hermite on [0, 1] (t), interval length h; value and d/dlam."""
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    d00, d10, d01, d11 = 6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, -6 * t2 + 6 * t, 3 * t2 - 2 * t
    val = h00 * fa + h10 * h * sa + h01 * fb + h11 * h * sb
    der = (d00 * fa + d10 * h * sa + d01 * fb + d11 * h * sb) / h
    return val, der


def spline_slopes(lams, F, slope_at=None):
    """Node slopes of cubic splines through (lams, F[:, n]) for every column n.

    ``slope_at`` = (k, s): the exact derivative s (n,) at node k is imposed: a spline on
    each side of node k, clamped to s there and not-a-knot at the far end (two nodes on a
    side: the quadratic with slope s at node k).
    """
    from scipy.interpolate import CubicSpline

    K = len(lams)
    if K == 1:
        return np.zeros_like(F) if slope_at is None else np.asarray(slope_at[1])[None, :]
    if slope_at is None:
        if K == 2:
            sl = (F[1] - F[0]) / (lams[1] - lams[0])
            return np.stack([sl, sl])
        return CubicSpline(lams, F, axis=0, bc_type="not-a-knot")(lams, 1)
    k, s = slope_at
    S = np.empty_like(F)
    S[k] = s
    for idx in (np.arange(0, k + 1), np.arange(k, K)):
        if len(idx) < 2:
            continue
        x, y = lams[idx], F[idx]
        at_start = idx[0] == k
        if len(idx) == 2:
            chord = (y[1] - y[0]) / (x[1] - x[0])
            S[idx[1] if at_start else idx[0]] = 2.0 * chord - s
            continue
        bc = ((1, s), "not-a-knot") if at_start else ("not-a-knot", (1, s))
        S[idx] = CubicSpline(x, y, axis=0, bc_type=bc)(x, 1)
        S[k] = s
    return S


def hermite_eval(lams, F, S, x):
    """Evaluate the piecewise Hermite interpolant (nodes lams (K,), F, S (K, n)) at x (n,)."""
    K = len(lams)
    k = np.clip(np.searchsorted(lams, x) - 1, 0, K - 2)
    n = np.arange(F.shape[1])
    h = lams[k + 1] - lams[k]
    t = (x - lams[k]) / h
    return hermite(t, h, F[k, n], S[k, n], F[k + 1, n], S[k + 1, n])


def hermite_roots(lams, F, S, guess):
    r"""Per column, the root of the piecewise Hermite interpolant of F nearest ``guess``.

    Returns (root, bracketed) where ``bracketed`` is False where F does not change sign on
    the nodes (the root is then a Newton extrapolation from the nearest end node).
    """
    K, n = F.shape
    cols = np.arange(n)
    sign = np.sign(F)
    change = sign[:-1] * sign[1:] <= 0  # (K-1, n) intervals with a sign change
    centers = 0.5 * (lams[:-1] + lams[1:])
    dist = np.abs(centers[:, None] - guess[None, :]) + np.where(change, 0.0, np.inf)
    k = np.argmin(dist, axis=0)
    bracketed = np.isfinite(dist[k, cols])
    h = lams[k + 1] - lams[k]
    fa, sa, fb, sb = F[k, cols], S[k, cols], F[k + 1, cols], S[k + 1, cols]
    lo, hi = np.zeros(n), np.ones(n)
    flo = fa
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.abs(fb - fa) > 0, fa / (fa - fb), 0.5)
    t = np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)
    for _ in range(80):
        val, der = hermite(t, h, fa, sa, fb, sb)
        left = np.sign(val) == np.sign(flo)
        lo = np.where(left, t, lo)
        flo = np.where(left, val, flo)
        hi = np.where(left, hi, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            tn = t - val / (der * h)
        bad = ~np.isfinite(tn) | (tn <= lo) | (tn >= hi)
        tn = np.where(bad, 0.5 * (lo + hi), tn)
        if np.all(np.abs(tn - t) < 1e-15):
            t = tn
            break
        t = tn
    root = lams[k] + t * h
    if not np.all(bracketed):  # Newton from the nearest end node
        nb = ~bracketed
        end = np.where(np.abs(guess - lams[0]) < np.abs(guess - lams[-1]), 0, K - 1)
        fe, se = F[end, cols], S[end, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            ext = lams[end] - fe / np.where(se != 0, se, np.nan)
        root = np.where(nb, ext, root)
    return root, bracketed


def first_crossing(lams, F):
    """Per column, the first node interval above lambda = 1 where F goes from < 0 to >= 0.

    Returns (k, found): interval [lams[k], lams[k+1]] (k meaningless where not found).
    """
    K, n = F.shape
    if K < 2:
        return np.zeros(n, int), np.zeros(n, bool)
    up = (lams[:-1] >= 1.0)[:, None] & (F[:-1] < 0) & (F[1:] >= 0)
    return np.argmax(up, axis=0), np.any(up, axis=0)


def predict_crossing(lams, F):
    """Per column, the first zero above the top node of the parabola through three nodes of
    F in the top half of the range (its slope's line where the parabola has none); NaN
    where neither reaches zero above the top node."""
    top = lams[-1]
    if len(lams) < 3:
        return np.full(F.shape[1], np.nan)
    # the top node and the nodes nearest a quarter and a half of the range below it (nodes
    # too close together would measure the kinks of V_old rather than its curvature)
    span = top - lams[0]
    k = [len(lams) - 1]
    for d in (0.25, 0.5):
        j = int(np.argmin(np.abs(lams - (top - d * span)) + np.isin(np.arange(len(lams)), k)))
        k.append(j)
    k = np.array(k)
    x = lams[k] - top
    A = np.stack([np.ones(3), x, x**2], axis=1)
    c0, c1, c2 = np.linalg.solve(A, F[k])  # F(top + t) = c0 + c1 t + c2 t^2
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = c1**2 - 4 * c2 * c0
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        r = np.stack([(-c1 - sq) / (2 * c2), (-c1 + sq) / (2 * c2)])
        r = np.where(r > 0, r, np.inf).min(axis=0)
        lin = np.where(c1 > 0, -c0 / c1, np.nan)
    t = np.where(np.isfinite(r), r, lin)
    return top + np.where(t > 0, t, np.nan)


def loo_estimate(lams, F, S, lam, k1):
    """Interpolation error estimate (V units) at lam: leave-one-node-out prediction error of
    the interpolant at the interior nodes (over twice the spacing), halved, at the nodes
    bracketing lam. Node k1 (lam = 1, exact slope) is never left out."""
    K, n = F.shape
    if K < 4:
        return np.full(n, np.nan)
    loo = np.zeros((K, n))
    for k in range(1, K - 1):
        if k == k1:
            continue
        keep = np.array([j for j in range(K) if j != k])
        kk1 = int(np.searchsorted(lams[keep], lams[k1]))
        Sk = spline_slopes(lams[keep], F[keep], (kk1, S[k1]))
        val, _ = hermite_eval(lams[keep], F[keep], Sk, np.full(n, lams[k]))
        loo[k] = np.abs(val - F[k])
    inner = [k for k in range(1, K - 1) if k != k1]
    fill = loo[inner].max(axis=0) if inner else np.zeros(n)
    loo[0], loo[-1], loo[k1] = loo[1], loo[-2], np.maximum(loo[k1], 0.0)
    if k1 in (0, K - 1):
        loo[k1] = fill
    k = np.clip(np.searchsorted(lams, lam) - 1, 0, K - 2)
    cols = np.arange(n)
    return 0.5 * np.maximum(loo[k, cols], loo[k + 1, cols])
