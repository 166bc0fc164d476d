r"""The efficient allocation (Proposition 4): the planner's trade against the market's.

A planner with country weights :math:`\omega_i` allocates the world's output in a
stationary environment, with full insurance inside each country. This module solves the
planner's problem for a :class:`~hatrade.core.params.World` (same primitives as the decentralized
model, including the country scaling of :math:`\sigma_i` and :math:`\psi_i`), computes its
trade shares, trade elasticities and welfare effects of trade costs (Proposition 4), and
compares them with a decentralized :class:`~hatrade.solve.equilibrium.Equilibrium`.

Derivation
----------
*Primitives.* Country :math:`i` has mass :math:`L_i` of households; a household's income
state :math:`z` has the stationary distribution :math:`\mu(z)` of the income process (mean
efficiency units :math:`\bar N = \sum_z \mu(z) z = 1`). Each period a household draws
taste shocks :math:`\epsilon_j` (iid Type-1 extreme value, scale
:math:`\sigma_i = \sigma_\epsilon A_i^{1-\gamma}`), consumes one variety :math:`j` and
gets :math:`u(c) + \psi_i(z,j) + \epsilon_j`, with
:math:`\psi_i(z,i) = \psi_{slope} A_i^{1-\gamma}\log z_{perm}` and 0 for imports (exactly
the decentralized model's preferences). Country :math:`j` produces
:math:`A_j L_j \bar N` units of variety :math:`j`; delivering one unit to :math:`i` uses
:math:`d_{ij}` units (iceberg). Tariffs are transfers, not resource costs: the planner
ignores them.

*Planner.* There is no aggregate risk and the environment is stationary, so the planner's
problem is the same static problem every period and its value is
:math:`W = \sum_t \beta^t w = w/(1-\beta)` with

.. math::

    w = \max \sum_i \omega_i L_i \sum_z \mu(z)\,
        \mathbb E_\epsilon\big[u(c_i(z,\epsilon)) + \psi_i(z, j_i(z,\epsilon))
        + \epsilon_{j_i(z,\epsilon)}\big]
    \quad\text{s.t.}\quad
    \sum_i L_i \sum_z \mu(z)\, \mathbb E_\epsilon\big[c_i(z,\epsilon)\,d_{ij}\,
    \mathbf 1\{j_i(z,\epsilon) = j\}\big] \le A_j L_j \bar N \quad (\chi_j),

where the planner picks for every household (state :math:`z`, shocks :math:`\epsilon`) a
variety :math:`j_i(z,\epsilon)` and a quantity :math:`c_i(z,\epsilon)` ("full insurance":
nothing forces consumption to track income). :math:`\chi_j` is the multiplier on
variety :math:`j`'s resource constraint.

*Quantities.* Pointwise maximization of the Lagrangian gives, for a household assigned
variety :math:`j`, :math:`\omega_i u'(c) = \chi_j d_{ij}`, so consumption depends only on
the pair :math:`(i,j)`, not on :math:`z` or :math:`\epsilon`:

.. math:: c_{ij} = (u')^{-1}(\chi_j d_{ij}/\omega_i), \qquad \chi_j = \omega_j u'(c_{jj}).

*Choices.* Given these quantities, the household's contribution to the Lagrangian from
variety :math:`j`, divided by :math:`\omega_i`, is
:math:`u(c_{ij}) - u'(c_{ij})c_{ij} + \psi_i(z,j) + \epsilon_j`: the utility of the
variety net of the (utility) value of the resources it uses. The planner assigns the
variety that maximizes it, so with extreme-value shocks the choice probabilities are logit,

.. math::

    \pi_{ij}(z) = \frac{\exp\big((n_{ij} + \psi_i(z,j))/\sigma_i\big)}
                       {\sum_k \exp\big((n_{ik} + \psi_i(z,k))/\sigma_i\big)},
    \qquad n_{ij} = u(c_{ij}) - u'(c_{ij})\,c_{ij}.

The home-bias shifter *does* enter: the planner still faces the taste shocks and
:math:`\psi_i(z,j)`, so the assignment of varieties depends on :math:`z` (richer
households are assigned the home variety more often when :math:`\psi_{slope} > 0`), even
though consumption does not. Country-level choice shares are
:math:`\pi_{ij} = \sum_z \mu(z)\pi_{ij}(z)`. With :math:`\psi = 0`, :math:`\pi_{ij}(z)`
does not depend on :math:`z`.

*Value.* The expected maximum gives the log-sum; the expected utility of a type-:math:`z`
household is (Euler's constant dropped, as everywhere in hatrade)

.. math::

    U_i(z) = \sum_j \pi_{ij}(z)\big(u(c_{ij}) + \psi_i(z,j) - \sigma_i\log\pi_{ij}(z)\big)
           = \sigma_i \log\sum_j e^{(n_{ij}+\psi_i(z,j))/\sigma_i}
             + \sum_j \pi_{ij}(z)\,u'(c_{ij})\,c_{ij},

:math:`U_i = \sum_z \mu(z) U_i(z)` and :math:`w = \sum_i \omega_i L_i U_i`.

*Equilibrium conditions.* The :math:`M` unknowns :math:`\chi_j` solve the resource
constraints (which bind: utility is increasing)

.. math:: A_j L_j \bar N = \sum_i L_i\,\pi_{ij}\,c_{ij}\,d_{ij}, \qquad j = 1..M.

The problem is convex in :math:`(\pi, x = \pi c)` (the objective is a sum of perspectives of
the concave :math:`u` plus an entropy; the constraints are linear), so these first-order
conditions characterize the unique optimum. They are solved by Newton's method on
:math:`\log\chi` with the exact Jacobian (``jax.jacfwd``) and a backtracking line search,
in float64.

*Prices and trade.* :math:`\chi_j` is the shadow value of a unit of variety :math:`j`; the
planner's allocation is a competitive allocation at factory prices
:math:`q_j = \chi_j/\kappa` (the scale :math:`\kappa` is a numeraire), with shadow wages
:math:`w^*_j = q_j A_j`. Trade flows are valued at these prices,
:math:`X_{ij} = L_i \pi_{ij}\, q_j d_{ij} c_{ij} = L_i\pi_{ij}\,\omega_i u'(c_{ij})c_{ij}/\kappa`,
and trade shares are :math:`s_{ij} = X_{ij}/\sum_k X_{ik}` (the scale cancels). We set
:math:`\kappa` so that world spending :math:`\sum_{ij} X_{ij}` equals the decentralized
world spending when an equilibrium is given, and so that :math:`\mathrm{mean}(w^*) = 1`
otherwise.

Weights
-------
``"equal"``: :math:`\omega_i = 1` per person (utilitarian). ``"matched"``: Negishi-type
weights chosen so that every country's total consumption spending in the efficient
allocation, :math:`E_i = \sum_j X_{ij}`, equals its spending :math:`\sum_j M_{ij}` in a given
decentralized equilibrium (same resources, efficient use within and across countries). The
weights are normalized to a population-weighted mean of one and solved jointly with
:math:`\chi` (2M unknowns, Newton). An array gives the weights directly (positive, one per
country).

Proposition 4
-------------
*Trade elasticity.* Holding the multipliers fixed (the planner's analogue of holding
factor prices fixed in Proposition 1), differentiating :math:`\omega_i u'(c_{ij}) =
\chi_j d_{ij}` gives :math:`\partial\log c_{ij}/\partial\log d_{ij} = u'(c)/(u''(c)c)`
(:math:`= -1/\gamma` for CRRA) and, since :math:`\partial n/\partial c = -u''(c)c`,
:math:`\partial n_{ij}/\partial\log d_{ij} = -u'(c_{ij})c_{ij}`; varieties
:math:`k \ne j` are unaffected, so for every income state

.. math::

    \theta_{ij} = \frac{\partial \log(\pi_{ij}(z)/\pi_{ii}(z))}{\partial \log d_{ij}}
                = -\frac{1}{\sigma_i}\,u'(c_{ij})\,c_{ij},

the extensive-margin (choice-share) elasticity of the proposition; with log preferences it is
exactly :math:`-1/\sigma_i`. Two related objects are reported and checked by AD:

- the elasticity of the *country-level* choice ratio :math:`\pi_{ij}/\pi_{ii}` (equal to
  :math:`\theta_{ij}` when :math:`\psi = 0`; with :math:`\psi_{slope} \ne 0` the mix over
  :math:`z` changes it slightly:
  :math:`\theta_{ij}[1 - \mathrm{Var}_\mu(\pi_{ij}(z))/\pi_{ij}
  + \mathrm{Cov}_\mu(\pi_{ij}(z),\pi_{ii}(z))/\pi_{ii}]`);
- the elasticity of the *value* of trade :math:`X_{ij}/X_{ii}`, which adds the intensive
  margin of spending per buyer, :math:`d\log(u'(c)c)/d\log d = 1 - 1/\gamma` for CRRA:
  :math:`\theta^{value}_{ij} = \theta^{choice}_{ij} + 1 - 1/\gamma` (the object comparable to
  Proposition 1's elasticity of :math:`M_{ij}/M_{ii}` in the decentralized model; equal to
  :math:`-1/\sigma` with log preferences).

*Welfare.* By the envelope theorem (the Lagrangian's derivative in :math:`d_{ij}`),

.. math::

    \frac{dW}{d\log d_{ij}} = -\frac{\chi_j d_{ij} L_i \pi_{ij} c_{ij}}{1-\beta}
        = \frac{\omega_i\,\sigma_i\,\theta_{ij}\,\pi_{ij}\,L_i}{1-\beta},

the slides' formula (there with :math:`\omega_i = 1` and one :math:`\sigma`). It equals
:math:`-\omega_i\sigma_i L_i/(1-\beta)\,\partial\log\pi_{ii}/\partial\log d_{ij}` when
:math:`\psi = 0` (the ACR-like form). :func:`planner_welfare_gain` evaluates it for a set of
pairs, converts it to a consumption equivalent (percent of everyone's consumption, using
:math:`dW/d\log\lambda = \sum_i\omega_i L_i\sum_j\pi_{ij}u'(c_{ij})c_{ij}/(1-\beta)` for a
uniform scaling :math:`\lambda` of consumption), and optionally checks it against the exact
(AD, implicit-function) derivative of the primal value and a full re-solve.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.core.x64 import enable_x64
from hatrade.core.household import utility
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.params import Household, ParameterError, World
from hatrade.core.markets import country_params, model_arrays
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "PlannerError",
    "PlannerSolution",
    "PlannerWelfareGain",
    "solve_planner",
    "efficient_elasticities",
    "planner_welfare_gain",
    "decentralized_elasticities",
    "compare",
    "gravity_comparison",
    "comparison_summary",
    "aggregate_elasticities",
    "efficient_report",
]

log = logging.getLogger(__name__)

WEIGHT_KINDS = ("equal", "matched")


class PlannerError(RuntimeError):
    """The planner's problem has no (numerically found) solution."""


