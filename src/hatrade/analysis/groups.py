r"""Income and expenditure groups of a country's households: the one definition used by
the welfare summaries (:mod:`hatrade.welfare.summary`), the cross-section's micro table
(:mod:`hatrade.analysis.cross_section`) and the calibration's home-share gap
(:mod:`hatrade.calibration.home_share`).

A group is a population quantile range :math:`[q_{lo}, q_{hi}]` of a ranking variable:
labor income :math:`w z` for the income groups (:data:`INCOME_GROUPS`: below and above the
median, the 45-55th percentile band, the bottom and top 20%), expenditure
:math:`e = \sum_j \pi_j p_{ij} c_j` for the quintiles (:data:`QUINTILES`, Q1 the poorest).
States are weighted *exactly* by the stationary distribution :math:`\lambda`: states are
ranked by the variable, and the states with the same value form one block (e.g. all asset
levels of one income state), which is split *proportionally to mass* where it straddles a
quantile boundary (:func:`group_weights`). So every group holds exactly its nominal
population mass, and a state's weight in an income group is
:math:`\lambda(a, z) f(z)` with a fraction :math:`f(z)` of its income state: the weights
are smooth in :math:`\lambda` (the calibration differentiates through them,
:func:`income_fractions`).
"""

from __future__ import annotations

import numpy as np

from hatrade.core.instruments import INCOME_GROUPS, group_weights

__all__ = [
    "INCOME_GROUPS",
    "QUINTILES",
    "expenditure",
    "expenditure_quintile_weights",
    "group_weights",
    "income_fractions",
    "income_group_weights",
    "labor_income",
    "quantile_weights",
]

#: Expenditure quintiles: name -> (lower, upper) quantiles (Q1 the poorest).
QUINTILES: dict[str, tuple[float, float]] = {f"Q{k + 1}": (k / 5, (k + 1) / 5) for k in range(5)}


def quantile_weights(values, mass, groups: dict) -> dict[str, np.ndarray]:
    """:func:`group_weights` of every group of ``groups`` (name -> (lo, hi))."""
    return {name: group_weights(values, mass, lo, hi) for name, (lo, hi) in groups.items()}


def income_fractions(inc, lo: float, hi: float) -> np.ndarray:
    r"""Share of each income state's population inside the labor-income quantile range
    [lo, hi] (Nz,): :math:`f(z)`.

    Within a country the wage is common, so ranking households by labor income
    :math:`w z` is ranking them by :math:`z`, and the :math:`z`-marginal of every
    stationary distribution is the income chain's own stationary distribution (assets do
    not feed back on income). The fractions of :func:`group_weights` therefore depend on
    the income process alone, and the weight of state (a, z) in the group is
    :math:`\lambda(a,z) f(z)` (equal to :func:`income_group_weights` to the tolerance of
    the stationary distribution; fixed fractions keep the calibration's moment smooth).
    """
    dist = np.asarray(inc.dist, float)
    wt = group_weights(np.asarray(inc.z, float), dist, lo, hi)
    return np.divide(wt, dist, out=np.zeros_like(wt), where=dist > 0)


def _index(eq, country) -> int:
    return eq.world.index(country) if isinstance(country, str) else int(country)


def labor_income(eq, country) -> np.ndarray:
    """Labor income :math:`w z` of every state (Na, Nz) of ``country``."""
    i = _index(eq, country)
    Na = eq.lam.shape[1]
    z = np.asarray(eq.income.z)
    return np.asarray(np.broadcast_to(eq.prices.w[i] * z[None, :], (Na, len(z))))


def expenditure(eq, country) -> np.ndarray:
    r"""Expenditure :math:`e(a,z) = \sum_j \pi_j p_{ij} c_j` of every state (Na, Nz)."""
    i = _index(eq, country)
    pol = eq.policies
    return np.sum(pol.pi[i] * pol.c[i] * eq.p[i][None, None, :], axis=-1)


def income_group_weights(eq, country, groups: dict | None = None):
    r"""Labor income (Na, Nz) and the weights of the income groups: {name: (Na Nz,)}
    (states a-major; default :data:`INCOME_GROUPS`), weighted by :math:`\lambda`."""
    i = _index(eq, country)
    inc = labor_income(eq, i)
    return inc, quantile_weights(inc, eq.lam[i], groups or INCOME_GROUPS)


def expenditure_quintile_weights(eq, country):
    r"""Expenditure (Na, Nz) and the weights of the :data:`QUINTILES` (5, Na Nz)."""
    i = _index(eq, country)
    e = expenditure(eq, i)
    return e, np.stack(list(quantile_weights(e, eq.lam[i], QUINTILES).values()))
