r"""The efficient allocation (Proposition 4): the planner's problem and its solution.

A planner with country weights :math:`\omega_i` allocates the world's output in a
stationary environment, with full insurance inside each country. This module solves the
planner's problem for a :class:`~hatrade.core.params.World` (same primitives as the decentralized
model, including the country scaling of :math:`\sigma_i` and :math:`\psi_i`) and gives its
allocation, shadow prices and trade shares.

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

The planner's trade elasticities and the welfare effects of trade costs (Proposition 4) are
in :mod:`hatrade.analysis.planner_prop4`; the comparison with a decentralized equilibrium in
the public entry point :mod:`hatrade.analysis.efficient`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.core.household import utility
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.markets import model_arrays
from hatrade.core.params import Household, ParameterError, World
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "PlannerError",
    "PlannerSolution",
    "solve_planner",
    "planner_arrays",
    "allocation",
    "resource_residual",
    "solve_multipliers",
    "check_equilibrium",
    "WEIGHT_KINDS",
]

log = logging.getLogger(__name__)

WEIGHT_KINDS = ("equal", "matched")


class PlannerError(RuntimeError):
    """The planner's problem has no (numerically found) solution."""


# ----------------------------------------------------------------------------- core (JAX)


def planner_arrays(world: World, hh: Household, inc: IncomeProcess) -> dict:
    """Arrays of the planner's problem; sigma and psi exactly as in the decentralized model."""
    arrs = model_arrays(world, hh, inc)
    mu = np.asarray(inc.dist, float)
    return dict(
        A=arrs.A,
        L=arrs.L,
        d=arrs.d,
        sigma=arrs.sigma,
        psi=arrs.psi,
        mu=jnp.asarray(mu),
        nbar=jnp.asarray(float(mu @ np.asarray(inc.z))),
        gamma=arrs.gamma,
    )


def allocation(log_chi, log_w, log_d, ar):
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
    return dict(
        c=c, mu_c=mu_c, n=n, pi_z=pi_z, pi=pi, U=U, demand=demand, supply=supply, value=value
    )


def resource_residual(log_chi, log_w, log_d, ar):
    r"""Resource constraints in logs, :math:`\log\sum_i L_i\pi_{ij}c_{ij}d_{ij} - \log A_jL_j\bar N`."""
    a = allocation(log_chi, log_w, log_d, ar)
    return jnp.log(a["demand"]) - jnp.log(a["supply"])


def _matched_residual(x, log_d, ar, target_share):
    """Unknowns (log chi, log omega); resource constraints, spending shares, normalization."""
    M = target_share.shape[0]
    log_chi, log_w = x[:M], x[M:]
    a = allocation(log_chi, log_w, log_d, ar)
    E = jnp.sum(a["value"], axis=1)
    share = E / jnp.sum(E)
    L = ar["L"]
    norm = jnp.log(jnp.sum(L * jnp.exp(log_w)) / jnp.sum(L))
    return jnp.concatenate(
        [
            jnp.log(a["demand"]) - jnp.log(a["supply"]),
            jnp.log(share[:-1]) - jnp.log(target_share[:-1]),
            norm[None],
        ]
    )


_res_resource = jax.jit(resource_residual)
_jac_resource = jax.jit(jax.jacfwd(resource_residual, argnums=0))
_res_matched = jax.jit(_matched_residual)
_jac_matched = jax.jit(jax.jacfwd(_matched_residual, argnums=0))


def _newton(F, J, x0, args, *, tol, max_iter, what, max_step=5.0):
    """Newton's method with the exact Jacobian ``J`` (jacfwd) and backtracking on max |F|.

    ``F(x, *args)`` and ``J(x, *args)`` are jitted module-level functions (no retracing).
    """
    x = np.asarray(x0, float)
    r = np.asarray(F(x, *args))
    if not np.all(np.isfinite(r)):
        raise PlannerError(
            f"{what}: the residual is not finite at the starting point; check "
            "that TFP, labor, trade costs and weights are of reasonable size."
        )
    err = float(np.max(np.abs(r)))
    history = [err]
    it = 0
    while err > tol:
        if it >= max_iter:
            raise PlannerError(
                f"{what} did not converge: max residual {err:.3e} after {it} Newton iterations "
                f"(tol {tol:.1e}); history {[f'{h:.1e}' for h in history]}. The world may have "
                "no interior solution (extreme weights, TFP or trade costs)."
            )
        Jx = np.asarray(J(x, *args))
        if not np.all(np.isfinite(Jx)):
            raise PlannerError(f"{what}: the Jacobian has non-finite entries at iteration {it}.")
        try:
            dx = np.linalg.solve(Jx, -r)
        except np.linalg.LinAlgError:
            raise PlannerError(
                f"{what}: singular Jacobian at iteration {it} (max residual "
                f"{err:.3e}); the problem has no locally unique solution."
            ) from None
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
            raise PlannerError(
                f"{what}: line search failed at iteration {it + 1} (max residual "
                f"{err:.3e}, history {[f'{h:.1e}' for h in history]})."
            )
        x, r, err = x_try, r_try, e_try
        it += 1
        history.append(err)
        log.debug("%s: Newton %d, step %.3g, max residual %.3e", what, it, step, err)
    return x, it, history


