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
normalized to mean one. The solver is a Newton-Broyden iteration whose Jacobian is composed
from the household-block Jacobian (:mod:`hatrade.core.jacobian`: forward-mode AD through the
household fixed point by implicit differentiation, M + 2 directions for all countries at
once) and the known price and market-clearing maps, with warm starts throughout.
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

from hatrade.core.errors import EquilibriumError, ParameterError
from hatrade.core.household import HHState, Policies, euler_errors
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.markets import (Layout, check_households, country_params, initial_states,
                                  model_arrays, residual_fn, solve_households)
from hatrade.core.params import Household, World
from hatrade.core.x64 import enable_x64

__all__ = ["Equilibrium", "EquilibriumError", "EquilibriumJacobian", "Prices", "solve_equilibrium",
           "evaluate"]

log = logging.getLogger(__name__)

# Solver tuning: warm-start household solves from the first-order prediction of the states
# (household-block tangents); the cost of one Jacobian direction in household-iteration
# equivalents (a world EGM step for all countries = 1; measured on the 19-country model at
# jac_tol = 1e-2 with cold tangents: the tangent iterations, each dearer than a primal
# step, plus the policies' and distribution's tangents), used by method="broyden" to decide
# when a new Jacobian pays for itself.
_PREDICT = True
_DIRECTION_COST = 100.0
# coarse stage (solve_equilibrium's coarse_n_a): the shifted coarse equilibrium is solved to
# _COARSE_TOL (the full solve corrects the rest) with Jacobian tangents to _COARSE_JAC_TOL
# (they only steer the coarse steps; the Jacobian handed to the full solve is made at the
# coarse solution to jac_tol); no coarse stage when the full model's excess demands at the
# start are already below _COARSE_MIN
_COARSE_TOL = 1e-2
_COARSE_MIN = 5e-2
_COARSE_JAC_TOL = 0.1
# inexact household solves: while the max excess demand is err, households are solved to
# _INEXACT * err (within [hh_tol, _INEXACT_MAX]; their error moves the excess demands by
# about the tolerance), continued when a solve's own excess demands call for a tighter one
# (by more than _INEXACT_SLACK) and always to hh_tol before convergence is declared
_INEXACT = 1e-3
_INEXACT_MAX = 1e-3
_INEXACT_SLACK = 30.0


def _hh_tol_for(err: float, hh_tol: float) -> float:
    """The household tolerance that a max excess demand ``err`` calls for."""
    if not _INEXACT or not np.isfinite(err):
        return hh_tol
    return max(hh_tol, min(_INEXACT * err, _INEXACT_MAX))



@dataclass(frozen=True)
class Prices:
    """Equilibrium prices: wages (M,), R (M,) (equal entries under globalization),
    lump-sum transfers T (M,) and the discount factor beta."""

    w: np.ndarray
    R: np.ndarray
    T: np.ndarray
    beta: float


@dataclass(frozen=True, eq=False)
class EquilibriumJacobian:
    """Jacobian of the excess demands in the unknowns, labeled.

    ``matrix[r, k]`` = d excess demand ``residuals[r]`` / d unknown ``unknowns[k]`` (the
    solver's unknowns and relative excess demands, see :func:`solve_equilibrium`). Pass it as
    ``jacobian=`` to a solve with the same unknowns (the labels are checked). Behaves as an
    array (``np.asarray(J)``).
    """

    matrix: np.ndarray
    unknowns: tuple
    residuals: tuple

    def __post_init__(self):
        n = len(self.unknowns)
        if np.shape(self.matrix) != (len(self.residuals), n):
            raise ParameterError(f"Jacobian has shape {np.shape(self.matrix)}; its labels need "
                                 f"({len(self.residuals)}, {n}).")

    @property
    def shape(self):
        return np.shape(self.matrix)

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.matrix, dtype=dtype)
        return a.copy() if copy else a

    def to_frame(self):
        """``pandas.DataFrame``: rows the excess demands, columns the unknowns."""
        import pandas as pd
        return pd.DataFrame(np.asarray(self.matrix), index=list(self.residuals),
                            columns=list(self.unknowns))