# ----------------------------------------------------------------------------- core (JAX)

def _planner_arrays(world: World, hh: Household, inc: IncomeProcess) -> dict:
    """Arrays of the planner's problem; sigma and psi exactly as in the decentralized model."""
    arrs = model_arrays(world, hh, inc)
    mu = np.asarray(inc.dist, float)
    return dict(A=arrs.A, L=arrs.L, d=arrs.d, sigma=arrs.sigma, psi=arrs.psi,
                mu=jnp.asarray(mu), nbar=jnp.asarray(float(mu @ np.asarray(inc.z))),
                gamma=arrs.gamma)


def _alloc(log_chi, log_w, log_d, ar):
    """Allocation for multipliers chi, weights omega and trade costs d (all in logs)."""
    g = ar["gamma"]
    mu_c = jnp.exp(log_chi[None, :] + log_d - log_w[:, None])  # u'(c_ij) = chi_j d_ij / w_i
    c = mu_c ** (-1.0 / g)
    uc = utility(c, g)
    n = uc - mu_c * c
    sig = ar["sigma"][:, None, None]
    val = (n[:, None, :] + ar["psi"]) / sig  # (M, Nz, M)
    logpi_z = jax.nn.log_softmax(val, axis=-1)
    pi_z = jnp.exp(logpi_z)
    pi = jnp.einsum("z,izj->ij", ar["mu"], pi_z)
    U = jnp.einsum("z,izj->i", ar["mu"], pi_z * (uc[:, None, :] + ar["psi"] - sig * logpi_z))
    d = jnp.exp(log_d)
    demand = jnp.einsum("i,ij->j", ar["L"], pi * c * d)
    supply = ar["A"] * ar["L"] * ar["nbar"]
    # value per country at shadow prices chi (utils): L_i pi_ij chi_j d_ij c_ij
    value = ar["L"][:, None] * pi * jnp.exp(log_w)[:, None] * mu_c * c
    return dict(c=c, mu_c=mu_c, n=n, pi_z=pi_z, pi=pi, U=U, demand=demand, supply=supply,
                value=value)


def _resource_residual(log_chi, log_w, log_d, ar):
    a = _alloc(log_chi, log_w, log_d, ar)
    return jnp.log(a["demand"]) - jnp.log(a["supply"])


def _matched_residual(x, log_d, ar, target_share):
    """Unknowns (log chi, log omega); resource constraints, spending shares, normalization."""
    M = target_share.shape[0]
    log_chi, log_w = x[:M], x[M:]
    a = _alloc(log_chi, log_w, log_d, ar)
    E = jnp.sum(a["value"], axis=1)
    share = E / jnp.sum(E)
    L = ar["L"]
    norm = jnp.log(jnp.sum(L * jnp.exp(log_w)) / jnp.sum(L))
    return jnp.concatenate([jnp.log(a["demand"]) - jnp.log(a["supply"]),
                            jnp.log(share[:-1]) - jnp.log(target_share[:-1]),
                            norm[None]])


_res_resource = jax.jit(_resource_residual)
_jac_resource = jax.jit(jax.jacfwd(_resource_residual, argnums=0))
_res_matched = jax.jit(_matched_residual)
_jac_matched = jax.jit(jax.jacfwd(_matched_residual, argnums=0))