def solve_multipliers(log_chi0, log_w, log_d, ar, *, tol: float, max_iter: int, what: str):
    r"""Multipliers :math:`\log\chi` that clear the resource constraints at fixed weights.

    Newton's method (exact Jacobian, backtracking) on :func:`resource_residual` from
    ``log_chi0``, for weights ``log_w`` and trade costs ``log_d``.

    Returns
    -------
    log_chi : ndarray (M,)
    iterations : int
    history : list of float
        Max absolute residual after each iteration.

    Raises
    ------
    PlannerError
        When Newton's method fails.
    """
    return _newton(
        _res_resource,
        _jac_resource,
        log_chi0,
        (log_w, log_d, ar),
        tol=tol,
        max_iter=max_iter,
        what=what,
    )


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
        return pd.Series(
            self.shadow_prices * self.world.tfp, index=list(self.countries), name="shadow_wage"
        )

    @property
    def spending(self) -> np.ndarray:
        r""":math:`X_{ij} = L_i\pi_{ij} q_j d_{ij} c_{ij}` (importer rows)."""
        return (
            self.world.labor[:, None]
            * self.pi
            * self.shadow_prices[None, :]
            * self.world.d
            * self.c
        )

    @property
    def trade_shares(self) -> np.ndarray:
        """:math:`s_{ij} = X_{ij}/\\sum_k X_{ik}` (importer rows, sum to one)."""
        X = self.spending
        return X / X.sum(axis=1, keepdims=True)

    @property
    def import_share(self) -> pd.Series:
        return pd.Series(
            1.0 - np.diag(self.trade_shares), index=list(self.countries), name="import_share"
        )

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
        rows = [
            (c[i], c[j], s[i, j], np.log(s[i, j] / s[i, i]))
            for i in range(self.M)
            for j in range(self.M)
        ]
        return pd.DataFrame(rows, columns=["importer", "exporter", "share", "log_normalized_model"])

    def allocation_table(self) -> pd.DataFrame:
        """Long table per pair: consumption, choice share, spending, trade share, theta."""
        c = list(self.countries)
        M = self.M
        imp = np.repeat(c, M)
        exp_ = np.tile(c, M)
        return pd.DataFrame(
            {
                "importer": imp,
                "exporter": exp_,
                "consumption_units": self.c.ravel(),
                "choice_share": self.pi.ravel(),
                "shadow_price_delivered": (self.shadow_prices[None, :] * self.world.d).ravel(),
                "spending_value": self.spending.ravel(),
                "trade_share": self.trade_shares.ravel(),
                "theta_prop4": self.theta.ravel(),
            }
        )

    def country_table(self) -> pd.DataFrame:
        """Per country: weight, multiplier, shadow wage, resources, spending, import share,
        expected period utility per person."""
        X = self.spending
        return pd.DataFrame(
            {
                "weight": self.weights,
                "chi_utils_per_unit": self.chi,
                "shadow_wage": self.shadow_wages.values,
                "resources_units": self.resources,
                "spending_value": X.sum(axis=1),
                "import_share": self.import_share.values,
                "utility_per_person": self.U,
            },
            index=pd.Index(list(self.countries), name="country"),
        )

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
        raise ParameterError(
            f"weights = {weights!r} is not allowed: weights must be "
            f"{WEIGHT_KINDS} or {world.M} positive numbers."
        ) from None
    if w.ndim != 1 or w.shape[0] != world.M:
        raise ParameterError(
            f"weights has shape {w.shape}; it must have {world.M} entries, one per "
            f"country ({', '.join(world.countries)})."
        )
    bad = [world.countries[k] for k in np.flatnonzero(~np.isfinite(w) | (w <= 0))]
    if bad:
        raise ParameterError(
            f"weights must be positive and finite; not so for {bad} "
            f"(values {[float(w[world.index(b)]) for b in bad]})."
        )
    return w