# ----------------------------------------------------------------------------- results

@dataclass
class Equilibrium:
    """A solved (or evaluated) world.

    Attributes
    ----------
    world, household : the inputs.
    prices : :class:`Prices` (wages normalized to mean one).
    p : (M, M) goods prices p_ij.
    policies : :class:`hatrade.core.household.Policies`, arrays with a leading country axis.
    lam : (M, Na, Nz) stationary distributions.
    aggregates : dict of N, Y, M (spending matrix, at consumer prices incl. tariffs), X
        (the same at factory prices, M_ij / (1 + t_ij)), A (asset demand), G (tariff revenue).
    converged, iterations, residual : Newton diagnostics (max abs relative excess demand).
    household_solves : primal world household solves (all countries, with distributions).
    jacobians : equilibrium Jacobians computed (household-block Jacobians composed with the
        market-clearing maps, :mod:`hatrade.core.jacobian`).
    jacobian_directions : forward-mode directions in those Jacobians, all together (each a
        tangent solve through every country's household problem).
    jacobian : :class:`EquilibriumJacobian` at the solution (Broyden-updated), or None.
    seconds, seconds_household, seconds_jacobian : wall time of the solve, and the parts in
        household solves and in Jacobians.
    coarse_household_solves, coarse_jacobians, seconds_coarse : the coarse stage's world
        household solves and Jacobians on the coarse grid (``solve_equilibrium``'s
        ``coarse_n_a``; not counted in the fields above) and its wall time.
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
    jacobian: EquilibriumJacobian | np.ndarray | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0
    jacobian_directions: int = 0
    seconds_household: float = 0.0
    seconds_jacobian: float = 0.0
    coarse_household_solves: int = 0
    coarse_jacobians: int = 0
    seconds_coarse: float = 0.0

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
            "jacobian_directions": int(self.jacobian_directions),
            "seconds": float(self.seconds),
        }


# ----------------------------------------------------------------------------- solver

def _residual(u, x0, arrs, layout, tol, max_iter, tol_now=None):
    """Excess demands at the unknowns ``u`` (households from ``x0``, solved to ``tol_now``,
    default ``tol``), compiled once per static layout key (:meth:`Layout.split`); not for
    differentiation (see :func:`_jacobian`)."""
    key, nums = layout.split()
    tol_now = np.float64(tol if tol_now is None else tol_now)
    return _residual_jit(u, x0, nums, arrs, tol_now, key, tol, max_iter)


@partial(jax.jit, static_argnums=(5, 6, 7))
def _residual_jit(u, x0, nums, arrs, tol_now, key, tol, max_iter):
    return residual_fn(arrs, key.bind(nums), tol, max_iter)(u, x0, tol_now)


def _jacobian(u, x0, dx0, arrs, layout, tol, max_iter, ttol=None):
    """Reference Jacobian of the residuals: forward mode through the whole world, one
    direction per unknown (the solver composes it from the household block instead,
    :func:`hatrade.core.jacobian.equilibrium_jacobian`; tests check that the two agree).

    ``dx0`` (batched over directions, or None) warm-starts the implicit-differentiation
    tangents of the household states; the tangents found are returned for the next call.
    """
    key, nums = layout.split()
    return _jacobian_jit(u, x0, dx0, nums, arrs, key, tol, max_iter, ttol)


@partial(jax.jit, static_argnums=(5, 6, 7, 8))
def _jacobian_jit(u, x0, dx0, nums, arrs, key, tol, max_iter, ttol=None):
    f = residual_fn(arrs, key.bind(nums), tol, max_iter, ttol)
    n = u.shape[0]
    eye = jnp.eye(n, dtype=u.dtype)
    if dx0 is None:
        dx0 = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape, a.dtype), x0)

    def one(du, dx):
        (r, (_, sol)), (dr, (_, dsol)) = jax.jvp(f, (u, x0), (du, dx))
        return dr, dsol["state"], r

    dr, dstate, r = jax.vmap(one, out_axes=(1, 0, None))(eye, dx0)
    return dr, r, dstate


def _checked_jacobian(jacobian, layout: Layout, countries):
    """A user's ``jacobian=`` as an (n, n) array, after checking that it fits the unknowns."""
    if jacobian is None:
        return None
    want = layout.unknown_names(countries)
    if isinstance(jacobian, EquilibriumJacobian):
        if tuple(jacobian.unknowns) != want:
            raise ParameterError(
                f"jacobian= is for the unknowns ({', '.join(jacobian.unknowns)}) but this solve "
                f"has ({', '.join(want)}): pass the Jacobian of an equilibrium solved for the "
                "same unknowns (same countries, solve_for, financial regime and tariffs), or "
                "none.")
    J = np.array(jacobian, dtype=float)
    if J.shape != (layout.n, layout.n):
        raise ParameterError(f"jacobian= has shape {J.shape}; this solve has {layout.n} unknowns "
                             f"({', '.join(want)}).")
    if not np.all(np.isfinite(J)):
        raise ParameterError("jacobian= has non-finite entries.")
    if not isinstance(jacobian, EquilibriumJacobian):
        log.debug("jacobian= is an unlabeled array: only its shape could be checked")
    return J



