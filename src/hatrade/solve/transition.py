r"""Perfect-foresight transitions between two stationary equilibria (docs/transitions.md).

The economy enters period 0 with the old stationary distribution and the old return
:math:`R_0` on its assets; from period T on it is at the new stationary equilibrium. The
unknowns are, per period t, the wages (mean one: the steady state's numeraire), the return
:math:`R_{t+1}` on the assets chosen at t (one world rate, or one per country under
financial autarky) and, when tariffs are in the path, the transfers :math:`T_{i,t}`
(period t's tariff revenue rebated lump sum to period t's households). The targets are
the steady state's relative excess demands in every period.

Quasi-Newton in sequence space: the exact Jacobian at the new steady state
(:func:`hatrade.solve.path_jacobian.transition_jacobian`, household blocks by the fake-news
algorithm) is factored once and reused, :math:`U_{k+1} = U_k - B_k^{-1} H(U_k)` with
:math:`B_0 = J` and Broyden's rank-one updates of its inverse from each step taken (the
Jacobian along the path differs from the steady state's at second order), the step halved
when it does not reduce the largest excess demand. ``linear=True`` returns the
first step from the terminal steady state's prices, the first-order path.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

from hatrade.core.errors import EquilibriumError
from hatrade.core.household import HHState
from hatrade.core.markets import Layout, ModelArrays, excess_demands, model_arrays
from hatrade.core.params import ParameterError
from hatrade.core.path import PathInputs, PathOutputs, evaluate_path, stored_bytes
from hatrade.core.x64 import enable_x64
from hatrade.solve.path_jacobian import transition_jacobian

__all__ = [
    "PathData",
    "path_inputs",
    "PathProblem",
    "PathShocks",
    "TransitionOptions",
    "TransitionSolution",
    "solve_transition",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransitionOptions:
    """Options of :func:`solve_transition`.

    periods : T, the periods solved for (from T on: the new steady state). Default 300.
    tol : largest relative excess demand accepted (every period, every market). 1e-8.
    max_iter : quasi-Newton iterations. 30.
    settle_tol : largest distance of the path's last period to the new steady state
        (relative wages, R) accepted; beyond it the horizon is too short. 1e-6.
    segment : periods per checkpoint of the path evaluation (memory; each path evaluation
        then computes the policies twice); None: keep every period's policies when they
        fit in ``policy_memory_gb`` (one backward pass), else checkpoints every ``k``
        periods, k the divisor of T nearest to sqrt(T).
    policy_memory_gb : memory for every period's policies (a' and choice probabilities,
        :func:`hatrade.core.path.stored_bytes`) with ``segment=None``. Default 2 GB (the
        19-country world at T = 300 needs 1.7 GB).
    linear : return the first-order path (one step from the terminal steady state).
    """

    periods: int = 300
    tol: float = 1e-8
    max_iter: int = 30
    settle_tol: float = 1e-6
    segment: int | None = None
    linear: bool = False
    policy_memory_gb: float = 2.0

    def __post_init__(self):
        checks = {
            "periods": isinstance(self.periods, int) and self.periods >= 2,
            "tol": isinstance(self.tol, float | int) and 0 < self.tol < 1,
            "max_iter": isinstance(self.max_iter, int) and self.max_iter >= 1,
            "settle_tol": isinstance(self.settle_tol, float | int) and self.settle_tol > 0,
            "segment": self.segment is None
            or (isinstance(self.segment, int) and self.segment >= 1),
            "policy_memory_gb": isinstance(self.policy_memory_gb, float | int)
            and self.policy_memory_gb >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ParameterError(
                    f"{name} = {getattr(self, name)!r} is not allowed: periods an integer "
                    ">= 2, tol in (0, 1), max_iter >= 1, settle_tol > 0, segment >= 1 or None, "
                    "policy_memory_gb >= 0."
                )

    @property
    def segment_length(self) -> int:
        if self.segment is not None:
            if self.periods % self.segment:
                raise ParameterError(
                    f"segment = {self.segment} is not allowed: it must divide periods = "
                    f"{self.periods}."
                )
            return self.segment
        divs = [k for k in range(1, self.periods + 1) if self.periods % k == 0]
        return min(divs, key=lambda k: abs(k - math.sqrt(self.periods)))


@dataclass(frozen=True)
class PathShocks:
    """The exogenous path, period by period (numpy): d, tariffs (T, M, M), labor (T, M)
    and TFP (T, M; None: the new steady state's in every period).

    From period T on the terminal world's values hold (they must be the new steady
    state's world). Shocks are known from t = 0 (news about later periods included).
    TFP scales prices, taste shocks and the asset grid of its period (the assets chosen
    at t lie on period t's grid; docs/transitions.md).
    """

    d: np.ndarray
    tariffs: np.ndarray
    labor: np.ndarray
    tfp: np.ndarray | None = None


@dataclass
class TransitionSolution:
    """The solved path (numpy). w, T : (T, M); R : (T + 1, M) the return paid at t on the
    assets carried into t (R[0] the old steady state's); outputs : PathOutputs (numpy);
    residuals : (T, n) excess demands per period; end_gap : distance of the last period
    to the new steady state; work : counters and seconds."""

    w: np.ndarray
    R: np.ndarray
    T: np.ndarray
    outputs: PathOutputs
    residuals: np.ndarray
    converged: bool
    iterations: int
    residual: float
    end_gap: float
    layout: Layout
    history: list = field(default_factory=list)
    work: dict = field(default_factory=dict)


class PathData(NamedTuple):
    """The arrays a path's residuals depend on besides the unknowns (a JAX pytree, passed
    as arguments so that nothing large is compiled in as a constant)."""

    arrs: ModelArrays
    d: jax.Array
    t: jax.Array
    L: jax.Array
    R0: jax.Array
    w_end: jax.Array
    T_end: jax.Array
    R_end: jax.Array
    beta: jax.Array
    x_end: HHState
    lam0: jax.Array
    A: jax.Array  # (T, M) TFP of every period
    A_start: jax.Array  # (M,) the old steady state's TFP (the grid of lam0)


def path_inputs(layout: Layout, data: PathData, U) -> PathInputs:
    """The :class:`~hatrade.core.path.PathInputs` of unknowns U (T, n)."""
    w, Rn, Tr, _ = jax.vmap(layout.prices)(U)
    R = jnp.concatenate([data.R0[None], Rn], axis=0)
    return PathInputs(
        data.d, data.t, data.L, w, R, Tr, data.arrs.d, data.arrs.t,
        data.w_end, data.T_end, data.R_end, data.A, data.A_start,
    )  # fmt: skip


@partial(jax.jit, static_argnums=(0, 1))
def _path_residuals(layout: Layout, segment: int | None, data: PathData, U):
    pin = path_inputs(layout, data, U)
    out = evaluate_path(data.arrs, pin, data.beta, data.x_end, data.lam0, segment)

    def one(d, t, L, Mt, X, A, G, Y, Tr):
        arrs = data.arrs._replace(d=d, t=t, L=L)
        return excess_demands(layout, arrs, dict(M=Mt, X=X, A=A, G=G, Y=Y), Tr)

    H = jax.vmap(one)(data.d, data.t, data.L, out.M, out.X, out.A, out.G, out.Y, pin.T)
    return H, out


class PathProblem:
    """A transition's unknowns and residual function.

    ``layout`` the period's unknowns (:class:`~hatrade.core.markets.Layout`), ``data`` the
    :class:`PathData`, ``guess()`` the new steady state's prices in every period (T, n),
    ``inputs(U)`` the :class:`~hatrade.core.path.PathInputs` of unknowns U (T, n),
    ``residuals(U)`` the excess demands (T, n, numpy) and the
    :class:`~hatrade.core.path.PathOutputs`.
    """

    def __init__(self, old, new, shocks: PathShocks, opts: TransitionOptions):
        world = new.world
        self.M, self.T, self.opts = world.M, opts.periods, opts
        tariffs = bool(np.any(shocks.tariffs != 0)) or world.has_tariffs
        self.layout = Layout(
            M=world.M,
            financial=world.financial,
            solve_for="R",
            tariffs=tariffs,
            R_fixed=None,
            beta_fixed=float(new.beta),
        )
        self.arrs: ModelArrays = model_arrays(world, new.household, new.income)
        self.new, self.old = new, old
        p = new.prices
        f = lambda x: jnp.asarray(np.asarray(x, float))  # noqa: E731
        tfp = world.tfp if shocks.tfp is None else shocks.tfp
        self.data = PathData(
            arrs=self.arrs, d=f(shocks.d), t=f(shocks.tariffs), L=f(shocks.labor),
            R0=f(old.prices.R), w_end=f(p.w), T_end=f(p.T), R_end=f(p.R),
            beta=f(new.beta), x_end=jax.tree_util.tree_map(f, new.state), lam0=f(old.lam),
            A=f(np.broadcast_to(tfp, (self.T, self.M))), A_start=f(old.world.tfp),
        )  # fmt: skip
        fits = stored_bytes(self.arrs, self.T) <= opts.policy_memory_gb * 2**30
        self.segment = None if opts.segment is None and fits else opts.segment_length

    def guess(self) -> np.ndarray:
        p = self.new.prices
        u = self.layout.pack(p.w, p.R, p.T, p.beta)
        return np.tile(u, (self.T, 1))

    def inputs(self, U) -> PathInputs:
        return path_inputs(self.layout, self.data, jnp.asarray(U))

    def residuals(self, U):
        H, out = _path_residuals(self.layout, self.segment, self.data, jnp.asarray(U))
        return np.asarray(H), out


def _where(prob: PathProblem, H: np.ndarray) -> str:
    t, r = np.unravel_index(np.argmax(np.abs(H)), H.shape)
    name = prob.layout.residual_names(prob.new.world.countries)[r]
    return f"{name} in period {t} ({H[t, r]:+.2e})"


class _BroydenInverse:
    r"""The inverse of the factored Jacobian with Broyden's ("good") rank-one updates.

    After a step :math:`s = \Delta U` that changed the residuals by :math:`y = \Delta H`,
    :math:`B^{-1} \leftarrow B^{-1} + (s - B^{-1} y)\, s^\top B^{-1} / (s^\top B^{-1} y)`,
    kept as the LU factors and the pairs of vectors of the updates (no dense matrix).
    """

    def __init__(self, lu):
        self.lu, self.us, self.vs = lu, [], []

    def solve(self, x: np.ndarray) -> np.ndarray:
        r = sla.lu_solve(self.lu, x)
        for u, v in zip(self.us, self.vs, strict=True):
            r = r + u * (v @ x)
        return r

    def solve_t(self, x: np.ndarray) -> np.ndarray:
        r = sla.lu_solve(self.lu, x, trans=1)
        for u, v in zip(self.us, self.vs, strict=True):
            r = r + v * (u @ x)
        return r

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        By = self.solve(y)
        den = float(s @ By)
        if not np.isfinite(den) or abs(den) < 1e-300:
            return
        v = self.solve_t(s)
        self.us.append((s - By) / den)
        self.vs.append(v)


def _newton(prob: PathProblem, U, lu, work: dict, progress=None):
    """Quasi-Newton iterations from the factored Jacobian, with Broyden's updates; returns
    (U, H, out, its, history)."""
    opts = prob.opts
    H, out = prob.residuals(U)
    err, history = float(np.max(np.abs(H))), []
    it = 0
    inv = _BroydenInverse(lu)
    while it < opts.max_iter and not err < opts.tol:
        dU = inv.solve(-H.ravel()).reshape(U.shape)
        step = 1.0
        for _ in range(6):
            U_try = U + step * dU
            H_try, out_try = prob.residuals(U_try)
            work["path_evaluations"] += 1
            err_try = float(np.max(np.abs(H_try)))
            if err_try < err or not np.isfinite(err):
                break
            step *= 0.5
        if np.isfinite(err_try):
            inv.update((U_try - U).ravel(), (H_try - H).ravel())
        U, H, out, err = U_try, H_try, out_try, err_try
        it += 1
        history.append(err)
        log.info("transition: iteration %d, largest excess demand %.3e", it, err)
        if progress is not None:
            progress(it, err)
        if not np.isfinite(err):
            break
    return U, H, out, it, history


def _end_gap(prob: PathProblem, w, R) -> float:
    p = prob.new.prices
    gw = np.max(np.abs(w[-1] / np.asarray(p.w) - 1.0))
    gR = np.max(np.abs(R[-1] - np.asarray(p.R)))
    return float(max(gw, gR))


@enable_x64
def solve_transition(
    old, new, shocks: PathShocks, options: TransitionOptions, progress=None
) -> TransitionSolution:
    r"""Solve the perfect-foresight path from ``old`` to ``new`` (module docstring).

    Parameters
    ----------
    old, new : Equilibrium
        The stationary equilibrium the economy starts in (its distribution and return on
        assets) and the one it ends in (solved with beta fixed; same household grid).
    shocks : PathShocks
        The world's trade costs, tariffs, labor and TFP in each of the T periods.
    options : TransitionOptions
    progress : callable(iteration, largest excess demand), optional

    Returns
    -------
    TransitionSolution

    Raises
    ------
    EquilibriumError
        No convergence within ``max_iter`` (largest excess demand, where and when), or the
        path has not settled at the new steady state by period T (try more periods).
    """
    prob = PathProblem(old, new, shocks, options)
    seconds: dict[str, float] = {}
    work: dict = {"path_evaluations": 1, "seconds": seconds}
    t0 = time.perf_counter()
    J = transition_jacobian(prob.arrs, prob.layout, new, prob.T, log=log)
    lu = sla.lu_factor(J, overwrite_a=True, check_finite=False)
    del J
    seconds["jacobian"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    U0 = prob.guess()
    if options.linear:
        H, _ = prob.residuals(U0)
        U = U0 - sla.lu_solve(lu, H.ravel()).reshape(U0.shape)
        H, out = prob.residuals(U)
        work["path_evaluations"] += 1
        its, history = 1, []
    else:
        U, H, out, its, history = _newton(prob, U0, lu, work, progress)
    seconds["newton"] = time.perf_counter() - t0
    err = float(np.max(np.abs(H)))
    pin = prob.inputs(jnp.asarray(U))
    w, R, Tr = (np.asarray(x) for x in (pin.w, pin.R, pin.T))
    converged = options.linear or err < options.tol
    if not converged:
        raise EquilibriumError(
            f"transition did not converge: largest excess demand {err:.2e} "
            f"(tolerance {options.tol:.0e}) at {_where(prob, H)} after {its} quasi-Newton "
            f"iterations (history {', '.join(f'{h:.1e}' for h in history[-5:])}). Try a "
            "longer horizon (periods), a smaller or gradual shock, or more max_iter."
        )
    gap = _end_gap(prob, w, R)
    if not options.linear and not gap < options.settle_tol:
        raise EquilibriumError(
            f"the transition has not settled by period T = {prob.T}: the last period's "
            f"wages and R differ from the new steady state's by {gap:.2e} (tolerance "
            f"{options.settle_tol:.0e}). Try a larger number of periods, e.g. {2 * prob.T}."
        )
    out = jax.tree_util.tree_map(np.asarray, out)
    return TransitionSolution(
        w=w, R=R, T=Tr, outputs=out, residuals=H, converged=converged, iterations=its,
        residual=err, end_gap=gap, layout=prob.layout, history=history, work=work,
    )  # fmt: skip
