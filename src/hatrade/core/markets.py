r"""Markets: the model's arrays, country prices, aggregation and excess demands.

For prices (wages :math:`w`, interest rates :math:`R`, transfers :math:`T`, discount factor
:math:`\beta`) every country's household problem is solved (vmapped over countries), its
stationary distribution found and aggregated (docs/model.md section 3):

.. math::

    N_i = L_i \sum \lambda z, \quad Y_i = w_i N_i, \quad
    M_{ij} = L_i \sum_{a,z} \lambda \pi_j p_{ij} c_j, \quad
    A_i = L_i \sum_{a,z} \lambda \sum_j \pi_j a'_j .

Excess demands: goods markets :math:`\sum_i X_{ij} - Y_j` with exporters receiving factory
prices :math:`X_{ij} = M_{ij}/(1+t_{ij})` (one market dropped by Walras' law), bond markets
(one world market under financial globalization, one per country under autarky) and rebated
tariff revenue :math:`T_i L_i = \sum_j t_{ij}/(1+t_{ij}) M_{ij}`. :class:`Layout` maps the
solvers' unknown vector to prices. Everything here is a pure function of arrays: solvers
(:mod:`hatrade.solve`), Jacobians (:mod:`hatrade.core.jacobian`) and analyses build on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.distribution import stationary_distribution_info
from hatrade.core.errors import EquilibriumError
from hatrade.core.household import (
    HHParams,
    HHState,
    Policies,
    initial_state,
    iterate,
    policies,
    solve_fixed_point,
)
from hatrade.core.income import IncomeProcess
from hatrade.core.instruments import rebate_weights
from hatrade.core.params import Household, World

__all__ = [
    "ModelArrays",
    "model_arrays",
    "country_params",
    "income_transfers",
    "solve_countries",
    "aggregate",
    "solve_households",
    "Layout",
    "excess_demands",
    "residual_fn",
    "initial_states",
    "check_households",
    "likely_causes",
    "explain_no_equilibrium",
    "LAM_TOL",
]

# ----------------------------------------------------------------------------- inputs


class ModelArrays(NamedTuple):
    r"""The prices-independent arrays of a world (a JAX pytree; leading axis: country).

    A, L : (M,) TFP and labor force. d, t : (M, M) iceberg trade costs and ad-valorem tariffs
    (importer rows). sigma : (M,) taste-shock scale :math:`\sigma_\epsilon A_i^{1-\gamma}`.
    psi : (M, Nz, M) home-variety preference by permanent income (home column only).
    a_grid : (M, Na) asset grid :math:`[-\phi A_i, a_{max} A_i]`. z, Pz : (Nz,), (Nz, Nz)
    income states and transition matrix. gamma : scalar risk aversion. tau : (M,) or None
    labor-income tax rates; rebate : (M, Nz) or None rebate weights of tariff revenue by
    income state (None: neither instrument, :mod:`hatrade.core.instruments`).
    """

    A: jax.Array
    L: jax.Array
    d: jax.Array
    t: jax.Array
    sigma: jax.Array
    psi: jax.Array
    a_grid: jax.Array
    z: jax.Array
    Pz: jax.Array
    gamma: jax.Array
    tau: jax.Array | None = None
    rebate: jax.Array | None = None


def _instrument_arrays(world: World, inc: IncomeProcess):
    """(tau, rebate) arrays of a world's instruments, both None when it has none."""
    if not world.has_instruments:
        return None, None
    M = world.M
    tau = np.zeros(M) if world.labor_tax is None else np.asarray(world.labor_tax, float)
    r = rebate_weights(world.rebate, inc.z, inc.dist)
    return jnp.asarray(tau), jnp.asarray(np.broadcast_to(r, (M, r.size)))


def income_transfers(arrs, w, T):
    r"""Households' transfers: ``T`` (M,) without instruments; with them, by income state
    (M, Nz), :math:`T_i r_i(z) + \tau_i w_i (1 - z)` (tariff revenue by the rebate rule, and
    the labor tax's lump-sum rebate net of the tax, :mod:`hatrade.core.instruments`)."""
    if arrs.tau is None and arrs.rebate is None:
        return T
    z = arrs.z[None, :]
    return T[:, None] * arrs.rebate + arrs.tau[:, None] * w[:, None] * (1.0 - z)