def _newton(F, J, x0, args, *, tol, max_iter, what, max_step=5.0):
    """Newton's method with the exact Jacobian ``J`` (jacfwd) and backtracking on max |F|.

    ``F(x, *args)`` and ``J(x, *args)`` are jitted module-level functions (no retracing).
    """
    x = np.asarray(x0, float)
    r = np.asarray(F(x, *args))
    if not np.all(np.isfinite(r)):
        raise PlannerError(f"{what}: the residual is not finite at the starting point; check "
                           "that TFP, labor, trade costs and weights are of reasonable size.")
    err = float(np.max(np.abs(r)))
    history = [err]
    it = 0
    while err > tol:
        if it >= max_iter:
            raise PlannerError(
                f"{what} did not converge: max residual {err:.3e} after {it} Newton iterations "
                f"(tol {tol:.1e}); history {[f'{h:.1e}' for h in history]}. The world may have "
                "no interior solution (extreme weights, TFP or trade costs).")
        Jx = np.asarray(J(x, *args))
        if not np.all(np.isfinite(Jx)):
            raise PlannerError(f"{what}: the Jacobian has non-finite entries at iteration {it}.")
        try:
            dx = np.linalg.solve(Jx, -r)
        except np.linalg.LinAlgError:
            raise PlannerError(f"{what}: singular Jacobian at iteration {it} (max residual "
                               f"{err:.3e}); the problem has no locally unique solution.") from None
        big = np.max(np.abs(dx))
        if big > max_step:
            dx *= max_step / big
        step, ok = 1.0, False
        for _ in range(40):
            x_try = x + step * dx
            r_try = np.asarray(F(x_try, *args))
            e_try = float(np.max(np.abs(r_try)))
            if np.isfinite(e_try) and (e_try < (1.0 - 1e-4 * step) * err or e_try <= tol):
                ok = True
                break
            step *= 0.5
        if not ok:
            if err < 1e3 * tol:  # at machine precision: cannot improve further
                break
            raise PlannerError(f"{what}: line search failed at iteration {it + 1} (max residual "
                               f"{err:.3e}, history {[f'{h:.1e}' for h in history]}).")
        x, r, err = x_try, r_try, e_try
        it += 1
        history.append(err)
        log.debug("%s: Newton %d, step %.3g, max residual %.3e", what, it, step, err)
    return x, it, history


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True, eq=False)
class PlannerSolution:
    r"""The efficient allocation of a world (see the module docstring for the math).

    Attributes
    ----------
    world, household, income : the primitives.
    weights : (M,) planner weights per person :math:`\omega_i`.
    weights_kind : "equal", "matched" or "given".
    chi : (M,) multipliers :math:`\chi_j` (utils per unit of variety j at the factory).
    c : (M, M) consumption :math:`c_{ij}` of variety j by a household of i that is assigned j.
    pi_z : (M, Nz, M) choice probabilities :math:`\pi_{ij}(z)`.
    pi : (M, M) country-level choice shares :math:`\sum_z\mu(z)\pi_{ij}(z)`.
    U : (M,) expected period utility per person :math:`U_i`.
    sigma : (M,) taste-shock scales :math:`\sigma_i`.
    kappa : numeraire: factory shadow prices are :math:`q_j = \chi_j/\kappa`.
    beta : discount factor for welfare (from the equilibrium or the household; None if unknown).
    resource_error : max relative violation of the resource constraints.
    iterations, history : Newton diagnostics.
    """

    world: World
    household: Household
    income: IncomeProcess
    weights: np.ndarray
    weights_kind: str
    chi: np.ndarray
    c: np.ndarray
    pi_z: np.ndarray
    pi: np.ndarray
    U: np.ndarray
    sigma: np.ndarray
    kappa: float
    beta: float | None
    resource_error: float
    iterations: int
    history: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def countries(self) -> tuple:
        return self.world.countries

    @property
    def M(self) -> int:
        return self.world.M

    @property
    def shadow_prices(self) -> np.ndarray:
        """Factory shadow prices :math:`q_j = \\chi_j/\\kappa`."""
        return self.chi / self.kappa

    @property
    def shadow_wages(self) -> pd.Series:
        """:math:`w^*_j = q_j A_j`, the value of one efficiency unit."""
        return pd.Series(self.shadow_prices * self.world.tfp, index=list(self.countries),
                         name="shadow_wage")

    @property
    def spending(self) -> np.ndarray:
        r""":math:`X_{ij} = L_i\pi_{ij} q_j d_{ij} c_{ij}` (importer rows)."""
        return (self.world.labor[:, None] * self.pi * self.shadow_prices[None, :]
                * self.world.d * self.c)

    @property
    def trade_shares(self) -> np.ndarray:
        """:math:`s_{ij} = X_{ij}/\\sum_k X_{ik}` (importer rows, sum to one)."""
        X = self.spending
        return X / X.sum(axis=1, keepdims=True)

    @property
    def import_share(self) -> pd.Series:
        return pd.Series(1.0 - np.diag(self.trade_shares), index=list(self.countries),
                         name="import_share")

    @property
    def resources(self) -> np.ndarray:
        """:math:`A_j L_j \\bar N` (units of variety j)."""
        return self.world.tfp * self.world.labor * float(self.income.dist @ self.income.z)

    @property
    def demand(self) -> np.ndarray:
        """:math:`\\sum_i L_i\\pi_{ij}c_{ij}d_{ij}` (units of variety j)."""
        return np.einsum("i,ij->j", self.world.labor, self.pi * self.c * self.world.d)

    @property
    def theta(self) -> np.ndarray:
        r"""Proposition 4 elasticities :math:`-(1/\sigma_i)u'(c_{ij})c_{ij}` (M, M); the
        diagonal is not an elasticity (set to NaN)."""
        g = self.household.gamma
        th = -(self.c ** (1.0 - g)) / self.sigma[:, None]
        np.fill_diagonal(th, np.nan)
        return th

    def trade_table(self) -> pd.DataFrame:
        """Long table: importer, exporter, share, log_normalized_model (log s_ij/s_ii)."""
        s = self.trade_shares
        c = list(self.countries)
        rows = [(c[i], c[j], s[i, j], np.log(s[i, j] / s[i, i]))
                for i in range(self.M) for j in range(self.M)]
        return pd.DataFrame(rows, columns=["importer", "exporter", "share",
                                           "log_normalized_model"])

    def allocation_table(self) -> pd.DataFrame:
        """Long table per pair: consumption, choice share, spending, trade share, theta."""
        c = list(self.countries)
        M = self.M
        imp = np.repeat(c, M)
        exp_ = np.tile(c, M)
        return pd.DataFrame({
            "importer": imp, "exporter": exp_,
            "consumption_units": self.c.ravel(),
            "choice_share": self.pi.ravel(),
            "shadow_price_delivered": (self.shadow_prices[None, :] * self.world.d).ravel(),
            "spending_value": self.spending.ravel(),
            "trade_share": self.trade_shares.ravel(),
            "theta_prop4": self.theta.ravel(),
        })

    def country_table(self) -> pd.DataFrame:
        """Per country: weight, multiplier, shadow wage, resources, spending, import share,
        expected period utility per person."""
        X = self.spending
        return pd.DataFrame({
            "weight": self.weights,
            "chi_utils_per_unit": self.chi,
            "shadow_wage": self.shadow_wages.values,
            "resources_units": self.resources,
            "spending_value": X.sum(axis=1),
            "import_share": self.import_share.values,
            "utility_per_person": self.U,
        }, index=pd.Index(list(self.countries), name="country"))

    def summary(self) -> dict:
        c = list(self.countries)
        return {
            "weights_kind": self.weights_kind,
            "weights": dict(zip(c, map(float, self.weights))),
            "shadow_wages": {k: float(v) for k, v in self.shadow_wages.items()},
            "import_share": {k: float(v) for k, v in self.import_share.items()},
            "max_relative_resource_error": float(self.resource_error),
            "newton_iterations": int(self.iterations),
            "seconds": float(self.seconds),
        }


