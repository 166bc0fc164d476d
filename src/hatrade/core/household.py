r"""The household block: EGM with a logit choice over varieties (docs/model.md section 2).

One country's households solve

.. math::

    v(a,z,j) = \max_{a' \ge a_{min}} u(c) + \beta \sum_{z'} P(z,z') V(a',z'), \qquad
    p_j c + a' = R a + w z + T,

    V(a,z) = \sigma \log \sum_j \exp\big((\psi_j(z) + v(a,z,j))/\sigma\big).

The fixed point in (c, v) is found with the endogenous grid method plus a value update
(the author's "Coleman" step, docs/model.md 2.1), iterated until both c and v move by less than
``tol`` in one step. Because the level of v contracts only at rate beta, each step also
applies a generalized MacQueen-Porteus correction (a shift of v by income state that
leaves choice probabilities and policies unchanged, and is zero at the fixed point): it
converges to the same fixed point in about a third of the steps.

Derivatives: :func:`solve_fixed_point` has a custom JVP that differentiates the fixed point
implicitly, :math:`dx = F_x dx + F_\theta d\theta`, iterating the tangent at the solution.
Warm starts therefore give exact derivatives, and forward-mode AD through a whole
equilibrium costs a few household-solve equivalents per direction.

All functions here act on one country; :mod:`hatrade.solve.equilibrium` vmaps them over countries.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "HHParams",
    "HHState",
    "Policies",
    "utility",
    "logit",
    "step",
    "iterate",
    "egm_step",
    "initial_state",
    "solve_fixed_point",
    "policies",
    "locate",
    "euler_errors",
]


class HHParams(NamedTuple):
    """Inputs of one country's household problem (all arrays; a JAX pytree).

    Attributes
    ----------
    p : (M,) prices of the varieties, :math:`p_{ij} = d_{ij} w_j (1+t_{ij}) / A_j`
    w : () wage per efficiency unit
    R : () gross interest rate
    T : () lump-sum transfer per household, or (Nz,) by income state (policy instruments,
        :func:`hatrade.core.markets.income_transfers`)
    beta : () discount factor
    gamma : () relative risk aversion
    sigma : () logit scale for this country, :math:`\\sigma_\\epsilon A_i^{1-\\gamma}`
    psi : (Nz, M) shifter :math:`\\psi(z, j)`
    a_grid : (Na,) linear asset grid, first point the borrowing limit
    z : (Nz,) income levels
    Pz : (Nz, Nz) income transition matrix
    """

    p: jax.Array
    w: jax.Array
    R: jax.Array
    T: jax.Array
    beta: jax.Array
    gamma: jax.Array
    sigma: jax.Array
    psi: jax.Array
    a_grid: jax.Array
    z: jax.Array
    Pz: jax.Array


class HHState(NamedTuple):
    """Iteration state: consumption and choice-specific values, each (Na, Nz, M)."""

    c: jax.Array
    v: jax.Array


class Policies(NamedTuple):
    """Household solution on the grid, each (Na, Nz, M) unless noted.

    ``a_p`` is next period's assets, ``pi`` the choice probabilities, ``V`` (Na, Nz) the
    expected value before the taste shocks (including psi; Euler-Mascheroni dropped).
    """

    c: jax.Array
    a_p: jax.Array
    v: jax.Array
    pi: jax.Array
    V: jax.Array


def utility(c, gamma):
    r"""CRRA utility :math:`c^{1-\gamma}/(1-\gamma)`, :math:`\log c` at :math:`\gamma = 1`."""
    is_log = jnp.abs(gamma - 1.0) < 1e-12
    g = jnp.where(is_log, 2.0, gamma)  # keeps the unused branch's derivative finite
    return jnp.where(is_log, jnp.log(c), c ** (1.0 - g) / (1.0 - g))


def marginal_utility(c, gamma):
    return c ** (-gamma)


def locate(x, grid):
    """Bracket ``x`` on a linear grid: index k (Na-2 at most) and weight on grid[k].

    x is assumed inside [grid[0], grid[-1]] (policies are); weights are clipped to [0, 1].
    """
    n = grid.shape[0]
    h = (grid[-1] - grid[0]) / (n - 1)
    k = jnp.clip(jnp.floor((x - grid[0]) / h).astype(jnp.int32), 0, n - 2)
    wt = jnp.clip((grid[k + 1] - x) / h, 0.0, 1.0)
    return k, wt


def logit(v, prm):
    r"""Choice probabilities and log-sum value from choice-specific values v (Na, Nz, M).

    Divisions are by per-row (or scalar) reciprocals: one exp per point and otherwise
    multiplications. As in ``jax.nn.logsumexp``, the stabilizing max carries no derivative
    (the exact derivatives are :math:`d\pi = \pi (dx - \sum_j \pi_j dx_j)`,
    :math:`dV = \sigma \sum_j \pi_j dx_j + d\sigma\,V/\sigma` with x = (psi + v)/sigma).
    """
    if v.shape[-1] == 1:  # one good (static): pi = 1, V = psi + v, no exp or log
        return jnp.ones_like(v), prm.psi[None, :, 0] + v[..., 0]
    val = (prm.psi[None, :, :] + v) * (1.0 / prm.sigma)
    # the shift by the max is for range only (pi and V do not depend on it): no derivative
    # through it. Differentiating max is also fragile: its JVP finds the maximizer by exact
    # equality with the reduced value, which a differently fused recomputation of val can
    # break (0/0 = NaN tangents seen in a compiled welfare decomposition).
    vmax = jax.lax.stop_gradient(jnp.max(val, axis=-1, keepdims=True))
    ex = jnp.exp(val - vmax)
    s = jnp.sum(ex, axis=-1, keepdims=True)
    pi = ex * (1.0 / s)
    V = prm.sigma * (vmax[..., 0] + jnp.log(s[..., 0]))
    return pi, V


def _marginal_and_utility(c, gamma):
    r""":math:`c^{-\gamma}` and :math:`u(c)` from one log and one exp per point.

    :math:`c^{-\gamma} = e^{-\gamma \log c}` and :math:`u(c) = c \cdot c^{-\gamma}/(1-\gamma)`
    (:math:`\log c` at :math:`\gamma = 1`, which needs no extra work): the same values as
    :func:`marginal_utility` and :func:`utility` up to rounding (a few ulps), at about the
    cost of one power instead of two.
    """
    is_log = jnp.abs(gamma - 1.0) < 1e-12
    g = jnp.where(is_log, 2.0, gamma)  # keeps the unused branch finite
    lc = jnp.log(c)
    mu = jnp.exp(-gamma * lc)
    return mu, jnp.where(is_log, lc, c * mu * (1.0 / (1.0 - g)))


def _interp_sorted(xq, xp, fp):
    """Linear interpolation of knots (xp, fp) at the points of a *linear* grid ``xq``.

    Flat extrapolation on both sides (as ``jnp.interp``). Both xq and xp are increasing, so
    the bracketing knot of each query comes from a histogram of the knots' grid positions
    and a cumulative sum: O(n) work instead of a search per query.
    """
    n = xq.shape[0]
    h = (xq[-1] - xq[0]) / (n - 1)
    q = jnp.clip(jnp.ceil((xp - xq[0]) / h).astype(jnp.int32), 0, n)
    hist = jnp.zeros(n + 1, jnp.int32).at[q].add(1)
    i = jnp.clip(jax.lax.associative_scan(jnp.add, hist)[:n], 1, xp.shape[0] - 1)
    x0, x1 = xp[i - 1], xp[i]
    t = jnp.clip((xq - x0) / (x1 - x0), 0.0, 1.0)
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


def _egm_interp(X, a_grid):
    r"""Invert the endogenous grid: a'(a) on the grid, for every column of knots at once.

    Column l of ``X`` (Na, C) holds the increasing endogenous points :math:`\tilde a_k`
    reached from :math:`a'_k` = ``a_grid[k]``. a'(a) interpolates the points
    :math:`(\tilde a_k, a_k)` linearly at the grid points a (flat outside, as
    :func:`_interp_sorted`). Because the values are the linear grid itself, the result is
    a fractional knot index: :math:`a'(a) = a_0 + h\,(i - 1 + t)` with i the number of
    knots at or below a (clipped to [1, Na-1]) and :math:`t \in [0,1]` the position between
    knots i-1 and i. Returns (i, t, h), each (Na, C) but h; the bracket (i-1, i) and weight
    t are also the lottery/interpolation weights of a' on the grid, so the value update
    needs no search. The knot counts come from one histogram of the knots' grid positions
    and a cumulative sum (O(Na C) work), all columns in one flat scatter, one scan and two
    gathers.
    """
    Na, C = X.shape
    a0 = a_grid[0]
    h = (a_grid[-1] - a0) / (Na - 1)
    q = jnp.clip(jnp.ceil((X - a0) * (1.0 / h)).astype(jnp.int32), 0, Na)
    col = jnp.arange(C)[None, :]
    hist = jnp.zeros((Na + 1) * C, jnp.int32).at[(q * C + col).ravel()].add(1)
    # cumulative sum by a parallel scan: XLA CPU lowers jnp.cumsum to an O(Na^2) window sum
    count = jax.lax.associative_scan(jnp.add, hist.reshape(Na + 1, C), axis=0)
    i = jnp.clip(count[:Na], 1, Na - 1)
    flat = X.ravel()
    x0 = flat[((i - 1) * C + col).ravel()].reshape(Na, C)
    x1 = flat[(i * C + col).ravel()].reshape(Na, C)
    t = jnp.clip((a_grid[:, None] - x0) / (x1 - x0), 0.0, 1.0)
    return i, t, h


def step(
    c,
    mu,
    v,
    prm: HHParams,
    p_next=None,
    R_next=None,
    grid_next=None,
    sigma_next=None,
    psi_next=None,
):
    r"""The EGM + value step given :math:`\mu = c^{-\gamma}` of the current c.

    Returns (c', mu', v', a') with :math:`\mu' = c'^{-\gamma}` (computed anyway for
    :math:`u(c') = c'\mu'/(1-\gamma)`), so that an iteration carrying mu evaluates one
    log and one exp per point for both (see :func:`egm_step`).

    ``p_next`` and ``R_next`` (default: ``prm.p`` and ``prm.R``) are next period's goods
    prices and return, for a step along a transition path (the backward pass of
    :mod:`hatrade.core.path`): (c, mu, v) are then next period's and ``prm`` holds this
    period's prices and income.

    ``grid_next`` (Na,), ``sigma_next`` and ``psi_next`` (Nz, M) (default: ``prm.a_grid``,
    ``prm.sigma``, ``prm.psi``) are next period's asset grid and taste-shock parameters,
    for a path along which TFP (which scales them, docs/model.md 1.1) changes: (c, mu, v)
    then live on ``grid_next``, the grid of the assets :math:`a'` chosen today, and their
    logit uses next period's scale; ``prm.a_grid`` is the grid of the assets held today,
    on which the results lie. The budget is
    :math:`p_j c + a' = R a + w z + T` with a on ``prm.a_grid`` and a' on ``grid_next``.
    With the defaults the step is the steady state's (bit for bit).
    """
    g = prm.gamma
    Na, Nz, M = v.shape
    inv_p = 1.0 / prm.p
    inv_p_next = inv_p if p_next is None else 1.0 / p_next
    R_next = prm.R if R_next is None else R_next
    a_next = prm.a_grid if grid_next is None else grid_next
    if sigma_next is None and psi_next is None:
        prm_next = prm
    else:
        prm_next = prm._replace(
            sigma=prm.sigma if sigma_next is None else sigma_next,
            psi=prm.psi if psi_next is None else psi_next,
        )
    pi, V_old = logit(v, prm_next)
    m = jnp.sum(pi * mu * inv_p_next, axis=-1)  # (Na, Nz)
    E = (prm.beta * R_next) * m @ prm.Pz.T  # E[a', z] = beta R' sum_z' P[z,z'] m[a',z']
    # p_j c~ = p_j (p_j E)^(-1/gamma) = p_j^(1-1/gamma) E^(-1/gamma); the power as
    # exp(log) (XLA CPU's float64 power costs more than a log and an exp)
    pc = jnp.exp((-1.0 / g) * jnp.log(E))[..., None] * (prm.p ** (1.0 - 1.0 / g))[None, None, :]
    income = prm.w * prm.z + prm.T  # (Nz,)
    a_tilde = (pc + (a_next[:, None] - income[None, :])[..., None]) * (1.0 / prm.R)
    # a'(a) from the points (a~, a') onto the grid, all columns (z, j) at once: (i, t) the
    # bracket of a' among the knots a_next, as a fractional index
    i, t, h = _egm_interp(a_tilde.reshape(Na, Nz * M), prm.a_grid)
    i, t = i.reshape(Na, Nz, M), t.reshape(Na, Nz, M)
    if grid_next is not None:  # the knots' spacing (the held grid's h otherwise)
        h = (a_next[-1] - a_next[0]) / (Na - 1)
    a_p = a_next[0] + h * ((i - 1).astype(t.dtype) + t)
    cash = prm.R * prm.a_grid[:, None] + income[None, :]  # (Na, Nz)
    c_new = (cash[..., None] - a_p) * inv_p
    mu_new, u = _marginal_and_utility(c_new, g)
    # value update with V_old interpolated at a' (bracket i-1, i and weight t from above)
    W = (V_old @ prm.Pz.T).ravel()  # W[k, z] = sum_z' P[z,z'] V_old[k, z'], flat
    zi = jnp.arange(Nz)[None, :, None]
    w0 = W[(i - 1) * Nz + zi]
    w1 = W[i * Nz + zi]
    v_new = u + prm.beta * (w0 + t * (w1 - w0))
    return c_new, mu_new, v_new, a_p


def egm_step(state: HHState, prm: HHParams):
    r"""One EGM + value step (docs/model.md 2.1). Returns (new state, policies at the new state).

    The returned policies hold ``a_p`` and ``c`` from this step, ``v`` the updated values,
    and ``pi``/``V`` computed from the *updated* v (the author's reporting convention).

    Per (a, z, j) point the step evaluates one exp (the logit; none with one good) and two
    logs and two exps (:math:`c^{-\gamma}` of the current c, and :math:`c'^{-\gamma}` and
    :math:`u(c')` of the new one, by :func:`_marginal_and_utility`), and no search: the
    endogenous-grid power is factored over varieties,
    :math:`(p_j E)^{-1/\gamma} = p_j^{-1/\gamma} E^{-1/\gamma}` (Na Nz log/exp pairs and
    M powers; on XLA CPU a float64 power costs more than a log plus an exp), and
    the bracket of a' on the grid, needed for :math:`E_{z'}V(a',z')`, comes out of the
    interpolation (:func:`_egm_interp`). :func:`solve_fixed_point` carries
    :math:`c^{-\gamma}` from one step to the next (one log and one exp per point fewer).
    """
    c, v = state
    mu = jnp.exp(-prm.gamma * jnp.log(c))  # c^-gamma, as in _marginal_and_utility
    c_new, _, v_new, a_p = step(c, mu, v, prm)
    return HHState(c_new, v_new), a_p


def initial_state(prm: HHParams) -> HHState:
    """The author's initial guess: a' = borrowing limit at every a, v = -1/(1-beta)."""
    a0 = prm.a_grid[0]
    cash = prm.R * prm.a_grid[:, None] + prm.w * prm.z[None, :] + prm.T - a0
    c = cash[..., None] / prm.p[None, None, :]
    c = jnp.maximum(c, 1e-10)
    v = jnp.full(c.shape, -1.0, dtype=c.dtype) / (1.0 - prm.beta)  # not weakly typed
    return HHState(c, v)


def _level_operator(prm):
    """K = beta P (I - beta P)^(-1): maps a per-z change in v to the remaining level error."""
    n = prm.Pz.shape[0]
    bP = prm.beta * prm.Pz
    return bP @ jnp.linalg.inv(jnp.eye(n, dtype=bP.dtype) - bP)


def _level_correction(dv, K):
    r"""Extrapolate the slow modes of the value iteration (generalized MacQueen-Porteus).

    An error in v that depends on z only, e(z), maps to :math:`\beta P e` in one step, so
    the one-step change is :math:`\Delta = (\beta P - I) e` and the fixed point is
    :math:`v_{n+1} + \beta P (I - \beta P)^{-1} \Delta`. We apply this to the mean change by
    income state. For a constant error it is exactly MacQueen-Porteus's
    :math:`\beta/(1-\beta)` shift; it leaves choice probabilities (differences across j)
    unchanged and vanishes at the fixed point, so the fixed point is the same.
    """
    d = jnp.mean(dv, axis=(0, 2))
    return (K @ d)[None, :, None]


def iterate(prm, x0, tol, max_iter):
    def cond(carry):
        _, _, it, err = carry
        return (it < max_iter) & (err >= tol)

    K = _level_operator(prm)

    def body(carry):
        x, mu, it, _ = carry  # mu = x.c ** -gamma, carried (the same as egm_step's)
        c1, mu1, v1, _ = step(x.c, mu, x.v, prm)
        dv = v1 - x.v
        err = jnp.max(jnp.maximum(jnp.abs(c1 - x.c), jnp.abs(dv)))  # one reduction
        err = jnp.where(jnp.isnan(err), -1.0, err)  # stop on NaN; flagged by the caller
        v1 = v1 + _level_correction(dv, K)
        return HHState(c1, v1), mu1, it + 1, err

    mu0 = jnp.exp(-prm.gamma * jnp.log(x0.c))
    x, _, it, _ = jax.lax.while_loop(cond, body, (x0, mu0, jnp.array(0), jnp.array(jnp.inf)))
    return x, it


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def solve_fixed_point(
    prm: HHParams,
    x0: HHState,
    tol: float = 1e-10,
    max_iter: int = 3000,
    tangent_tol: float | None = None,
):
    """Iterate the EGM step from ``x0`` until c and v change by less than ``tol``.

    Returns ``(state, iterations)``; ``iterations == max_iter`` or a NaN state means it did
    not converge (checked by the callers, which raise with diagnostics). Differentiable in
    ``prm`` by implicit differentiation; the derivative does not depend on ``x0``. The
    tangent iteration stops when its step is below ``tangent_tol`` (default ``tol``) times
    the size of the direct effect. The tangent of ``x0`` (irrelevant for the result) is used
    as the starting guess of the tangent iteration.
    """
    x, it = iterate(prm, x0, tol, max_iter)
    return x, it.astype(prm.beta.dtype)


@solve_fixed_point.defjvp
def _solve_fixed_point_jvp(tol, max_iter, tangent_tol, primals, tangents):
    prm, x0 = primals
    dprm, dx_guess = tangents
    x, it = solve_fixed_point(prm, x0, tol, max_iter, tangent_tol)
    ttol = tol if tangent_tol is None else tangent_tol
    step = lambda x_, p_: egm_step(x_, p_)[0]  # noqa: E731
    _, b = jax.jvp(lambda p_: step(x, p_), (prm,), (dprm,))
    _, Lx = jax.linearize(lambda x_: step(x_, prm), x)
    scale = jnp.maximum(1.0, jnp.maximum(jnp.max(jnp.abs(b.c)), jnp.max(jnp.abs(b.v))))

    def cond(carry):
        _, k, err = carry
        return (k < max_iter) & (err >= ttol * scale)

    K = _level_operator(prm)

    def body(carry):
        dx, k, _ = carry
        n = Lx(dx)
        dc, dv = n.c + b.c, n.v + b.v
        ddv = dv - dx.v
        err = jnp.maximum(jnp.max(jnp.abs(dc - dx.c)), jnp.max(jnp.abs(ddv)))
        err = jnp.where(jnp.isnan(err), -1.0, err)
        dv = dv + _level_correction(ddv, K)
        return HHState(dc, dv), k + 1, err

    # The fixed point does not depend on x0, so the tangent of x0 carries no information
    # about the result; it is used as the starting guess of the tangent iteration (warm
    # starts of derivatives, e.g. the previous Newton step's Jacobian columns).
    has_guess = jnp.any(dx_guess.c != 0) | jnp.any(dx_guess.v != 0)
    dx0 = HHState(jnp.where(has_guess, dx_guess.c, b.c), jnp.where(has_guess, dx_guess.v, b.v))
    dx, _, _ = jax.lax.while_loop(cond, body, (dx0, jnp.array(0), jnp.array(jnp.inf)))
    return (x, it), (dx, jnp.zeros_like(it))


def policies(state: HHState, prm: HHParams) -> Policies:
    """Policies reported at a converged state: one more step, pi from the returned v."""
    new, a_p = egm_step(state, prm)
    pi, V = logit(new.v, prm)
    return Policies(c=new.c, a_p=a_p, v=new.v, pi=pi, V=V)


def euler_errors(pol: Policies, prm: HHParams):
    r"""Euler-equation errors in consumption units, :math:`\log_{10}|1 - c^*/c|`.

    For each (a, z, j) away from the borrowing constraint,
    :math:`c^* = (p_j \beta R E_{z'} \sum_{j'} \pi_{j'}(a',z') u'(c_{j'}(a',z'))/p_{j'})^{-1/\gamma}`
    with next period's terms interpolated linearly at a'. Returns an (Na, Nz, M) array with
    NaN where the borrowing constraint binds or a' is at the top of the grid.
    """
    g = prm.gamma
    m = jnp.sum(pol.pi * marginal_utility(pol.c, g) / prm.p, axis=-1)  # (Na, Nz)
    k, wt = locate(pol.a_p, prm.a_grid)
    zi = jnp.arange(m.shape[1])
    # E_{z'} at a': sum_z' P[z,z'] m(a', z')
    m_at = wt[..., None] * m[k, :] + (1.0 - wt[..., None]) * m[k + 1, :]  # (Na,Nz,M,Nz')
    Em = jnp.einsum("azjy,zy->azj", m_at, prm.Pz)
    del zi
    c_star = (prm.p * prm.beta * prm.R * Em) ** (-1.0 / g)
    err = jnp.log10(jnp.abs(1.0 - c_star / pol.c) + 1e-300)
    # the borrowing limit binds, or a' is capped at the top of the grid
    binding = (pol.a_p <= prm.a_grid[0] + 1e-12) | (pol.a_p >= prm.a_grid[-1] - 1e-12)
    return jnp.where(binding, jnp.nan, err)