def model_arrays(world: World, hh: Household, inc: IncomeProcess) -> ModelArrays:
    """Prices-independent arrays for a world, as JAX arrays (country scaling applied)."""
    A = jnp.asarray(world.tfp)
    scale = A ** (1.0 - hh.gamma)
    M = world.M
    tau, rebate = _instrument_arrays(world, inc)
    return ModelArrays(
        A=A,
        L=jnp.asarray(world.labor),
        d=jnp.asarray(world.d),
        t=jnp.zeros((M, M)) if world.tariffs is None else jnp.asarray(world.tariffs),
        sigma=hh.sigma_eps * scale,
        psi=(hh.psi_slope * scale)[:, None, None]
        * jnp.asarray(inc.log_z_perm)[None, :, None]
        * jnp.eye(M)[:, None, :],  # (M, Nz, M): home variety only
        a_grid=jnp.linspace(-hh.phi * A, hh.a_max * A, hh.n_a, axis=-1),  # (M, Na)
        z=jnp.asarray(inc.z),
        Pz=jnp.asarray(inc.P),
        gamma=jnp.asarray(float(hh.gamma)),
        tau=tau,
        rebate=rebate,
    )


def country_params(arrs, w, R, T, beta) -> HHParams:
    """Household inputs of every country (leading axis: country) at the given prices."""
    M = w.shape[0]
    p = arrs.d * (w / arrs.A)[None, :] * (1.0 + arrs.t)
    bc = lambda x: jnp.broadcast_to(x, (M,) + jnp.shape(x))  # noqa: E731
    return HHParams(
        p=p,
        w=w,
        R=jnp.broadcast_to(R, (M,)),
        T=income_transfers(arrs, w, T),
        beta=bc(beta),
        gamma=bc(arrs.gamma),
        sigma=arrs.sigma,
        psi=arrs.psi,
        a_grid=arrs.a_grid,
        z=bc(arrs.z),
        Pz=bc(arrs.Pz),
    )


def solve_countries(prm: HHParams, x0: HHState, tol: float, max_iter: int, ttol=None):
    return jax.vmap(lambda p, x: solve_fixed_point(p, x, tol, max_iter, ttol))(prm, x0)


def aggregate(arrs, prm: HHParams, pol: Policies, lam):
    L = arrs.L
    N = L * jnp.einsum("kaz,z->k", lam, arrs.z)  # lam (M, Na, Nz)
    Y = prm.w * N
    spend = pol.pi * pol.c * prm.p[:, None, None, :]
    Mij = L[:, None] * jnp.einsum("kaz,kazj->kj", lam, spend)
    Ap = L * jnp.einsum("kaz,kazj->k", lam, pol.pi * pol.a_p)
    G = jnp.sum(arrs.t / (1.0 + arrs.t) * Mij, axis=1)
    # X: spending at factory prices (net of tariffs), what exporters receive
    return dict(N=N, Y=Y, M=Mij, X=Mij / (1.0 + arrs.t), A=Ap, G=G)