# ----------------------------------------------------------------------------- solve

def _check_weights(weights, world: World) -> np.ndarray:
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"weights = {weights!r} is not allowed: weights must be "
                             f"{WEIGHT_KINDS} or {world.M} positive numbers.") from None
    if w.ndim != 1 or w.shape[0] != world.M:
        raise ParameterError(f"weights has shape {w.shape}; it must have {world.M} entries, one per "
                             f"country ({', '.join(world.countries)}).")
    bad = [world.countries[k] for k in np.flatnonzero(~np.isfinite(w) | (w <= 0))]
    if bad:
        raise ParameterError(f"weights must be positive and finite; not so for {bad} "
                             f"(values {[float(w[world.index(b)]) for b in bad]}).")
    return w


def _check_eq(eq, world: World) -> Equilibrium:
    if not isinstance(eq, Equilibrium):
        raise ParameterError(f"eq must be a hatrade.solve.equilibrium.Equilibrium, got {type(eq).__name__}.")
    if tuple(eq.countries) != tuple(world.countries):
        raise ParameterError(f"the equilibrium's countries {list(eq.countries)} differ from the "
                             f"world's {list(world.countries)}.")
    S = eq.spending.sum(axis=1)
    if not np.all(np.isfinite(S)) or np.any(S <= 0):
        raise ParameterError("the equilibrium has non-positive or non-finite spending "
                             f"{S.tolist()}; matched weights need positive spending.")
    return eq


@enable_x64
def solve_planner(world: World, household: Household, weights="equal", eq: Equilibrium | None = None,
                  *, income: IncomeProcess | None = None, beta: float | None = None,
                  tol: float = 1e-13, max_iter: int = 100) -> PlannerSolution:
    r"""Solve the planner's problem (Proposition 4) for a world.

    Parameters
    ----------
    world, household : primitives (as for :func:`hatrade.solve_equilibrium`); the planner
        uses gamma, sigma_eps, psi_slope and the income process, not the asset grid.
    weights : {"equal", "matched"} or array (M,)
        ``"equal"``: one per person; ``"matched"``: Negishi weights that give each country
        the spending it has in ``eq`` (requires ``eq``); an array: positive weights per
        person.
    eq : Equilibrium, optional
        Decentralized equilibrium of the same world: sets the numeraire (world spending) and,
        for ``"matched"``, the target spending; its beta is used for welfare.
    income : IncomeProcess, optional
        Default: ``eq.income`` or :func:`hatrade.income_process` of ``household``.
    beta : float, optional
        Discount factor for welfare (default: ``eq.beta``, else ``household.beta``).
    tol : float
        Newton tolerance on the log resource constraints (max abs).
    max_iter : int

    Returns
    -------
    PlannerSolution

    Raises
    ------
    ParameterError
        Bad weights (wrong length, non-positive, unknown name), ``"matched"`` without ``eq``,
        an equilibrium of another world.
    PlannerError
        When Newton's method fails (no solution found).
    """
    t0 = time.perf_counter()
    if not isinstance(world, World):
        raise ParameterError(f"world must be a hatrade.World, got {type(world).__name__}.")
    if not isinstance(household, Household):
        raise ParameterError(f"household must be a hatrade.Household, got {type(household).__name__}.")
    if eq is not None:
        _check_eq(eq, world)
    inc = income or (eq.income if eq is not None else income_process(household))
    if world.has_tariffs:
        log.info("planner: tariffs are transfers, not resource costs; the planner ignores them")
    if isinstance(weights, str):
        if weights not in WEIGHT_KINDS:
            raise ParameterError(f"weights = {weights!r} is not allowed: use one of {WEIGHT_KINDS} "
                                 f"or an array of {world.M} positive numbers.")
        kind = weights
        if kind == "matched" and eq is None:
            raise ParameterError("weights='matched' needs a decentralized equilibrium: pass eq=... "
                                 "(e.g. hatrade.evaluate at published prices).")
        w0 = np.ones(world.M)
    else:
        kind = "given"
        w0 = _check_weights(weights, world)
    ar = _planner_arrays(world, household, inc)
    log_d = jnp.log(ar["d"])
    # start: chi_j = omega_j u'(A_j Nbar) (own output consumed at home)
    chi0 = w0 * (world.tfp * float(ar["nbar"])) ** (-household.gamma)
    x, its, hist = _newton(_res_resource, _jac_resource, np.log(chi0),
                           (jnp.log(jnp.asarray(w0)), log_d, ar), tol=tol, max_iter=max_iter,
                           what="planner (resource constraints)")
    log_w = np.log(w0)
    if kind == "matched":
        S = eq.spending.sum(axis=1)
        target = jnp.asarray(S / S.sum())
        xx, its2, hist2 = _newton(_res_matched, _jac_matched, np.concatenate([x, log_w]),
                                  (log_d, ar, target), tol=tol, max_iter=max_iter,
                                  what="planner with matched weights")
        x, log_w = xx[: world.M], xx[world.M:]
        its += its2
        hist = hist + hist2
    a = {k: np.asarray(v) for k, v in _alloc(jnp.asarray(x), jnp.asarray(log_w), log_d, ar).items()}
    rel = a["demand"] / a["supply"] - 1.0
    res = float(np.max(np.abs(rel)))
    if not np.isfinite(res) or res > 1e-8:
        raise PlannerError(f"planner: resource constraints violated after Newton (max relative "
                           f"error {res:.2e}).")
    chi = np.exp(x)
    # numeraire: world spending = decentralized world spending, else mean shadow wage = 1
    if eq is not None:
        kappa = float(a["value"].sum() / eq.spending.sum())
    else:
        kappa = float(np.mean(chi * world.tfp))
    b = beta if beta is not None else (eq.beta if eq is not None else household.beta)
    sol = PlannerSolution(
        world=world, household=household, income=inc, weights=np.exp(log_w), weights_kind=kind,
        chi=chi, c=a["c"], pi_z=a["pi_z"], pi=a["pi"], U=a["U"], sigma=np.asarray(ar["sigma"]),
        kappa=kappa, beta=None if b is None else float(b), resource_error=res, iterations=its,
        history=hist, seconds=time.perf_counter() - t0)
    log.info("planner (%s weights): %d Newton iterations, max resource error %.1e", kind, its, res)
    return sol


# ----------------------------------------------------------------------------- Prop. 4

def _fixed(planner: PlannerSolution):
    ar = _planner_arrays(planner.world, planner.household, planner.income)
    return ar, jnp.log(jnp.asarray(planner.chi)), jnp.log(jnp.asarray(planner.weights))