_world_jit = jax.jit(solve_households, static_argnums=(6, 7))


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
    x0 = state if state is not None else initial_states(arrs, w, Rv, Tv, beta)
    agg, sol = _world_jit(arrs, w, Rv, Tv, jnp.asarray(beta), x0, hh_tol, hh_max_iter)
    check_households(sol, world.countries, hh_max_iter)
    return _make_result(world, household, inc, arrs, np.asarray(w), np.asarray(Rv), np.asarray(Tv),
                        float(beta), agg, sol)


def _make_result(world, household, inc, arrs, w, R, T, beta, agg, sol, **kw):
    return Equilibrium(
        world=world, household=household, income=inc,
        prices=Prices(w=np.asarray(w), R=np.asarray(R), T=np.asarray(T), beta=float(beta)),
        p=np.asarray(sol["prm"].p), policies=Policies(*[np.asarray(a) for a in sol["pol"]]),
        lam=np.asarray(sol["lam"]), a_grid=np.asarray(arrs.a_grid),
        aggregates={k: np.asarray(v) for k, v in agg.items()}, state=sol["state"],
        hh_iterations=np.asarray(sol["iterations"]), **kw)


@enable_x64
def solve_equilibrium(world: World, household: Household, *, solve_for: str | None = None,
                      R: float = 1.01, beta: float | None = None, wages=None,
                      R_guess: float | None = None, beta_guess: float = 0.93,
                      income: IncomeProcess | None = None, tol: float = 1e-10,
                      max_iter: int = 30, hh_tol: float = 1e-10, hh_max_iter: int = 3000,
                      state: HHState | None = None, T_guess=None, jacobian=None,
                      jac_tol: float = 1e-2, method: str = "broyden",
                      coarse_n_a: int | None = 30,
                      progress: Callable[[int, float], None] | None = None) -> Equilibrium:
    r"""Solve the stationary world equilibrium.

    Unknowns (as in the paper): M-1 wages (the last follows from mean(w) = 1) and either the
    world interest rate R given beta (``solve_for="R"``, counterfactuals) or beta given R
    (``solve_for="beta"``, how the published calibration was made). Under financial autarky
    the unknowns are M-1 wages and one R per country (beta given). With tariffs, the
    per-household transfers T_i are unknowns too.

    Newton-type iteration with a backtracking line search. The Jacobian of the excess
    demands is composed from the household-block Jacobian (:mod:`hatrade.core.jacobian`): every
    country's spending and asset demand differentiated with respect to its own log prices,
    income, rate or beta and transfer, M + 2 forward-mode directions for all countries at
    once (M + 3 with tariffs; implicit differentiation of the household fixed point, the
    stationary distribution re-solved), then the chain rule through
    :math:`p_{ij} = d_{ij} w_j (1+t_{ij})/A_j` and market clearing. Between such Jacobians
    Broyden's update keeps it current. Household problems are warm-started from the first-
    order prediction of their solution (previous states plus the block's state tangents
    times the price change), and each new Jacobian from the previous one's tangents.

    Two devices make a solve from far away cheap (together about 3 times faster from the
    author's initial prices on the 19-country model, ``benchmarks/bench_core.py
    --equilibrium``): a coarse stage (``coarse_n_a``, below) finds the first step and the
    first Jacobian on a coarse asset grid, and household problems are solved inexactly
    while the excess demands are large: to :math:`10^{-3}` times the current max excess
    demand (at most :math:`10^{-3}`, at least ``hh_tol``; a household tolerance
    :math:`\epsilon` moves the excess demands by about :math:`\epsilon`), continued to a
    tighter tolerance when a step's excess demands call for one, and always to ``hh_tol``
    before convergence is declared, so the result (prices, states, residual) is that of
    exact household solves.

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
    hh_tol, hh_max_iter : household fixed-point tolerance (sup-norm step in c and v) at the
        solution (early iterates use looser ones, see above) and the iteration cap.
    state : warm start for the household problems (e.g. ``other.state``).
    jacobian : EquilibriumJacobian or array, optional
        A Jacobian of the excess demands to start from (``other.jacobian`` of a nearby
        equilibrium solved for the same unknowns): counterfactuals then often need no new
        household-block Jacobian. An :class:`EquilibriumJacobian` is checked against this
        solve's unknowns (names of the wages, R or beta, R_i, T_i) and rejected with a
        :class:`~hatrade.core.params.ParameterError` when they differ (e.g. one computed for beta
        given to a solve for R); a plain array (e.g. from a file) can only be checked for its
        shape. Broyden updates keep it current; a new Jacobian is computed when it stalls.
    method : {"broyden", "newton"}
        "broyden" (default): Broyden updates, a new household-block Jacobian only when a step
        on the updated one stalls (leaves more than half the excess demand) or fails, so
        usually one or two per solve. "newton": a new Jacobian at every iterate (fewest
        household solves, most Jacobian work).
    jac_tol : float
        Relative tolerance of the implicit-differentiation tangents in the Jacobians (they
        only steer the iteration; the equilibrium is checked on exact residuals).
    coarse_n_a : int or None
        Asset grid of the coarse stage (default 30; None: no coarse stage). When no
        ``jacobian`` is given and the excess demands at the start exceed 5e-2, the first
        step comes from a coarse copy of the model (``household.n_a`` replaced by
        ``coarse_n_a``; only when ``household.n_a`` is at least twice as large), a two-grid
        defect correction as in full-approximation multigrid: the coarse excess demands are
        shifted by a constant to equal the full model's at the start, the shifted coarse
        equilibrium is solved loosely (to 1e-2; with 30 points against the published 100,
        world household solves and Jacobians cost a fraction of the full ones), and its
        solution is the full
        solve's first trial point, with a coarse Jacobian made there as its first Jacobian.
        The full solve then corrects the grid's effect in a few Broyden steps. The result is
        checked on the full model's excess demands as always; when the coarse stage fails or
        its step does not reduce them, the solve goes on as without it (a full Jacobian).
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
    if coarse_n_a is not None and not (isinstance(coarse_n_a, (int, np.integer))
                                       and not isinstance(coarse_n_a, bool) and coarse_n_a >= 3):
        raise ParameterError(f"coarse_n_a = {coarse_n_a!r} is not allowed: use an integer >= 3 "
                             "(the coarse stage's asset grid points) or None (no coarse stage).")
    M = world.M
    tariffs = world.has_tariffs
    layout = Layout(M=M, financial=world.financial, solve_for=solve_for, tariffs=tariffs,
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
    J = _checked_jacobian(jacobian, layout, world.countries)
    w, Rv, Tv, b = layout.prices(jnp.asarray(u))
    x = state if state is not None else initial_states(arrs, w, Rv, Tv, b)
    return _solve(world, household, inc, arrs, layout, u, x, J, tol=tol, max_iter=max_iter,
                  hh_tol=hh_tol, hh_max_iter=hh_max_iter, jac_tol=jac_tol, method=method,
                  coarse_n_a=coarse_n_a, progress=progress, t0=t0)


def _solve(world, household, inc, arrs, layout, u, x, J, *, tol, max_iter, hh_tol, hh_max_iter,
           jac_tol, method, coarse_n_a=None, progress=None, match=None, t0=None, stash=None):
    """The Newton-Broyden iteration of :func:`solve_equilibrium` from the unknowns ``u`` and
    household states ``x``, with Jacobian ``J`` (array or None).

    ``match`` (the coarse stage's own solve): excess demands that this model's are shifted to
    equal at ``u``; the shifted residuals are the ones solved (and reported). ``stash`` (a
    dict, optional) receives the last household block under ``"block"`` (warm tangents).
    """
    from hatrade.core.jacobian import (direction_rows, equilibrium_jacobian, household_block,
                           solver_directions)

    t0 = time.perf_counter() if t0 is None else t0
    M = world.M

    def f0(u, x0, tol_now=hh_tol):
        return _residual(u, x0, arrs, layout, hh_tol, hh_max_iter, tol_now)

    f = f0
    rows = direction_rows(M, solver_directions(layout))
    n_solves, n_jac, n_dirs = 0, 0, 0
    t_solves, t_jac = 0.0, 0.0

    def refine(u_, r_, aux, tol_used):
        """Household solves are inexact while the excess demands are large (to
        ``_hh_tol_for``); continue a solve (from its states) to the tolerance its excess
        demands call for, and to ``hh_tol`` before convergence is declared."""
        nonlocal n_solves
        while True:
            e_ = float(jnp.max(jnp.abs(r_)))
            final = e_ < tol and match is None  # the coarse stage needs no exact end
            if not np.isfinite(e_) or tol_used <= hh_tol or (
                    not final and tol_used <= max(hh_tol, _INEXACT_SLACK * _INEXACT * e_)):
                return r_, aux, e_
            tol_used = hh_tol if final else _hh_tol_for(e_, hh_tol)
            r_, aux = f(jnp.asarray(u_), aux[1]["state"], tol_used)
            n_solves += 1
            log.debug("equilibrium: household solve continued to tolerance %.1e: max excess "
                      "demand %.3e", tol_used, float(jnp.max(jnp.abs(r_))))

    t1 = time.perf_counter()
    tol_now = max(hh_tol, _INEXACT_MAX) if _INEXACT else hh_tol
    r, (agg, sol) = f(jnp.asarray(u), x, tol_now)
    n_solves += 1
    if match is not None:  # the coarse stage (both residuals to the first solve's tolerance)
        shift = jnp.asarray(match) - r
        r = r + shift

        def f(u, x0, tol_now=hh_tol):
            r_, aux = f0(u, x0, tol_now)
            return r_ + shift, aux
    else:
        r, (agg, sol), _ = refine(u, r, (agg, sol), tol_now)
    t_solves += time.perf_counter() - t1
    check_households(sol, world.countries, hh_max_iter)
    x = sol["state"]
    err = float(jnp.max(jnp.abs(r)))
    history = [err]
    log.info("equilibrium: start, max excess demand %.3e", err)
    if progress:
        progress(0, err)
    du_first, coarse = None, {}
    if (coarse_n_a is not None and J is None and err >= max(tol, _COARSE_MIN)
            and household.n_a >= 2 * coarse_n_a):
        coarse = _coarse_stage(world, household, inc, layout, u, r, coarse_n_a, tol=tol,
                               hh_tol=hh_tol, hh_max_iter=hh_max_iter, jac_tol=jac_tol)
        if coarse.get("u") is not None:
            du_first, J = coarse["u"] - u, coarse["J"]
    it = 0
    fresh, block, J_last = False, None, None
    jac_err, jac_steps = err, 0  # residual where the current Jacobian was made, steps since
    while err >= tol:
        if it >= max_iter:
            raise EquilibriumError(
                f"world equilibrium did not converge: max excess demand {err:.3e} after {it} "
                f"Newton iterations (tol {tol:.1e}); history {[f'{h:.2e}' for h in history]}. "
                "Try a better starting point (wages, R_guess/beta_guess), more iterations, or "
                "check that the world has an equilibrium (beta*R < 1, positive resources).")
        if J is None:
            t1 = time.perf_counter()
            wp, Rp, Tp, bp = layout.prices(jnp.asarray(u))
            block = household_block(arrs, wp, Rp, Tp, bp, x, rows,
                                    tangents=None if block is None else block.tangents,
                                    tol=hh_tol, max_iter=hh_max_iter, tangent_tol=jac_tol)
            J = equilibrium_jacobian(arrs, layout, u, agg, block)
            n_jac += 1
            n_dirs += len(rows)
            t_jac += time.perf_counter() - t1
            log.debug("equilibrium: Jacobian %d (%d household-block directions), %.2f s", n_jac,
                      len(rows), time.perf_counter() - t1)
            fresh = True
            jac_err, jac_steps = err, 0
            if not np.all(np.isfinite(J)):
                raise EquilibriumError("equilibrium Jacobian has non-finite entries; the "
                                       "household solution is not differentiable here (check "
                                       "the inputs).")
            cond = np.linalg.cond(J)
            if cond > 1e14:
                log.warning("equilibrium Jacobian is near singular (condition number %.1e)", cond)
        try:
            coarse_step = du_first is not None
            if coarse_step:  # the coarse stage's step
                du, du_first = du_first, None
            else:
                du = np.linalg.solve(J, -np.asarray(r))
        except np.linalg.LinAlgError:
            if not fresh:
                J = None
                continue
            raise EquilibriumError(
                f"equilibrium Jacobian is singular at iteration {it + 1} (max excess demand "
                f"{err:.3e}): the unknowns do not move the markets independently. Check the "
                "world (trade costs, TFP, labor) or start elsewhere.") from None
        step, accepted = 1.0, False
        tol_now = _hh_tol_for(err, hh_tol)
        for _ in range(12):
            u_try = u + step * du
            w_t, R_t, _, b_t = layout.prices(jnp.asarray(u_try))
            if np.all(np.asarray(w_t) > 0) and np.all(np.asarray(R_t) > 0) and 0 < float(b_t) < 1:
                t1 = time.perf_counter()
                r_t, (agg_t, sol_t) = _solve_at(partial(f, tol_now=tol_now), layout, u, u_try,
                                                x, block, hh_max_iter)
                n_solves += sol_t.pop("solves")
                r_t, (agg_t, sol_t), e_t = refine(u_try, r_t, (agg_t, sol_t), tol_now)
                t_solves += time.perf_counter() - t1
                log.debug("equilibrium: household solve at step %.3g: max excess demand %.3e, "
                          "%d household iterations (most in a country), %.2f s", step, e_t,
                          int(np.max(np.asarray(sol_t["iterations"]))),
                          time.perf_counter() - t1)
                if np.isfinite(e_t) and (e_t < err * (1 - 1e-4 * step) or e_t < tol):
                    accepted = True
                    break
            step *= 0.5
            if not fresh:  # a quasi-Newton step that does not descend: get a new Jacobian
                break
        if not accepted:
            if not fresh:
                J = None
                continue
            raise EquilibriumError(
                f"Newton line search failed at iteration {it + 1}: max excess demand {err:.3e} "
                f"could not be reduced (history {[f'{h:.2e}' for h in history]}). Try another "
                "starting point or a tighter hh_tol.")
        # Broyden's update keeps the Jacobian current between household-block Jacobians
        # (not from the coarse stage's step: its secant is long and mostly nonlinearity, and
        # updating on it spoils the coarse Jacobian for the small steps that follow)
        s_u = u_try - u
        if not coarse_step:
            J = J + np.outer(np.asarray(r_t) - np.asarray(r) - J @ s_u, s_u) / (s_u @ s_u)
        J_last = J
        jac_steps += 1
        if method == "newton" or (not fresh and _worth_new_jacobian(
                jac_err, e_t, tol, int(np.max(np.asarray(sol_t["iterations"]))), len(rows),
                warm=block is not None, steps=jac_steps)):
            J = None  # Newton, or slow progress on an updated Jacobian: recompute it
        fresh = False
        u, r, agg, sol, err = u_try, r_t, agg_t, sol_t, e_t
        check_households(sol, world.countries, hh_max_iter)
        x = sol["state"]
        it += 1
        history.append(err)
        log.info("equilibrium: Newton %d, step %.3g, max excess demand %.3e", it, step, err)
        if progress:
            progress(it, err)
    if stash is not None:
        stash["block"] = block
    w, Rv, Tv, b = (np.asarray(a) for a in layout.prices(jnp.asarray(u)))
    if J_last is None and J is not None:
        J_last = J
    jac_out = None if J_last is None else EquilibriumJacobian(
        np.array(J_last), layout.unknown_names(world.countries),
        layout.residual_names(world.countries))
    return _make_result(world, household, inc, arrs, w, Rv, Tv, float(b), agg, sol,
                        converged=True, iterations=it, residual=err, household_solves=n_solves,
                        jacobians=n_jac, jacobian_directions=n_dirs, history=history,
                        seconds=time.perf_counter() - t0, jacobian=jac_out,
                        seconds_household=t_solves, seconds_jacobian=t_jac,
                        coarse_household_solves=coarse.get("household_solves", 0),
                        coarse_jacobians=coarse.get("jacobians", 0),
                        seconds_coarse=coarse.get("seconds", 0.0))


def _coarse_stage(world, household, inc, layout, u, r, n_a, *, tol, hh_tol, hh_max_iter,
                  jac_tol) -> dict:
    """The first step of a solve from a coarse copy of the model (``coarse_n_a``).

    Solves the coarse model's equilibrium with its excess demands shifted by the constant
    that makes them equal the full model's ``r`` at ``u`` (defect correction). Returns a dict
    with the coarse solution ``u``, a coarse Jacobian ``J`` made there, ``household_solves``,
    ``jacobians`` and ``seconds``; no ``u`` when the stage failed (logged) or had nothing to
    do.
    """
    from hatrade.core.jacobian import (direction_rows, equilibrium_jacobian, household_block,
                           solver_directions)

    t1 = time.perf_counter()
    hh_c = household.replace(n_a=n_a)
    arrs_c = model_arrays(world, hh_c, inc)
    w, Rv, Tv, b = layout.prices(jnp.asarray(u))
    x_c = initial_states(arrs_c, w, Rv, Tv, b)
    stash = {}
    try:
        eq_c = _solve(world, hh_c, inc, arrs_c, layout, u, x_c, None,
                      tol=max(tol, _COARSE_TOL), max_iter=30, hh_tol=hh_tol,
                      hh_max_iter=hh_max_iter, jac_tol=max(jac_tol, _COARSE_JAC_TOL),
                      method="broyden", match=r, stash=stash)
    except EquilibriumError as e:
        log.info("equilibrium: coarse stage (n_a = %d) failed, solving on the full grid "
                 "only: %s", n_a, e)
        return {"seconds": time.perf_counter() - t1}
    if eq_c.iterations == 0:
        return {"household_solves": eq_c.household_solves, "seconds": time.perf_counter() - t1}
    # a fresh coarse Jacobian at the coarse solution (the Broyden-updated one satisfies the
    # coarse steps' secants but can be far off in other directions)
    p = eq_c.prices
    u_c = layout.pack(p.w, p.R, p.T, p.beta)
    block = household_block(arrs_c, jnp.asarray(p.w), jnp.asarray(p.R), jnp.asarray(p.T),
                            jnp.asarray(p.beta), eq_c.state,
                            direction_rows(world.M, solver_directions(layout)), tol=hh_tol,
                            max_iter=hh_max_iter, tangent_tol=jac_tol,
                            tangents=None if stash.get("block") is None else stash["block"].tangents)
    J = equilibrium_jacobian(arrs_c, layout, u_c, eq_c.aggregates, block)
    out = {"household_solves": eq_c.household_solves, "jacobians": eq_c.jacobians + 1,
           "seconds": time.perf_counter() - t1, "u": u_c, "J": J}
    log.info("equilibrium: coarse stage (n_a = %d): %d household solves, %d Jacobian(s), "
             "%.2f s", n_a, eq_c.household_solves, out["jacobians"], out["seconds"])
    return out


def _worth_new_jacobian(err, e_new, tol, hh_iterations, n_directions, warm, steps=1):
    r"""Whether a new Jacobian should pay for itself, in household-iteration equivalents.

    After ``steps`` steps on a (Broyden-updated) Jacobian took the max excess demand from
    ``err`` (where the Jacobian was made) to ``e_new``, at the mean rate
    :math:`\rho = (e_{new}/e)^{1/steps}` (the last step's rate alone is too pessimistic:
    Broyden's convergence speeds up, and a stall of one step asked for Jacobians that did
    not pay), the remaining steps at that rate are about
    :math:`n = \log(tol/e_{new})/\log\rho`, each a household solve of about the last one's
    iterations (plus about 5 for the policies and the distribution); with a new Jacobian,
    about two. A Jacobian costs ``_DIRECTION_COST`` per direction (60% of it with warm
    tangents). Deterministic: the decision depends on iteration counts, not on timings.
    """
    if e_new < tol:
        return False
    rho = min(max((e_new / err) ** (1.0 / max(steps, 1)), 1e-3), 0.999)
    n_left = np.log(tol / e_new) / np.log(rho)
    cost = _DIRECTION_COST * n_directions * (0.6 if warm else 1.0)
    return (n_left - 2.0) * (hh_iterations + 5) > cost


def _solve_at(f, layout, u, u_try, x, block, max_iter):
    """Households at u_try, warm-started from the first-order prediction of the states.

    Falls back to the plain warm start x (the states at u) when the predicted start fails
    (non-finite excess demands or a household problem at its iteration cap). The returned
    ``sol`` carries the number of world solves made under ``"solves"``.
    """
    from hatrade.core.jacobian import predict_state

    if _PREDICT and block is not None:
        x_pred = predict_state(x, block, layout, u, u_try)
        r_t, (agg_t, sol_t) = f(jnp.asarray(u_try), x_pred)
        if (np.all(np.isfinite(np.asarray(r_t)))
                and np.max(np.asarray(sol_t["iterations"])) < max_iter):
            sol_t = dict(sol_t, solves=1)
            return r_t, (agg_t, sol_t)
        log.debug("equilibrium: predicted warm start failed; restarting from the last states")
        r_t, (agg_t, sol_t) = f(jnp.asarray(u_try), x)
        return r_t, (agg_t, dict(sol_t, solves=2))
    r_t, (agg_t, sol_t) = f(jnp.asarray(u_try), x)
    return r_t, (agg_t, dict(sol_t, solves=1))
