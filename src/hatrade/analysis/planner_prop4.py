r"""Proposition 4: trade elasticities and welfare effects of trade costs in the efficient allocation.

The planner's problem and its notation are in :mod:`hatrade.analysis.planner`.

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

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.analysis.planner import (
    PlannerSolution,
    allocation,
    planner_arrays,
    resource_residual,
    solve_multipliers,
)
from hatrade.core.household import utility
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64

__all__ = [
    "PlannerWelfareGain",
    "efficient_elasticities",
    "aggregate_elasticities",
    "planner_welfare_gain",
]

# ----------------------------------------------------------------------------- elasticities


def _fixed(planner: PlannerSolution):
    ar = planner_arrays(planner.world, planner.household, planner.income)
    return ar, jnp.log(jnp.asarray(planner.chi)), jnp.log(jnp.asarray(planner.weights))


@jax.jit
def _elasticity_arrays(lc, lw, log_d0, ar):
    """Own-pair derivatives at fixed (chi, omega): by z (M, M, Nz), choice (M, M), value (M, M)."""
    M = log_d0.shape[0]
    i, j = jnp.meshgrid(jnp.arange(M), jnp.arange(M), indexing="ij")

    def choice_z(ld):
        lp = jnp.log(allocation(lc, lw, ld, ar)["pi_z"])  # (M, Nz, M)
        own = jnp.einsum("izi->iz", lp)
        return jnp.swapaxes(lp - own[:, :, None], 1, 2)  # (M, M, Nz)

    def choice(ld):
        lp = jnp.log(allocation(lc, lw, ld, ar)["pi"])
        return lp - jnp.diag(lp)[:, None]

    def value(ld):
        lx = jnp.log(allocation(lc, lw, ld, ar)["value"])
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
    return pd.DataFrame(
        {
            "importer": np.asarray(c)[i[off]],
            "exporter": np.asarray(c)[j[off]],
            "trade_share": s[off],
            "theta_prop4": th4[off],
            "theta_choice_by_z_ad": dz.mean(axis=2)[off],
            "max_dev_by_z": np.max(np.abs(dz - th4[:, :, None]), axis=2)[off],
            "theta_choice_ad": th_c[off],
            "theta_value_ad": th_v[off],
        }
    )


def aggregate_elasticities(table: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Country aggregates: trade-share-weighted means over partners j != i (importer rows)."""
    columns = columns or [c for c in table.columns if c.startswith("theta")]
    g = table.groupby("importer", sort=False)
    out = {
        col: g.apply(
            lambda t, col=col: float(np.sum(t[col] * t["trade_share"]) / np.sum(t["trade_share"])),
            include_groups=False,
        )
        for col in columns
    }
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
        out = {
            "change": self.change,
            "beta": self.beta,
            "pairs": int(len(self.pairs)),
            "dW_first_order_utils": self.dW_first_order,
            "gain_pct_first_order": self.gain_pct_first_order,
        }
        if self.dW_exact is not None:
            out.update(
                dW_exact_utils=self.dW_exact,
                gain_pct_exact=self.gain_pct_exact,
                max_abs_formula_error=self.max_abs_formula_error,
            )
        if self.by_country is not None:
            out["by_country"] = {
                k: {c: float(v) for c, v in row.items()}
                for k, row in self.by_country.to_dict(orient="index").items()
            }
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
                raise ParameterError(
                    f"{what} contains unknown country code {k!r}; allowed: {', '.join(c)}."
                )
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
    U = lambda ld, x: allocation(x, lw, ld, ar)["U"]  # noqa: E731
    Fc = jax.jacfwd(lambda x: resource_residual(x, lw, log_d0, ar))(lc)  # (M, M)
    Fd = jax.jacfwd(lambda ld: resource_residual(lc, lw, ld, ar))(log_d0)  # (M, M, M)
    dchi = -jnp.linalg.solve(Fc, Fd.reshape(M, M * M)).reshape(M, M, M)
    Ud = jax.jacfwd(lambda ld: U(ld, lc))(log_d0)
    Uc = jax.jacfwd(lambda x: U(log_d0, x))(lc)
    return Ud + jnp.einsum("ik,kab->iab", Uc, dchi)


@enable_x64
def planner_welfare_gain(
    planner: PlannerSolution,
    *,
    change: float = 0.9,
    importers=None,
    exporters=None,
    beta: float | None = None,
    exact: bool = False,
) -> PlannerWelfareGain:
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
        raise ParameterError(
            f"beta = {b!r}: planner_welfare_gain needs a discount factor in (0, 1); "
            "pass beta=... or solve the planner with eq=... ."
        )
    if not (np.isfinite(change) and change > 0):
        raise ParameterError(
            f"change = {change!r} is not allowed: it must be a positive number (d' = change * d)."
        )
    mask = _pair_mask(planner, importers, exporters)
    L, w = planner.world.labor, planner.weights
    th = planner.theta
    dW = w[:, None] * planner.sigma[:, None] * th * planner.pi * L[:, None] / (1.0 - b)
    dW_lambda = float(
        np.sum(w * L * np.sum(planner.pi * planner.c ** (1.0 - planner.household.gamma), axis=1))
        / (1.0 - b)
    )
    dlog = float(np.log(change))
    dW1 = float(np.sum(dW[mask]) * dlog)
    c = np.asarray(planner.countries)
    ii, jj = np.nonzero(mask)
    pairs = pd.DataFrame(
        {
            "importer": c[ii],
            "exporter": c[jj],
            "theta_prop4": th[ii, jj],
            "choice_share": planner.pi[ii, jj],
            "dW_dlogd_prop4": dW[ii, jj],
        }
    )
    out = dict(
        pairs=pairs,
        change=float(change),
        beta=float(b),
        dW_first_order=dW1,
        gain_pct_first_order=100.0 * dW1 / dW_lambda,
    )
    if exact:
        out.update(_exact_gain(planner, mask, dlog, b, dW, pairs))
    return PlannerWelfareGain(**out)


def _exact_gain(planner: PlannerSolution, mask, dlog, b, dW, pairs) -> dict:
    """The ``exact=True`` part of :func:`planner_welfare_gain`: the AD derivative (added to
    ``pairs``), the re-solve at the new trade costs and the consumption equivalents."""
    L, w = planner.world.labor, planner.weights
    ii, jj = np.nonzero(mask)
    out = {}
    ar, lc, lw = _fixed(planner)
    dU = np.asarray(_utility_derivative(lc, lw, jnp.log(ar["d"]), ar))  # dU_i/dlog d_ab
    dW_ad = np.einsum("i,iab->ab", w * L, dU) / (1.0 - b)
    pairs["dW_dlogd_ad"] = dW_ad[ii, jj]
    out["max_abs_formula_error"] = float(np.max(np.abs(dW_ad[mask] - dW[mask])))
    # re-solve at the new trade costs (weights fixed; no floor at 1, as in docs/model.md 5)
    log_d_new = jnp.log(ar["d"]) + jnp.asarray(mask * dlog)
    x_new, _, _ = solve_multipliers(
        np.log(planner.chi),
        lw,
        log_d_new,
        ar,
        tol=1e-13,
        max_iter=100,
        what="planner at the new trade costs",
    )
    U_new = np.asarray(allocation(jnp.asarray(x_new), lw, log_d_new, ar)["U"])
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
    out["by_country"] = pd.DataFrame(
        {
            "gain_pct_first_order_ad": 100.0 * dUsel / Ulam,
            "gain_pct_exact": pct_i,
            "utility_change": U_new - planner.U,
        },
        index=pd.Index(list(planner.countries), name="country"),
    )
    return out