@jax.jit
def _elasticity_arrays(lc, lw, log_d0, ar):
    """Own-pair derivatives at fixed (chi, omega): by z (M, M, Nz), choice (M, M), value (M, M)."""
    M = log_d0.shape[0]
    i, j = jnp.meshgrid(jnp.arange(M), jnp.arange(M), indexing="ij")

    def choice_z(ld):
        lp = jnp.log(_alloc(lc, lw, ld, ar)["pi_z"])  # (M, Nz, M)
        own = jnp.einsum("izi->iz", lp)
        return jnp.swapaxes(lp - own[:, :, None], 1, 2)  # (M, M, Nz)

    def choice(ld):
        lp = jnp.log(_alloc(lc, lw, ld, ar)["pi"])
        return lp - jnp.diag(lp)[:, None]

    def value(ld):
        lx = jnp.log(_alloc(lc, lw, ld, ar)["value"])
        return lx - jnp.diag(lx)[:, None]

    dz = jax.jacfwd(choice_z)(log_d0)[i, j, :, i, j]
    dc = jax.jacfwd(choice)(log_d0)[i, j, i, j]
    dv = jax.jacfwd(value)(log_d0)[i, j, i, j]
    return dz, dc, dv


@enable_x64
def efficient_elasticities(planner: PlannerSolution) -> pd.DataFrame:
    r"""Trade elasticities of the efficient allocation (Proposition 4), per pair.

    All at fixed multipliers and weights, for a change in :math:`\log d_{ij}`:

    - ``theta_prop4``: :math:`-(1/\sigma_i)u'(c_{ij})c_{ij}` (the formula);
    - ``theta_choice_by_z_ad``: the exact (AD) derivative of
      :math:`\log(\pi_{ij}(z)/\pi_{ii}(z))`, the largest deviation over z from the formula
      is in ``max_dev_by_z``; equal to the formula for every z;
    - ``theta_choice_ad``: exact derivative of the country-level :math:`\log(\pi_{ij}/\pi_{ii})`
      (differs from the formula only through the mix over z when :math:`\psi_{slope}\ne 0`);
    - ``theta_value_ad``: exact derivative of :math:`\log(X_{ij}/X_{ii})`, trade in value
      (adds the intensive margin :math:`1-1/\gamma`; comparable to Proposition 1).

    Returns
    -------
    pandas.DataFrame
        One row per ordered pair :math:`i \ne j`: importer, exporter, trade_share,
        theta_prop4, theta_choice_by_z_ad, max_dev_by_z, theta_choice_ad, theta_value_ad.
    """
    ar, lc, lw = _fixed(planner)
    dz, th_c, th_v = (np.asarray(x) for x in _elasticity_arrays(lc, lw, jnp.log(ar["d"]), ar))
    M = planner.M
    i, j = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    th4 = planner.theta
    c = list(planner.countries)
    off = i != j
    s = planner.trade_shares
    # the z-by-z derivative: report the mean over z and the largest deviation from theta
    return pd.DataFrame({
        "importer": np.asarray(c)[i[off]],
        "exporter": np.asarray(c)[j[off]],
        "trade_share": s[off],
        "theta_prop4": th4[off],
        "theta_choice_by_z_ad": dz.mean(axis=2)[off],
        "max_dev_by_z": np.max(np.abs(dz - th4[:, :, None]), axis=2)[off],
        "theta_choice_ad": th_c[off],
        "theta_value_ad": th_v[off],
    })