def check_equilibrium(eq, world: World) -> Equilibrium:
    """``eq`` itself if it is an equilibrium of ``world`` with positive spending.

    Raises
    ------
    ParameterError
        Not an Equilibrium, other countries, or non-positive / non-finite spending.
    """
    if not isinstance(eq, Equilibrium):
        raise ParameterError(
            f"eq must be a hatrade.solve.equilibrium.Equilibrium, got {type(eq).__name__}."
        )
    if tuple(eq.countries) != tuple(world.countries):
        raise ParameterError(
            f"the equilibrium's countries {list(eq.countries)} differ from the "
            f"world's {list(world.countries)}."
        )
    S = eq.spending.sum(axis=1)
    if not np.all(np.isfinite(S)) or np.any(S <= 0):
        raise ParameterError(
            "the equilibrium has non-positive or non-finite spending "
            f"{S.tolist()}; matched weights need positive spending."
        )
    return eq


def _initial_weights(weights, world: World, eq: Equilibrium | None) -> tuple[str, np.ndarray]:
    """The kind of weights ("equal", "matched", "given") and the starting weights per person."""
    if not isinstance(weights, str):
        return "given", _check_weights(weights, world)
    if weights not in WEIGHT_KINDS:
        raise ParameterError(
            f"weights = {weights!r} is not allowed: use one of {WEIGHT_KINDS} "
            f"or an array of {world.M} positive numbers."
        )
    if weights == "matched" and eq is None:
        raise ParameterError(
            "weights='matched' needs a decentralized equilibrium: pass eq=... "
            "(e.g. hatrade.evaluate at published prices)."
        )
    return weights, np.ones(world.M)


def _solve_unknowns(kind, w0, world, household, eq, ar, log_d, *, tol, max_iter):
    r"""Newton on the multipliers at the starting weights, then (``"matched"``) jointly on
    multipliers and weights. Returns log chi, log omega, iterations, residual history."""
    # start: chi_j = omega_j u'(A_j Nbar) (own output consumed at home)
    chi0 = w0 * (world.tfp * float(ar["nbar"])) ** (-household.gamma)
    x, its, hist = solve_multipliers(
        np.log(chi0),
        jnp.log(jnp.asarray(w0)),
        log_d,
        ar,
        tol=tol,
        max_iter=max_iter,
        what="planner (resource constraints)",
    )
    log_w = np.log(w0)
    if kind == "matched":
        S = eq.spending.sum(axis=1)
        target = jnp.asarray(S / S.sum())
        xx, its2, hist2 = _newton(
            _res_matched,
            _jac_matched,
            np.concatenate([x, log_w]),
            (log_d, ar, target),
            tol=tol,
            max_iter=max_iter,
            what="planner with matched weights",
        )
        x, log_w = xx[: world.M], xx[world.M :]
        its += its2
        hist = hist + hist2
    return x, log_w, its, hist


@enable_x64
def solve_planner(
    world: World,
    household: Household,
    weights="equal",
    eq: Equilibrium | None = None,
    *,
    income: IncomeProcess | None = None,
    beta: float | None = None,
    tol: float = 1e-13,
    max_iter: int = 100,
) -> PlannerSolution:
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
        raise ParameterError(
            f"household must be a hatrade.Household, got {type(household).__name__}."
        )
    if eq is not None:
        check_equilibrium(eq, world)
    inc = income or (eq.income if eq is not None else income_process(household))
    if world.has_tariffs:
        log.info("planner: tariffs are transfers, not resource costs; the planner ignores them")
    kind, w0 = _initial_weights(weights, world, eq)
    ar = planner_arrays(world, household, inc)
    log_d = jnp.log(ar["d"])
    x, log_w, its, hist = _solve_unknowns(
        kind, w0, world, household, eq, ar, log_d, tol=tol, max_iter=max_iter
    )
    a = {
        k: np.asarray(v)
        for k, v in allocation(jnp.asarray(x), jnp.asarray(log_w), log_d, ar).items()
    }
    rel = a["demand"] / a["supply"] - 1.0
    res = float(np.max(np.abs(rel)))
    if not np.isfinite(res) or res > 1e-8:
        raise PlannerError(
            f"planner: resource constraints violated after Newton (max relative error {res:.2e})."
        )
    chi = np.exp(x)
    # numeraire: world spending = decentralized world spending, else mean shadow wage = 1
    if eq is not None:
        kappa = float(a["value"].sum() / eq.spending.sum())
    else:
        kappa = float(np.mean(chi * world.tfp))
    b = beta if beta is not None else (eq.beta if eq is not None else household.beta)
    sol = PlannerSolution(
        world=world,
        household=household,
        income=inc,
        weights=np.exp(log_w),
        weights_kind=kind,
        chi=chi,
        c=a["c"],
        pi_z=a["pi_z"],
        pi=a["pi"],
        U=a["U"],
        sigma=np.asarray(ar["sigma"]),
        kappa=kappa,
        beta=None if b is None else float(b),
        resource_error=res,
        iterations=its,
        history=hist,
        seconds=time.perf_counter() - t0,
    )
    log.info("planner (%s weights): %d Newton iterations, max resource error %.1e", kind, its, res)
    return sol