def solve_households(arrs, w, R, T, beta, x0, tol, max_iter, ttol=None, tol_now=None):
    """Solve households at prices and aggregate. Returns aggregates and solution pieces.

    ``tol_now`` (traced, optional): the household tolerance of this solve instead of ``tol``,
    for primal solves only (no derivatives through them; inexact early Newton steps).
    """
    prm = country_params(arrs, w, R, T, beta)
    if tol_now is None:
        x, its = solve_countries(prm, x0, tol, max_iter, ttol)
    else:
        x, its = jax.vmap(lambda p, x_: iterate(p, x_, tol_now, max_iter))(prm, x0)
        its = its.astype(prm.beta.dtype)
    pol = jax.vmap(policies)(x, prm)
    lam, info = jax.vmap(stationary_distribution_info)(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    agg = aggregate(arrs, prm, pol, lam)
    return agg, dict(state=x, iterations=its, prm=prm, pol=pol, lam=lam, lam_residual=info.residual)


# ----------------------------------------------------------------------------- unknowns


@dataclass(frozen=True)
class Layout:
    """How the unknown vector maps to prices and which residuals are used."""

    M: int
    financial: str
    solve_for: str  # "R" or "beta"; "traced" in a compiled function's key (see split)
    tariffs: bool
    R_fixed: float | None
    beta_fixed: float | None
    beta_flag: object = None  # traced: 1 when the rate unknown is beta (solve_for "traced")

    def split(self):
        """``(key, numbers)``: the static part (the key of compiled functions) and the fixed
        R, beta and the solve_for flag as an array, traced, so that solves that differ only
        in those numbers (a model's calibration for beta and its counterfactuals for R, or
        two models' counterfactuals) share one compiled residual."""
        nums = np.array(
            [
                float(self.solve_for == "beta"),
                1.0 if self.R_fixed is None else float(self.R_fixed),
                0.5 if self.beta_fixed is None else float(self.beta_fixed),
            ]
        )
        sf = self.solve_for if self.financial == "autarky" else "traced"
        return replace(self, solve_for=sf, R_fixed=None, beta_fixed=None), nums

    def bind(self, nums):
        """The inverse of :meth:`split` inside a compiled function (``nums`` traced)."""
        return replace(self, R_fixed=nums[1], beta_fixed=nums[2], beta_flag=nums[0])

    @property
    def n(self) -> int:
        n_rate = self.M if self.financial == "autarky" else 1
        return (self.M - 1) + n_rate + (self.M if self.tariffs else 0)

    def prices(self, u):
        M = self.M
        w = jnp.concatenate([u[: M - 1], M - jnp.sum(u[: M - 1], keepdims=True)])
        k = M - 1
        if self.financial == "autarky":
            R, beta = u[k : k + M], jnp.asarray(self.beta_fixed)
            k += M
        elif self.solve_for == "traced":
            is_beta = self.beta_flag > 0.5
            R = jnp.broadcast_to(jnp.where(is_beta, self.R_fixed, u[k]), (M,))
            beta = jnp.where(is_beta, u[k], self.beta_fixed)
            k += 1
        elif self.solve_for == "R":
            R, beta = jnp.broadcast_to(u[k], (M,)), jnp.asarray(self.beta_fixed)
            k += 1
        else:
            R, beta = jnp.full((M,), self.R_fixed), u[k]
            k += 1
        T = u[k : k + M] if self.tariffs else jnp.zeros(M)
        return w, R, T, beta

    def pack(self, w, R, T, beta):
        M = self.M
        parts = [np.asarray(w, float)[: M - 1]]
        if self.financial == "autarky":
            parts.append(np.broadcast_to(np.asarray(R, float), (M,)))
        elif self.solve_for == "R":
            parts.append(np.atleast_1d(np.asarray(R, float).ravel()[0]))
        else:
            parts.append(np.atleast_1d(float(beta)))
        if self.tariffs:
            parts.append(np.asarray(T, float))
        return np.concatenate(parts)

    def unknown_names(self, countries) -> tuple:
        """Labels of the unknowns: ``w_<ISO>`` (M-1), ``R``/``beta`` or ``R_<ISO>``, ``T_<ISO>``."""
        c = list(countries)
        names = [f"w_{x}" for x in c[: self.M - 1]]
        if self.financial == "autarky":
            names += [f"R_{x}" for x in c]
        else:
            names.append(self.solve_for)
        if self.tariffs:
            names += [f"T_{x}" for x in c]
        return tuple(names)

    def residual_names(self, countries) -> tuple:
        """Labels of the excess demands: ``goods_<ISO>`` (all but the first), ``bonds`` or
        ``bonds_<ISO>``, ``tariff_budget_<ISO>``."""
        c = list(countries)
        names = [f"goods_{x}" for x in c[1:]]
        names += [f"bonds_{x}" for x in c] if self.financial == "autarky" else ["bonds"]
        if self.tariffs:
            names += [f"tariff_budget_{x}" for x in c]
        return tuple(names)


def excess_demands(layout: Layout, arrs, agg, T):
    r"""Relative excess demands: goods (country 1's dropped), bonds, tariff budgets.

    Goods: :math:`(\sum_i X_{ij} - Y_j)/Y_j` (exporters receive :math:`M_{ij}/(1+t_{ij})`);
    bonds: :math:`\sum_i A_i / \sum_i Y_i`, or :math:`A_i/Y_i` under autarky; tariff budgets:
    :math:`(T_i L_i - G_i)/Y_i`.
    """
    Y = agg["Y"]
    goods = (jnp.sum(agg["X"], axis=0) - Y) / Y
    parts = [goods[1:]]
    if layout.financial == "autarky":
        parts.append(agg["A"] / Y)
    else:
        parts.append(jnp.sum(agg["A"], keepdims=True) / jnp.sum(Y))
    if layout.tariffs:
        parts.append((T * arrs.L - agg["G"]) / Y)
    return jnp.concatenate(parts)


def residual_fn(arrs, layout: Layout, tol, max_iter, ttol=None):
    def f(u, x0, tol_now=None):
        w, R, T, beta = layout.prices(u)
        agg, sol = solve_households(arrs, w, R, T, beta, x0, tol, max_iter, ttol, tol_now)
        return excess_demands(layout, arrs, agg, T), (agg, sol)

    return f


#: Largest accepted residual of a stationary distribution (max |lam T - lam|, |sum - 1|);
#: the Krylov solver aims at 1e-14 (hatrade.core.distribution.TOL).
LAM_TOL = 1e-10


def check_households(sol, countries, max_iter):
    its = np.asarray(sol["iterations"])
    bad = np.where(its >= max_iter)[0]
    c = np.asarray(sol["state"].c)
    nan = np.where(~np.all(np.isfinite(c.reshape(c.shape[0], -1)), axis=1))[0]
    if len(nan):
        raise EquilibriumError(
            f"household problem produced NaN/inf consumption in {[countries[i] for i in nan]} "
            "(negative resources at the borrowing limit?)."
        )
    if len(bad):
        raise EquilibriumError(
            f"household problem did not converge in {max_iter} iterations for "
            f"{[countries[i] for i in bad]}."
        )
    lam = np.asarray(sol["lam"])
    res = np.asarray(sol["lam_residual"])
    bad = np.where(~(res <= LAM_TOL))[0]
    if len(bad):
        raise EquilibriumError(
            "stationary distribution not found for "
            f"{[countries[i] for i in bad]}: residual max|lam T - lam| "
            f"{', '.join(f'{res[i]:.1e}' for i in bad)} (tolerance {LAM_TOL:.0e}): the "
            "households' savings have no stationary distribution at these prices."
        )
    if lam.min() < -1e-10:
        bad = sorted({countries[i] for i in np.where(lam.min(axis=(1, 2)) < -1e-10)[0]})
        raise EquilibriumError(
            f"stationary distribution has negative mass ({lam.min():.2e}) in {bad}."
        )


def likely_causes(
    world: World, household: Household, income: IncomeProcess, R: float, beta: float | None
) -> list[str]:
    """The inputs that likely make a world have no equilibrium, each as a phrase naming the
    input (as in configs: ``[household] beta``, ``[world] tfp``; ``var_perm``/``var_iid``
    of :class:`~hatrade.core.params.Household`) and why; empty when none looks wrong.

    ``R`` and ``beta`` are the rate and discount factor the solve starts from (or holds).
    """
    causes = []
    if beta is not None and beta < 0.8:
        causes.append(
            f"[household] beta = {beta:g} is far below 1/R (usual values 0.9-0.99): "
            "households borrow to the limit at any interest rate near 1"
        )
    z = np.asarray(income.z, float)
    spread = float(z.max() / z.min()) if np.all(z > 0) and np.all(np.isfinite(z)) else np.inf
    if not spread < 1e3:
        causes.append(
            f"the income process (var_perm = {household.var_perm:g}, var_iid = "
            f"{household.var_iid:g}) spreads incomes over a factor {spread:.2g} (usual: "
            "below 100)"
        )
    low = float(np.min(z)) / float(np.mean(z)) if np.isfinite(spread) else 0.0
    interest = household.phi * min(max(R - 1.0, 0.01), 0.1)  # at a plausible rate
    if not causes and interest >= 0.5 * low:
        causes.append(
            f"[household] phi = {household.phi:g} is too large: the interest on debt at the "
            f"borrowing limit (phi*(R-1) = {interest:.3g} x TFP) reaches the lowest income "
            f"({low:.3g} x mean); usual values 0-2"
        )
    tfp = np.asarray(world.tfp, float)
    if tfp.min() < 1e-3 or tfp.max() > 1e3 or tfp.max() / tfp.min() > 1e3:
        causes.append(
            f"[world] tfp ranges over {tfp.min():.3g}..{tfp.max():.3g}, which makes prices "
            "(d w / A) and taste-shock scales extreme; use values near 1"
        )
    return causes


@contextlib.contextmanager
def explain_no_equilibrium(world, household, income, R, beta):
    """Context manager: an :class:`EquilibriumError` inside gets the inputs that are likely
    at fault (:func:`likely_causes`) appended to its message."""
    try:
        yield
    except EquilibriumError as err:
        causes = likely_causes(world, household, income, float(R), beta)
        if not causes:
            raise
        raise EquilibriumError(f"{err} Likely cause: {'; '.join(causes)}.") from err


def initial_states(arrs, w, R, T, beta):
    prm = country_params(arrs, w, R, T, beta)
    return jax.vmap(initial_state)(prm)