def aggregate_elasticities(table: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Country aggregates: trade-share-weighted means over partners j != i (importer rows)."""
    columns = columns or [c for c in table.columns if c.startswith("theta")]
    g = table.groupby("importer", sort=False)
    out = {col: g.apply(lambda t, col=col: float(np.sum(t[col] * t["trade_share"])
                                                  / np.sum(t["trade_share"])),
                        include_groups=False)
           for col in columns}
    return pd.DataFrame(out)


@dataclass(frozen=True, eq=False)
class PlannerWelfareGain:
    r"""Welfare gains in the efficient allocation from a trade-cost change (Proposition 4).

    Attributes
    ----------
    pairs : DataFrame per affected pair: importer, exporter, theta_prop4, choice_share,
        dW_dlogd_prop4 (utils, discounted), and dW_dlogd_ad when ``exact``.
    change : the proportional change d'/d applied to every affected pair.
    dW_first_order : :math:`\sum dW/d\log d_{ij}\,\log(\text{change})` (utils).
    gain_pct_first_order : the same as a percent of everyone's consumption (100 x
        uniform consumption-equivalent, first order).
    dW_exact, gain_pct_exact : from re-solving the planner at the new trade costs (weights
        fixed) when ``exact``.
    by_country : DataFrame (``exact`` only): per country, the first-order (AD, multipliers
        re-solved) and exact consumption equivalents in percent (the proportional scaling
        of all of the country's consumption, choice probabilities held, that changes its
        expected utility per person as much as the new allocation does; Negishi weights
        fixed, so some countries can lose), and the change in utility per person.
    max_abs_formula_error : max |Prop 4 - AD| over pairs (``exact`` only).
    """

    pairs: pd.DataFrame
    change: float
    beta: float
    dW_first_order: float
    gain_pct_first_order: float
    dW_exact: float | None = None
    gain_pct_exact: float | None = None
    by_country: pd.DataFrame | None = None
    max_abs_formula_error: float | None = None

    def summary(self) -> dict:
        out = {"change": self.change, "beta": self.beta, "pairs": int(len(self.pairs)),
               "dW_first_order_utils": self.dW_first_order,
               "gain_pct_first_order": self.gain_pct_first_order}
        if self.dW_exact is not None:
            out.update(dW_exact_utils=self.dW_exact, gain_pct_exact=self.gain_pct_exact,
                       max_abs_formula_error=self.max_abs_formula_error)
        if self.by_country is not None:
            out["by_country"] = {k: {c: float(v) for c, v in row.items()}
                                 for k, row in self.by_country.to_dict(orient="index").items()}
        return out


def _pair_mask(planner: PlannerSolution, importers, exporters) -> np.ndarray:
    c = planner.countries

    def idx(x, what):
        if x is None:
            return np.ones(len(c), bool)
        x = [x] if isinstance(x, str) else list(x)
        m = np.zeros(len(c), bool)
        for k in x:
            if k not in c:
                raise ParameterError(f"{what} contains unknown country code {k!r}; allowed: "
                                     f"{', '.join(c)}.")
            m[c.index(k)] = True
        return m

    mask = idx(importers, "importers")[:, None] & idx(exporters, "exporters")[None, :]
    np.fill_diagonal(mask, False)
    if not mask.any():
        raise ParameterError("no pair i != j is selected by importers/exporters.")
    return mask


def _consumption_equivalent(U_new, ar, planner):
    """Per-country lambda with U_i(lambda c, baseline choices) = U_i_new (percent)."""
    g = float(planner.household.gamma)
    mu = np.asarray(ar["mu"])
    pi_z = planner.pi_z
    uc = np.asarray(utility(jnp.asarray(planner.c), g))
    Eu = np.einsum("z,izj,ij->i", mu, pi_z, uc)  # sum pi u(c)
    rest = planner.U - Eu
    if abs(g - 1.0) < 1e-12:
        lam = np.exp(U_new - planner.U)
    else:
        ratio = (U_new - rest) / Eu  # lambda^(1-g)
        lam = np.where(ratio > 0, ratio, np.nan) ** (1.0 / (1.0 - g))
    return 100.0 * (lam - 1.0), Eu


@jax.jit
def _utility_derivative(lc, lw, log_d0, ar):
    """dU_i/dlog d_ab (M, M, M) of the primal per-person utilities, multipliers re-solved by
    the implicit function theorem on the resource constraints (weights fixed)."""
    M = log_d0.shape[0]
    U = lambda ld, x: _alloc(x, lw, ld, ar)["U"]  # noqa: E731
    Fc = jax.jacfwd(lambda x: _resource_residual(x, lw, log_d0, ar))(lc)  # (M, M)
    Fd = jax.jacfwd(lambda ld: _resource_residual(lc, lw, ld, ar))(log_d0)  # (M, M, M)
    dchi = -jnp.linalg.solve(Fc, Fd.reshape(M, M * M)).reshape(M, M, M)
    Ud = jax.jacfwd(lambda ld: U(ld, lc))(log_d0)
    Uc = jax.jacfwd(lambda x: U(log_d0, x))(lc)
    return Ud + jnp.einsum("ik,kab->iab", Uc, dchi)


@enable_x64
def planner_welfare_gain(planner: PlannerSolution, *, change: float = 0.9, importers=None,
                         exporters=None, beta: float | None = None,
                         exact: bool = False) -> PlannerWelfareGain:
    r"""Welfare gain of the efficient allocation from scaling :math:`d_{ij}` by ``change``.

    Proposition 4: :math:`dW/d\log d_{ij} = \omega_i\sigma_i\theta_{ij}\pi_{ij}L_i/(1-\beta)`
    with :math:`\theta_{ij} = -(1/\sigma_i)u'(c_{ij})c_{ij}`; the first-order gain is
    :math:`\sum_{(i,j)} dW/d\log d_{ij}\cdot\log(\text{change})` over the selected pairs
    (``importers`` x ``exporters``, :math:`i \ne j`; None = all). The paper's experiments:
    ``importers="USA"`` (unilateral) and all pairs (global), ``change=0.9``.

    The consumption equivalent divides by
    :math:`dW/d\log\lambda = \sum_i\omega_i L_i\sum_j\pi_{ij}u'(c_{ij})c_{ij}/(1-\beta)`,
    the value of raising everyone's consumption by one percent (first order).

    With ``exact=True`` also: the AD derivative of the primal value
    :math:`W = \sum_i\omega_iL_iU_i/(1-\beta)` with the multipliers re-solved (implicit
    function theorem), per pair (checks the formula); a full re-solve at the new trade costs
    (weights held fixed) with the exact world and per-country consumption equivalents.

    Raises
    ------
    ParameterError
        No discount factor (give ``beta``), ``change`` not positive, unknown countries.
    """
    b = beta if beta is not None else planner.beta
    if b is None or not 0 < b < 1:
        raise ParameterError(f"beta = {b!r}: planner_welfare_gain needs a discount factor in (0, 1); "
                             "pass beta=... or solve the planner with eq=... .")
    if not (np.isfinite(change) and change > 0):
        raise ParameterError(f"change = {change!r} is not allowed: it must be a positive number "
                             "(d' = change * d).")
    mask = _pair_mask(planner, importers, exporters)
    L, w = planner.world.labor, planner.weights
    th = planner.theta
    dW = w[:, None] * planner.sigma[:, None] * th * planner.pi * L[:, None] / (1.0 - b)
    dW_lambda = float(np.sum(w * L * np.sum(planner.pi * planner.c ** (1.0 - planner.household.gamma),
                                            axis=1)) / (1.0 - b))
    dlog = float(np.log(change))
    dW1 = float(np.sum(dW[mask]) * dlog)
    c = np.asarray(planner.countries)
    ii, jj = np.nonzero(mask)
    pairs = pd.DataFrame({"importer": c[ii], "exporter": c[jj], "theta_prop4": th[ii, jj],
                          "choice_share": planner.pi[ii, jj], "dW_dlogd_prop4": dW[ii, jj]})
    out = dict(pairs=pairs, change=float(change), beta=float(b), dW_first_order=dW1,
               gain_pct_first_order=100.0 * dW1 / dW_lambda)
    if exact:
        ar, lc, lw = _fixed(planner)
        dU = np.asarray(_utility_derivative(lc, lw, jnp.log(ar["d"]), ar))  # dU_i/dlog d_ab
        dW_ad = np.einsum("i,iab->ab", w * L, dU) / (1.0 - b)
        pairs["dW_dlogd_ad"] = dW_ad[ii, jj]
        out["max_abs_formula_error"] = float(np.max(np.abs(dW_ad[mask] - dW[mask])))
        # re-solve at the new trade costs (weights fixed; no floor at 1, as in MODEL.md 5)
        log_d_new = jnp.log(ar["d"]) + jnp.asarray(mask * dlog)
        x_new, _, _ = _newton(_res_resource, _jac_resource, np.log(planner.chi),
                              (lw, log_d_new, ar), tol=1e-13, max_iter=100,
                              what="planner at the new trade costs")
        U_new = np.asarray(_alloc(jnp.asarray(x_new), lw, log_d_new, ar)["U"])
        dWx = float(np.sum(w * L * (U_new - planner.U)) / (1.0 - b))
        out["dW_exact"] = dWx
        # world consumption equivalent: uniform lambda for everyone with W(lambda) = W_new
        pct_i, Eu = _consumption_equivalent(U_new, ar, planner)
        g = float(planner.household.gamma)
        rest = np.sum(w * L * (planner.U - Eu))
        if abs(g - 1.0) < 1e-12:
            lam = np.exp(np.sum(w * L * (U_new - planner.U)) / np.sum(w * L))
        else:
            lam = ((np.sum(w * L * U_new) - rest) / np.sum(w * L * Eu)) ** (1.0 / (1.0 - g))
        out["gain_pct_exact"] = float(100.0 * (lam - 1.0))
        Ulam = np.sum(planner.pi * planner.c ** (1.0 - g), axis=1)  # dU_i/dlog lambda
        dUsel = np.einsum("iab,ab->i", dU, mask.astype(float)) * dlog
        out["by_country"] = pd.DataFrame({
            "gain_pct_first_order_ad": 100.0 * dUsel / Ulam,
            "gain_pct_exact": pct_i,
            "utility_change": U_new - planner.U,
        }, index=pd.Index(list(planner.countries), name="country"))
    return PlannerWelfareGain(**out)


# ----------------------------------------------------------------------------- decentralized

@enable_x64
def decentralized_elasticities(eq: Equilibrium, *, tangent_tol: float | None = None) -> pd.DataFrame:
    r"""Proposition 1 elasticities of a decentralized equilibrium, by exact AD.

    :math:`\theta_{ij} = \partial\log(M_{ij}/M_{ii})/\partial\log p_{ij}` with households
    re-solved at the new price (implicit differentiation through the household fixed point)
    while wages, R and the stationary distribution stay at the equilibrium (the impact
    elasticity of MODEL.md section 5). One forward direction per exporter column j
    (perturbing :math:`p_{ij}` for every importer :math:`i \ne j` at once: countries'
    household problems are independent at fixed prices), M directions in all.

    :func:`hatrade.analysis.elasticity.world_elasticities` computes the same numbers faster (and
    their margins); this independent route through
    :func:`hatrade.core.household.solve_fixed_point`'s tangent iteration is kept as a
    cross-check (they agree to about 1e-8 on the 19-country baseline).

    Returns
    -------
    pandas.DataFrame
        importer, exporter, trade_share, theta_prop1 (pairs i != j).
    """
    from hatrade.core.markets import solve_countries
    from hatrade.core.household import policies

    arrs = model_arrays(eq.world, eq.household, eq.income)
    pr = eq.prices
    prm0 = country_params(arrs, jnp.asarray(pr.w), jnp.asarray(pr.R), jnp.asarray(pr.T),
                          jnp.asarray(pr.beta))
    x0 = eq.state
    lam = jnp.asarray(eq.lam)
    L = arrs.L
    M = eq.world.M
    off = 1.0 - jnp.eye(M)
    logp0 = jnp.log(prm0.p)

    def f(e):
        p = jnp.exp(logp0 + e[None, :] * off)
        prm = prm0._replace(p=p)
        x, _ = solve_countries(prm, x0, 1e-10, 3000, tangent_tol)
        pol = jax.vmap(policies)(x, prm)
        Mij = L[:, None] * jnp.einsum("kaz,kazj->kj", lam, pol.pi * pol.c * p[:, None, None, :])
        lM = jnp.log(Mij)
        return lM - jnp.diag(lM)[:, None]

    J = np.asarray(jax.jit(jax.jacfwd(f))(jnp.zeros(M)))  # (M, M, M): [i, j, k]
    i, j = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    th = J[i, j, j]
    offm = i != j
    c = np.asarray(eq.countries)
    return pd.DataFrame({"importer": c[i[offm]], "exporter": c[j[offm]],
                         "trade_share": eq.trade_shares[offm], "theta_prop1": th[offm]})


# ----------------------------------------------------------------------------- comparison

def compare(planner: PlannerSolution, eq: Equilibrium, *, elasticities: bool = False,
            efficient_theta: pd.DataFrame | None = None,
            decentralized_theta: pd.DataFrame | None = None) -> pd.DataFrame:
    r"""Efficient vs decentralized trade, one row per ordered pair (diagonal included).

    Columns: importer, exporter, share_efficient, share_decentralized,
    log_ratio (:math:`\log(s^{eff}_{ij}/s^{dec}_{ij})`), trades_more (efficient > market,
    for :math:`i \ne j`), trade_costs. With ``elasticities=True`` (or tables given) also
    theta_efficient_prop4, theta_efficient_value and theta_decentralized_prop1 (NaN on the
    diagonal); the decentralized one costs M forward AD directions through the households.
    """
    _check_eq(eq, planner.world)
    c = list(planner.countries)
    M = planner.M
    se, sd = planner.trade_shares, eq.trade_shares
    i, j = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    df = pd.DataFrame({
        "importer": np.asarray(c)[i.ravel()], "exporter": np.asarray(c)[j.ravel()],
        "share_efficient": se.ravel(), "share_decentralized": sd.ravel(),
        "log_ratio": np.log(se / sd).ravel(),
        "trades_more": np.where(i != j, se > sd, False).ravel(),
        "trade_costs": planner.world.d.ravel(),
    })
    if elasticities or efficient_theta is not None or decentralized_theta is not None:
        te = efficient_theta if efficient_theta is not None else efficient_elasticities(planner)
        td = decentralized_theta if decentralized_theta is not None else decentralized_elasticities(eq)
        df = df.merge(te[["importer", "exporter", "theta_prop4", "theta_value_ad"]]
                      .rename(columns={"theta_prop4": "theta_efficient_prop4",
                                       "theta_value_ad": "theta_efficient_value"}),
                      on=["importer", "exporter"], how="left")
        df = df.merge(td[["importer", "exporter", "theta_prop1"]]
                      .rename(columns={"theta_prop1": "theta_decentralized_prop1"}),
                      on=["importer", "exporter"], how="left")
    return df


def gravity_comparison(planner: PlannerSolution, eq: Equilibrium | None = None) -> pd.DataFrame:
    """The gravity regression (MODEL.md 4) on efficient (and decentralized) trade shares.

    Needs countries covered by the Eaton-Kortum covariates (at least 3). Returns a table
    indexed by the 10 coefficient names plus ``S_<ISO>`` and ``theta_m_<ISO>`` rows, with
    columns ``efficient`` and (if ``eq``) ``decentralized``.
    """
    from hatrade.analysis.gravity import gravity_regression, model_trade_table

    def run(shares):
        g = gravity_regression(model_trade_table(shares, planner.countries),
                               countries=planner.countries)
        return pd.concat([g.coefficients, g.S.add_prefix("S_"), g.theta_m.add_prefix("theta_m_")])

    out = {"efficient": run(planner.trade_shares)}
    if eq is not None:
        out["decentralized"] = run(eq.trade_shares)
    return pd.DataFrame(out)


def comparison_summary(planner: PlannerSolution, eq: Equilibrium, table: pd.DataFrame,
                       gravity: pd.DataFrame | None = None) -> dict:
    r"""Numbers describing how efficient trade differs from the market's (JSON-ready).

    ``table`` is :func:`compare`'s output (elasticity columns optional). Keys: pair counts
    with a higher spending share :math:`s_{ij}` (``pairs_trading_more_efficient``) and with
    higher normalized trade :math:`s_{ij}/s_{ii}`
    (``pairs_higher_normalized_trade_efficient``) in the efficient allocation; the mean of
    :math:`\log(s^{eff}_{ij}/s^{dec}_{ij})` over :math:`i \ne j` and its correlation with
    :math:`\log d_{ij}`; import shares; the pairs with the largest and smallest log ratios;
    the correlation of an importer's mean log ratio with its log wage (does market
    incompleteness curb the trade of rich or of poor countries?); country aggregate
    elasticities (trade-share-weighted over partners, each allocation with its own shares);
    and the gravity coefficients when given.
    """
    off = table[table["importer"] != table["exporter"]]
    diag = table[table["importer"] == table["exporter"]].set_index("importer")
    # log(s_ij/s_ii), the gravity regression's dependent variable
    norm_e = np.log(off["share_efficient"].to_numpy()
                    / off["importer"].map(diag["share_efficient"]).to_numpy())
    norm_d = np.log(off["share_decentralized"].to_numpy()
                    / off["importer"].map(diag["share_decentralized"]).to_numpy())
    lr = off["log_ratio"].to_numpy()
    out = {
        "pairs": int(len(off)),
        "pairs_trading_more_efficient": int(off["trades_more"].sum()),
        "pairs_trading_less_efficient": int((~off["trades_more"]).sum()),
        "mean_log_ratio_offdiagonal": float(lr.mean()),
        "pairs_higher_normalized_trade_efficient": int(np.sum(norm_e > norm_d)),
        "corr_log_ratio_log_trade_costs": float(np.corrcoef(lr, np.log(off["trade_costs"]))[0, 1])
        if np.ptp(np.log(off["trade_costs"])) > 0 else None,
        "import_share": {k: {"efficient": float(planner.import_share[k]),
                              "decentralized": float(eq.import_share[k])}
                         for k in planner.countries},
        "pairs_largest_log_ratio": off.nlargest(5, "log_ratio")[["importer", "exporter", "log_ratio"]]
        .to_dict(orient="records"),
        "pairs_smallest_log_ratio": off.nsmallest(5, "log_ratio")[["importer", "exporter", "log_ratio"]]
        .to_dict(orient="records"),
    }
    # does incompleteness tilt trade by importer income? corr of importer's mean log ratio
    # with its wage
    by_imp = off.groupby("importer", sort=False)["log_ratio"].mean()
    wage = eq.wages.reindex(by_imp.index)
    if len(by_imp) > 2 and np.ptp(np.log(wage.to_numpy())) > 0:
        out["corr_importer_mean_log_ratio_wage"] = float(np.corrcoef(by_imp, np.log(wage))[0, 1])
    for col in ("theta_efficient_prop4", "theta_efficient_choice", "theta_efficient_value",
                "theta_decentralized_prop1", "theta_decentralized_extensive"):
        if col in off:
            agg = off.assign(w=off["share_decentralized" if "decentralized" in col
                                   else "share_efficient"])
            out.setdefault("aggregate_elasticity", {})[col] = {
                k: float(np.sum(t[col] * t["w"]) / np.sum(t["w"]))
                for k, t in agg.groupby("importer", sort=False)}
    out["gravity"] = None if gravity is None else {
        col: {k: float(v) for k, v in gravity[col].items()} for col in gravity.columns}
    return out


@enable_x64
def efficient_report(planner: PlannerSolution, eq: Equilibrium, *,
                     decentralized_theta: bool | pd.DataFrame = True,
                     tangent_tol: float | None = 1e-8,
                     welfare_change: float = 0.9) -> tuple[pd.DataFrame, dict]:
    """Everything ``hatrade efficient`` writes: the pair table and a JSON-ready summary.

    Parameters
    ----------
    planner, eq : the efficient allocation and the decentralized equilibrium of one world.
    decentralized_theta : bool or DataFrame
        Compute Proposition 1 elasticities of ``eq`` (True: with
        :func:`hatrade.analysis.elasticity.world_elasticities` when available, exact, about 40 s for
        19 countries, which also gives the extensive margin; otherwise with
        :func:`decentralized_elasticities`), use a given table (columns importer, exporter
        and ``theta_prop1`` or ``theta`` [+ ``theta_extensive``]), or skip (False).
    tangent_tol : tolerance of the tangent iteration when :func:`decentralized_elasticities`
        is used, relative to the direct effect (1e-6 moves the 19-country baseline
        elasticities by at most 5e-5 from the 1e-10 solution and is about 4 times faster).
    welfare_change : d'/d of Proposition 4's experiments (all pairs; and the US's imports
        when ``USA`` is a country).

    Returns
    -------
    table : DataFrame
        importer, exporter, share_efficient, share_decentralized, then log_ratio,
        trade_costs and the elasticity columns (NaN on the diagonal).
    summary : dict
    """
    te = efficient_elasticities(planner)
    if isinstance(decentralized_theta, pd.DataFrame):
        td = _normalize_decentralized(decentralized_theta)
    elif decentralized_theta:
        td = _decentralized_table(eq, tangent_tol)
    else:
        td = None
    full = compare(planner, eq)
    cols = te[["importer", "exporter", "theta_prop4", "theta_choice_ad", "theta_value_ad"]].rename(
        columns={"theta_prop4": "theta_efficient_prop4",
                 "theta_choice_ad": "theta_efficient_choice",
                 "theta_value_ad": "theta_efficient_value"})
    full = full.merge(cols, on=["importer", "exporter"], how="left")
    if td is not None:
        keep = [c for c in ("theta_prop1", "theta_prop1_extensive") if c in td]
        full = full.merge(td[["importer", "exporter"] + keep].rename(
            columns={"theta_prop1": "theta_decentralized_prop1",
                     "theta_prop1_extensive": "theta_decentralized_extensive"}),
            on=["importer", "exporter"], how="left")
    try:
        grav = gravity_comparison(planner, eq)
    except (ValueError, KeyError) as err:  # TradeTableError is a ValueError
        log.info("gravity regression skipped: %s", err)
        grav = None
    summ = comparison_summary(planner, eq, full, grav)
    table = full.drop(columns=["trades_more"])
    if grav is not None and tuple(planner.countries) == _ek_countries():
        from hatrade.data import load_trade_data
        from hatrade.analysis.gravity import gravity_regression
        g = gravity_regression(load_trade_data())
        summ["gravity"]["data"] = {k: float(v) for k, v in g.coefficients.items()}
    welfare = {}
    if planner.beta is not None:
        welfare["global"] = planner_welfare_gain(planner, change=welfare_change,
                                                 exact=True).summary()
        if "USA" in planner.countries:
            welfare["unilateral_USA"] = planner_welfare_gain(
                planner, change=welfare_change, importers="USA", exact=True).summary()
    summary = {
        "weights_kind": planner.weights_kind,
        "planner": planner.summary(),
        "decentralized": {"beta": float(eq.beta), "R": eq.summary()["R"],
                          "wages": {k: float(v) for k, v in eq.wages.items()}},
        "comparison": summ,
        "welfare_prop4": welfare,
        "notes": {
            "theta_efficient_prop4": "-(1/sigma_i) u'(c_ij) c_ij: elasticity of pi_ij(z)/pi_ii(z)"
                                     " to d_ij at fixed multipliers (Proposition 4)",
            "theta_efficient_choice": "elasticity of country-level choice shares pi_ij/pi_ii "
                                      "(exact AD; differs from prop4 through the mix over z "
                                      "when psi_slope != 0)",
            "theta_efficient_value": "elasticity of X_ij/X_ii, trade in value at shadow "
                                     "prices (exact AD) = choice + 1 - 1/gamma",
            "theta_decentralized_prop1": "Proposition 1: d log(M_ij/M_ii)/d log p_ij, "
                                         "households re-solved, w, R, lambda fixed (exact AD)",
            "theta_decentralized_extensive": "its extensive (choice) margin, comparable to "
                                             "theta_efficient_choice",
            "aggregate_elasticity": "trade-share-weighted means over partners j != i",
            "welfare_prop4": "dW/dlog d_ij = omega_i sigma_i theta_ij pi_ij L_i/(1-beta); "
                             "gain_pct = percent of everyone's consumption",
        },
    }
    return table, summary


def _normalize_decentralized(td: pd.DataFrame) -> pd.DataFrame:
    """Accept :func:`decentralized_elasticities` or ``world_elasticities(...).pairs``."""
    if "theta_prop1" not in td:
        if "theta" not in td:
            raise ParameterError("decentralized elasticity table needs columns importer, "
                                 "exporter and theta_prop1 (or theta).")
        td = td.rename(columns={"theta": "theta_prop1",
                                "theta_extensive": "theta_prop1_extensive"})
    return td


def _decentralized_table(eq: Equilibrium, tangent_tol) -> pd.DataFrame:
    try:
        from hatrade.analysis.elasticity import world_elasticities
    except ImportError:  # pragma: no cover - the module ships with hatrade
        return decentralized_elasticities(eq, tangent_tol=tangent_tol)
    return _normalize_decentralized(world_elasticities(eq).pairs)


def _ek_countries() -> tuple:
    from hatrade.data import COUNTRIES
    return tuple(COUNTRIES)
