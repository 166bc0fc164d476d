r"""Aggregation and world equilibrium (MODEL.md section 3).

For prices (wages w, interest rates R, transfers T, discount factor beta) every country's
household problem is solved (vmapped over countries), its stationary distribution found
and aggregated:

.. math::

    N_i = L_i \sum \lambda z, \quad Y_i = w_i N_i, \quad
    M_{ij} = L_i \sum_{a,z} \lambda \pi_j p_{ij} c_j, \quad
    A_i = L_i \sum_{a,z} \lambda \sum_j \pi_j a'_j .

Equilibrium: goods markets :math:`Y_j = \sum_i M_{ij}` (one dropped by Walras' law), bond
markets (one world market under financial globalization, one per country under autarky),
and rebated tariff revenue :math:`T_i L_i = \sum_j t_{ij}/(1+t_{ij}) M_{ij}`. Wages are
normalized to mean one. The solver is Newton's method with the exact Jacobian (forward-mode
AD through the household fixed point, implicit differentiation) and warm starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import enable_x64
from .distribution import stationary_distribution
from .household import (HHParams, HHState, Policies, euler_errors, initial_state, policies,
                        solve_fixed_point)
from .income import IncomeProcess, income_process
from .params import Household, ParameterError, World

__all__ = ["Equilibrium", "EquilibriumError", "Prices", "solve_equilibrium", "evaluate"]

log = logging.getLogger(__name__)


class EquilibriumError(RuntimeError):
    """The world equilibrium (or a household problem inside it) did not converge."""


@dataclass(frozen=True)
class Prices:
    """Equilibrium prices: wages (M,), R (M,) (equal entries under globalization),
    lump-sum transfers T (M,) and the discount factor beta."""

    w: np.ndarray
    R: np.ndarray
    T: np.ndarray
    beta: float


# ----------------------------------------------------------------------------- inputs

def model_arrays(world: World, hh: Household, inc: IncomeProcess):
    """Prices-independent arrays for a world, as JAX arrays."""
    A = jnp.asarray(world.tfp)
    scale = A ** (1.0 - hh.gamma)
    M = world.M
    return dict(
        A=A,
        L=jnp.asarray(world.labor),
        d=jnp.asarray(world.d),
        t=jnp.zeros((M, M)) if world.tariffs is None else jnp.asarray(world.tariffs),
        sigma=hh.sigma_eps * scale,
        psi=(hh.psi_slope * scale)[:, None, None] * jnp.asarray(inc.log_z_perm)[None, :, None]
        * jnp.eye(M)[:, None, :],  # (M, Nz, M): home variety only
        a_grid=jnp.linspace(-hh.phi * A, hh.a_max * A, hh.n_a, axis=-1),  # (M, Na)
        z=jnp.asarray(inc.z),
        Pz=jnp.asarray(inc.P),
        gamma=jnp.asarray(float(hh.gamma)),
    )


def country_params(arrs, w, R, T, beta) -> HHParams:
    """Household inputs of every country (leading axis: country) at the given prices."""
    M = w.shape[0]
    p = arrs["d"] * (w / arrs["A"])[None, :] * (1.0 + arrs["t"])
    bc = lambda x: jnp.broadcast_to(x, (M,) + jnp.shape(x))  # noqa: E731
    return HHParams(p=p, w=w, R=jnp.broadcast_to(R, (M,)), T=T, beta=bc(beta),
                    gamma=bc(arrs["gamma"]), sigma=arrs["sigma"], psi=arrs["psi"],
                    a_grid=arrs["a_grid"], z=bc(arrs["z"]), Pz=bc(arrs["Pz"]))


def _solve_countries(prm: HHParams, x0: HHState, tol: float, max_iter: int, ttol=None):
    return jax.vmap(lambda p, x: solve_fixed_point(p, x, tol, max_iter, ttol))(prm, x0)


def _aggregate(arrs, prm: HHParams, pol: Policies, lam):
    L = arrs["L"]
    N = L * jnp.einsum("kaz,z->k", lam, arrs["z"])  # lam (M, Na, Nz)
    Y = prm.w * N
    spend = pol.pi * pol.c * prm.p[:, None, None, :]
    Mij = L[:, None] * jnp.einsum("kaz,kazj->kj", lam, spend)
    Ap = L * jnp.einsum("kaz,kazj->k", lam, pol.pi * pol.a_p)
    G = jnp.sum(arrs["t"] / (1.0 + arrs["t"]) * Mij, axis=1)
    # X: spending at factory prices (net of tariffs), what exporters receive
    return dict(N=N, Y=Y, M=Mij, X=Mij / (1.0 + arrs["t"]), A=Ap, G=G)


def _world(arrs, w, R, T, beta, x0, tol, max_iter, ttol=None):
    """Solve households at prices and aggregate. Returns aggregates and solution pieces."""
    prm = country_params(arrs, w, R, T, beta)
    x, its = _solve_countries(prm, x0, tol, max_iter, ttol)
    pol = jax.vmap(policies)(x, prm)
    lam = jax.vmap(stationary_distribution)(pol.a_p, pol.pi, prm.a_grid, prm.Pz)
    agg = _aggregate(arrs, prm, pol, lam)
    return agg, dict(state=x, iterations=its, prm=prm, pol=pol, lam=lam)


# ----------------------------------------------------------------------------- unknowns

@dataclass(frozen=True)
class _Layout:
    """How the unknown vector maps to prices and which residuals are used."""

    M: int
    financial: str
    solve_for: str  # "R" or "beta"
    tariffs: bool
    R_fixed: float | None
    beta_fixed: float | None

    @property
    def n(self) -> int:
        n_rate = self.M if self.financial == "autarky" else 1
        return (self.M - 1) + n_rate + (self.M if self.tariffs else 0)

    def prices(self, u):
        M = self.M
        w = jnp.concatenate([u[: M - 1], M - jnp.sum(u[: M - 1], keepdims=True)])
        k = M - 1
        if self.financial == "autarky":
            R, beta = u[k: k + M], jnp.asarray(self.beta_fixed)
            k += M
        elif self.solve_for == "R":
            R, beta = jnp.broadcast_to(u[k], (M,)), jnp.asarray(self.beta_fixed)
            k += 1
        else:
            R, beta = jnp.full((M,), self.R_fixed), u[k]
            k += 1
        T = u[k: k + M] if self.tariffs else jnp.zeros(M)
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

    def residuals(self, agg):
        """Relative excess demands: goods (drop country 1), bonds, tariff budgets."""
        Y = agg["Y"]
        goods = (jnp.sum(agg["X"], axis=0) - Y) / Y  # exporters receive M_ij / (1 + t_ij)
        parts = [goods[1:]]
        if self.financial == "autarky":
            parts.append(agg["A"] / Y)
        else:
            parts.append(jnp.sum(agg["A"], keepdims=True) / jnp.sum(Y))
        if self.tariffs:
            parts.append(None)  # placeholder replaced by caller
        return parts


def _residual_fn(arrs, layout: _Layout, tol, max_iter, ttol=None):
    L = arrs["L"]

    def f(u, x0):
        w, R, T, beta = layout.prices(u)
        agg, sol = _world(arrs, w, R, T, beta, x0, tol, max_iter, ttol)
        parts = layout.residuals(agg)
        if layout.tariffs:
            parts[-1] = (T * L - agg["G"]) / agg["Y"]
        r = jnp.concatenate(parts)
        return r, (agg, sol)

    return f


# ----------------------------------------------------------------------------- results

@dataclass
class Equilibrium:
    """A solved (or evaluated) world.

    Attributes
    ----------
    world, household : the inputs.
    prices : :class:`Prices` (wages normalized to mean one).
    p : (M, M) goods prices p_ij.
    policies : :class:`hatrade.household.Policies`, arrays with a leading country axis.
    lam : (M, Na, Nz) stationary distributions.
    aggregates : dict of N, Y, M (spending matrix, at consumer prices incl. tariffs), X
        (the same at factory prices, M_ij / (1 + t_ij)), A (asset demand), G (tariff revenue).
    converged, iterations, residual : Newton diagnostics (max abs relative excess demand).
    household_solves, jacobians : work counters (world household solves; Jacobians).
    """

    world: World
    household: Household
    income: IncomeProcess
    prices: Prices
    p: np.ndarray
    policies: Policies
    lam: np.ndarray
    a_grid: np.ndarray
    aggregates: dict
    state: HHState
    converged: bool = True
    iterations: int = 0
    residual: float = float("nan")
    household_solves: int = 0
    jacobians: int = 0
    hh_iterations: np.ndarray | None = None
    jacobian: np.ndarray | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0

    # --- labeled outputs
    @property
    def countries(self):
        return self.world.countries

    @property
    def beta(self) -> float:
        return self.prices.beta

    @property
    def R(self):
        R = self.prices.R
        return float(R[0]) if self.world.financial == "globalization" else R

    @property
    def wages(self):
        import pandas as pd
        return pd.Series(self.prices.w, index=list(self.countries), name="wage")

    @property
    def spending(self) -> np.ndarray:
        return np.asarray(self.aggregates["M"])

    @property
    def trade_shares(self) -> np.ndarray:
        """s_ij = M_ij / sum_j M_ij (importer rows)."""
        Mij = self.spending
        return Mij / Mij.sum(axis=1, keepdims=True)

    @property
    def import_share(self):
        import pandas as pd
        return pd.Series(1.0 - np.diag(self.trade_shares), index=list(self.countries),
                         name="import_share")

    def trade_table(self):
        """Long table: importer, exporter, share, log_normalized_model (log s_ij/s_ii)."""
        import pandas as pd
        s = self.trade_shares
        c = list(self.countries)
        rows = [(c[i], c[j], s[i, j], np.log(s[i, j] / s[i, i]))
                for i in range(len(c)) for j in range(len(c))]
        return pd.DataFrame(rows, columns=["importer", "exporter", "share", "log_normalized_model"])

    def net_exports(self) -> np.ndarray:
        """X_i - IM_i: exports minus imports at factory prices (net of tariffs).

        In a stationary equilibrium this equals -(R_i - 1) A_i (MODEL.md 3).
        """
        Mij = np.asarray(self.aggregates.get("X", self.aggregates["M"]))
        return Mij.sum(axis=0) - np.diag(Mij) - (Mij.sum(axis=1) - np.diag(Mij))

    def euler_errors(self) -> np.ndarray:
        """log10 Euler-equation errors, (M, Na, Nz, M), NaN at the constraint."""
        prm = country_params(model_arrays(self.world, self.household, self.income),
                             jnp.asarray(self.prices.w), jnp.asarray(self.prices.R),
                             jnp.asarray(self.prices.T), jnp.asarray(self.prices.beta))
        return np.asarray(jax.vmap(euler_errors)(self.policies, prm))

    def to_dataset(self):
        """Policies, choice probabilities and distributions as an ``xarray.Dataset``."""
        import xarray as xr
        c = list(self.countries)
        Na, Nz = self.lam.shape[1:]
        dims3 = ("country", "a_index", "z_index", "variety")
        coords = {"country": c, "variety": c, "a_index": np.arange(1, Na + 1),
                  "z_index": np.arange(1, Nz + 1)}
        ds = xr.Dataset(
            {
                "consumption": (dims3, np.asarray(self.policies.c)),
                "assets_next": (dims3, np.asarray(self.policies.a_p)),
                "value": (dims3, np.asarray(self.policies.v)),
                "choice_prob": (dims3, np.asarray(self.policies.pi)),
                "V": (dims3[:3], np.asarray(self.policies.V)),
                "distribution": (dims3[:3], np.asarray(self.lam)),
                "assets": (("country", "a_index"), np.asarray(self.a_grid)),
                "z": (("z_index",), np.asarray(self.income.z)),
                "income_transition": (("z_index", "z_next"), np.asarray(self.income.P)),
                "price": (("country", "variety"), np.asarray(self.p)),
            },
            coords=coords,
        )
        ds["consumption"].attrs["description"] = "c(a,z,j): units of variety j"
        ds["assets_next"].attrs["description"] = "a'(a,z,j): next-period assets"
        ds["choice_prob"].attrs["description"] = "pi_j(a,z): logit choice probabilities"
        ds["distribution"].attrs["description"] = "stationary distribution lambda(a,z), sums to 1"
        ds.attrs.update({"beta": float(self.beta), "financial": self.world.financial})
        return ds

    def summary(self) -> dict:
        R = self.prices.R
        return {
            "beta": float(self.beta),
            "R": float(R[0]) if self.world.financial == "globalization"
            else {k: float(v) for k, v in zip(self.countries, R)},
            "wages": {k: float(v) for k, v in zip(self.countries, self.prices.w)},
            "import_share": {k: float(v) for k, v in self.import_share.items()},
            "converged": bool(self.converged),
            "newton_iterations": int(self.iterations),
            "max_excess_demand": float(self.residual),
            "household_solves": int(self.household_solves),
            "jacobians": int(self.jacobians),
            "seconds": float(self.seconds),
        }


# ----------------------------------------------------------------------------- solver

@partial(jax.jit, static_argnums=(3, 4, 5))
def _residual(u, x0, arrs, layout, tol, max_iter):
    return _residual_fn(arrs, layout, tol, max_iter)(u, x0)


@partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _jacobian(u, x0, dx0, arrs, layout, tol, max_iter, ttol=None):
    """Exact Jacobian of the residuals (forward mode, one direction per unknown).

    ``dx0`` (batched over directions, or None) warm-starts the implicit-differentiation
    tangents of the household states; the tangents found are returned for the next call.
    """
    f = _residual_fn(arrs, layout, tol, max_iter, ttol)
    n = u.shape[0]
    eye = jnp.eye(n, dtype=u.dtype)
    if dx0 is None:
        dx0 = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), x0)

    def one(du, dx):
        (r, (_, sol)), (dr, (_, dsol)) = jax.jvp(f, (u, x0), (du, dx))
        return dr, dsol["state"], r

    dr, dstate, r = jax.vmap(one, out_axes=(1, 0, None))(eye, dx0)
    return dr, r, dstate


def _exact_jacobian(jac, u, x, dx):
    J, _, dx = jac(jnp.asarray(u), x, dx)
    J = np.asarray(J)
    if not np.all(np.isfinite(J)):
        raise EquilibriumError("equilibrium Jacobian has non-finite entries; the household "
                               "solution is not differentiable here (check the inputs).")
    cond = np.linalg.cond(J)
    if cond > 1e14:
        log.warning("equilibrium Jacobian is near singular (condition number %.1e)", cond)
    return J, dx


def _check_households(sol, countries, max_iter):
    its = np.asarray(sol["iterations"])
    bad = np.where(its >= max_iter)[0]
    c = np.asarray(sol["state"].c)
    nan = np.where(~np.all(np.isfinite(c.reshape(c.shape[0], -1)), axis=1))[0]
    if len(nan):
        raise EquilibriumError(
            f"household problem produced NaN/inf consumption in {[countries[i] for i in nan]} "
            "(negative resources at the borrowing limit?). Try a smaller phi, prices closer "
            "to equilibrium, or check trade costs and TFP.")
    if len(bad):
        raise EquilibriumError(
            f"household problem did not converge in {max_iter} iterations for "
            f"{[countries[i] for i in bad]}. Try a larger hh_max_iter or a looser hh_tol.")
    lam = np.asarray(sol["lam"])
    if lam.min() < -1e-10:
        raise EquilibriumError(f"stationary distribution has negative mass ({lam.min():.2e}).")


def _initial_state_all(arrs, w, R, T, beta):
    prm = country_params(arrs, w, R, T, beta)
    return jax.vmap(initial_state)(prm)


_world_jit = jax.jit(_world, static_argnums=(6, 7))


@enable_x64
def evaluate(world: World, household: Household, wages, R=1.01, beta=None, T=None, *,
             income: IncomeProcess | None = None, hh_tol: float = 1e-10,
             hh_max_iter: int = 3000, state: HHState | None = None) -> Equilibrium:
    """Solve households and aggregate at given prices (no market clearing).

    Useful to inspect a published equilibrium (``data/calibration/*-prices.csv``).
    """
    inc = income or income_process(household)
    beta = household.beta if beta is None else beta
    if beta is None:
        raise ParameterError("beta is None: give beta (in (0, 1)) to evaluate at fixed prices.")
    M = world.M
    arrs = model_arrays(world, household, inc)
    w = jnp.asarray(np.asarray(wages, float))
    Rv = jnp.broadcast_to(jnp.asarray(R, dtype=float), (M,))
    Tv = jnp.zeros(M) if T is None else jnp.asarray(T, dtype=float)
    x0 = state if state is not None else _initial_state_all(arrs, w, Rv, Tv, beta)
    agg, sol = _world_jit(arrs, w, Rv, Tv, jnp.asarray(beta), x0, hh_tol, hh_max_iter)
    _check_households(sol, world.countries, hh_max_iter)
    return _make_result(world, household, inc, arrs, np.asarray(w), np.asarray(Rv), np.asarray(Tv),
                        float(beta), agg, sol)


def _make_result(world, household, inc, arrs, w, R, T, beta, agg, sol, **kw):
    return Equilibrium(
        world=world, household=household, income=inc,
        prices=Prices(w=np.asarray(w), R=np.asarray(R), T=np.asarray(T), beta=float(beta)),
        p=np.asarray(sol["prm"].p), policies=Policies(*[np.asarray(a) for a in sol["pol"]]),
        lam=np.asarray(sol["lam"]), a_grid=np.asarray(arrs["a_grid"]),
        aggregates={k: np.asarray(v) for k, v in agg.items()}, state=sol["state"],
        hh_iterations=np.asarray(sol["iterations"]), **kw)


@enable_x64
def solve_equilibrium(world: World, household: Household, *, solve_for: str | None = None,
                      R: float = 1.01, beta: float | None = None, wages=None,
                      R_guess: float | None = None, beta_guess: float = 0.93,
                      income: IncomeProcess | None = None, tol: float = 1e-10,
                      max_iter: int = 30, hh_tol: float = 1e-10, hh_max_iter: int = 3000,
                      state: HHState | None = None, T_guess=None, jacobian=None,
                      jac_tol: float = 1e-8, method: str = "newton",
                      progress: Callable[[int, float], None] | None = None) -> Equilibrium:
    r"""Solve the stationary world equilibrium.

    Unknowns (as in the paper): M-1 wages (the last follows from mean(w) = 1) and either the
    world interest rate R given beta (``solve_for="R"``, counterfactuals) or beta given R
    (``solve_for="beta"``, how the published calibration was made). Under financial autarky
    the unknowns are M-1 wages and one R per country (beta given). With tariffs, the
    per-household transfers T_i are unknowns too.

    Newton's method with the exact Jacobian (forward-mode AD through the household fixed
    point by implicit differentiation) and a backtracking line search; household problems
    are warm-started from the previous iterate.

    Parameters
    ----------
    world, household : model primitives.
    solve_for : {"R", "beta"} or None
        Default: "beta" when ``household.beta`` is None and no ``beta`` is given, else "R".
    R : float
        Interest rate held fixed when solving for beta.
    beta : float, optional
        Discount factor held fixed when solving for R (default ``household.beta``).
    wages : array (M,), optional
        Initial wages (rescaled to mean one). Default: all ones.
    R_guess, beta_guess : initial values of the unknown rate / discount factor.
    tol : float
        Convergence criterion: max abs relative excess demand (goods: (sum_i M_ij - Y_j)/Y_j;
        bonds: sum_i A_i / sum_i Y_i; tariff budgets relative to Y_i).
    max_iter : int
        Newton iterations.
    hh_tol, hh_max_iter : household fixed-point tolerance (sup-norm step in c and v) and cap.
    state : warm start for the household problems (e.g. ``other.state``).
    jacobian : array, optional
        A Jacobian of the excess demands to start from (``other.jacobian`` of a nearby
        equilibrium with the same unknowns): counterfactuals then need no new exact Jacobian.
        Between exact Jacobians, Broyden updates keep it current; an exact one is computed
        whenever progress stalls.
    method : {"newton", "broyden"}
        "newton" computes the exact Jacobian at every iterate (fewest household solves);
        "broyden" updates it by Broyden's rule and recomputes it only when progress stalls
        (fewer Jacobians; good for counterfactuals started from a nearby equilibrium with
        ``jacobian=``).
    jac_tol : float
        Relative tolerance of the implicit-differentiation tangents in exact Jacobians
        (they only steer Newton; the equilibrium is checked on the exact residuals).
    progress : callable(iteration, residual), optional.

    Returns
    -------
    Equilibrium

    Raises
    ------
    EquilibriumError
        When Newton fails to reach ``tol`` in ``max_iter`` iterations (with the residual
        history and advice) or a household problem fails.
    """
    t0 = time.perf_counter()
    inc = income or income_process(household)
    beta_fixed = beta if beta is not None else household.beta
    if solve_for is None:
        solve_for = "beta" if beta_fixed is None else "R"
    if solve_for not in ("R", "beta"):
        raise ParameterError(f"solve_for = {solve_for!r} is not allowed: use 'R' or 'beta'.")
    if solve_for == "R" and beta_fixed is None:
        raise ParameterError("solve_for='R' needs beta: set household.beta or pass beta=...")
    if solve_for == "beta" and world.financial == "autarky":
        raise ParameterError("financial='autarky' has one bond market per country: solve for "
                             "R_i given beta (solve_for='R'), not for a single beta.")
    if not (R > 0):
        raise ParameterError(f"R = {R!r} is not allowed: R must be > 0.")
    if method not in ("newton", "broyden"):
        raise ParameterError(f"method = {method!r} is not allowed: use 'newton' or 'broyden'.")
    M = world.M
    tariffs = world.tariffs is not None and bool(np.any(world.tariffs > 0))
    layout = _Layout(M=M, financial=world.financial, solve_for=solve_for, tariffs=tariffs,
                     R_fixed=float(R) if solve_for == "beta" else None,
                     beta_fixed=None if solve_for == "beta" else float(beta_fixed))
    arrs = model_arrays(world, household, inc)
    w0 = np.ones(M) if wages is None else np.asarray(wages, float)
    if w0.shape != (M,) or np.any(w0 <= 0):
        raise ParameterError(f"wages guess must be {M} positive numbers.")
    w0 = w0 / w0.mean()
    if R_guess is None:
        R_guess = float(R) if solve_for == "beta" else 1.0 / float(beta_fixed) - 0.06
    T0 = np.zeros(M) if T_guess is None else np.asarray(T_guess, float)
    u = layout.pack(w0, R_guess if solve_for == "R" else R, T0,
                    beta_guess if solve_for == "beta" else beta_fixed)
    f = lambda u, x0: _residual(u, x0, arrs, layout, hh_tol, hh_max_iter)  # noqa: E731
    jac = lambda u, x0, dx0: _jacobian(u, x0, dx0, arrs, layout, hh_tol, hh_max_iter,  # noqa: E731
                                       jac_tol)
    w, Rv, Tv, b = layout.prices(jnp.asarray(u))
    x = state if state is not None else _initial_state_all(arrs, w, Rv, Tv, b)

    r, (agg, sol) = f(jnp.asarray(u), x)
    n_solves, n_jac = 1, 0
    _check_households(sol, world.countries, hh_max_iter)
    x = sol["state"]
    err = float(jnp.max(jnp.abs(r)))
    history = [err]
    log.info("equilibrium: start, max excess demand %.3e", err)
    if progress:
        progress(0, err)
    it = 0
    J, fresh, dx = None, False, None
    if jacobian is not None and np.shape(jacobian) == (layout.n, layout.n):
        J = np.array(jacobian, float)
    while err >= tol:
        if it >= max_iter:
            raise EquilibriumError(
                f"world equilibrium did not converge: max excess demand {err:.3e} after {it} "
                f"Newton iterations (tol {tol:.1e}); history {[f'{h:.2e}' for h in history]}. "
                "Try a better starting point (wages, R_guess/beta_guess), more iterations, or "
                "check that the world has an equilibrium (beta*R < 1, positive resources).")
        if J is None:
            J, dx = _exact_jacobian(jac, u, x, dx)
            n_jac += 1
            fresh = True
        du = np.linalg.solve(J, -np.asarray(r))
        step, accepted = 1.0, False
        for _ in range(12):
            u_try = u + step * du
            w_t, R_t, _, b_t = layout.prices(jnp.asarray(u_try))
            if np.all(np.asarray(w_t) > 0) and np.all(np.asarray(R_t) > 0) and 0 < float(b_t) < 1:
                r_t, (agg_t, sol_t) = f(jnp.asarray(u_try), x)
                n_solves += 1
                e_t = float(jnp.max(jnp.abs(r_t)))
                if np.isfinite(e_t) and (e_t < err * (1 - 1e-4 * step) or e_t < tol):
                    accepted = True
                    break
            step *= 0.5
            if not fresh:  # a quasi-Newton step that does not descend: get the exact Jacobian
                break
        if not accepted:
            if not fresh:
                J = None
                continue
            raise EquilibriumError(
                f"Newton line search failed at iteration {it + 1}: max excess demand {err:.3e} "
                f"could not be reduced (history {[f'{h:.2e}' for h in history]}). Try another "
                "starting point or a tighter hh_tol.")
        # Broyden's update keeps the Jacobian current between exact evaluations
        s_u = u_try - u
        J = J + np.outer(np.asarray(r_t) - np.asarray(r) - J @ s_u, s_u) / (s_u @ s_u)
        if method == "newton" or (not fresh and e_t > 0.2 * err):
            J = None  # Newton, or slow progress on an updated Jacobian: recompute it exactly
        fresh = False
        u, r, agg, sol, err = u_try, r_t, agg_t, sol_t, e_t
        _check_households(sol, world.countries, hh_max_iter)
        x = sol["state"]
        it += 1
        history.append(err)
        log.info("equilibrium: Newton %d, step %.3g, max excess demand %.3e", it, step, err)
        if progress:
            progress(it, err)
    w, Rv, Tv, b = (np.asarray(a) for a in layout.prices(jnp.asarray(u)))
    return _make_result(world, household, inc, arrs, w, Rv, Tv, float(b), agg, sol,
                        converged=True, iterations=it, residual=err, household_solves=n_solves,
                        jacobians=n_jac, history=history, seconds=time.perf_counter() - t0,
                        jacobian=None if J is None else np.array(J))
