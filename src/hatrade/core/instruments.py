r"""Policy instruments beyond tariffs: how tariff revenue is rebated, and a labor-income tax.

A country's households receive, besides the return on their bonds, the non-asset income

.. math::

    y_i(z) = (1 - \tau_i)\, w_i z + \tau_i w_i + T_i\, r_i(z),
    \qquad \sum_z \mu(z)\, r_i(z) = 1,

with :math:`\tau_i \in [0, 1)` a proportional tax on labor income whose revenue
:math:`\tau_i w_i N_i` is rebated lump sum (:math:`\tau_i w_i` per household, since
:math:`N_i = L_i \sum_z \mu(z) z = L_i`: the :math:`z`-marginal of every stationary
distribution is :math:`\mu`, docs/model.md 1.2), and :math:`T_i` the tariff revenue per
household, :math:`L_i T_i = G_i`, paid out with the **rebate rule** :math:`r_i(z)`
(:data:`REBATE_RULES`):

* ``"lump-sum"``: :math:`r(z) = 1` (the paper's, the default);
* ``"labor-income"``: :math:`r(z) = z` (proportional to labor income :math:`w z`; the mean
  of :math:`z` is one);
* ``"group:<name>"``: :math:`r(z) = f_g(z) / m_g`, only to the income group ``<name>`` of
  :data:`INCOME_GROUPS` (per capita within the group): :math:`f_g(z)` is the share of income
  state :math:`z`'s population inside the group (:func:`rebate_weights`) and
  :math:`m_g = \sum_z \mu(z) f_g(z)` the group's mass.

Revenue rebated equals revenue collected because :math:`\sum_z \mu(z) r(z) = 1`; the labor
tax's budget balances for the same reason. With :math:`\tau = 0` and the lump-sum rule the
household problem is exactly the one without these instruments (the extra income is
``None`` and not even computed, so results are unchanged to the last bit).
"""

from __future__ import annotations

import math

import numpy as np

from hatrade.core.errors import ParameterError

__all__ = [
    "INCOME_GROUPS",
    "REBATE_RULES",
    "check_labor_tax",
    "check_rebate",
    "group_weights",
    "rebate_weights",
]

#: Income groups: name -> (lower, upper) population quantiles of labor income.
INCOME_GROUPS: dict[str, tuple[float, float]] = {
    "below_median": (0.0, 0.5),
    "median_45_55": (0.45, 0.55),
    "above_median": (0.5, 1.0),
    "bottom_20": (0.0, 0.2),
    "top_20": (0.8, 1.0),
}

#: Rebate rules of tariff revenue (``group:<name>`` with a name of :data:`INCOME_GROUPS`).
REBATE_RULES = ("lump-sum", "labor-income") + tuple(f"group:{g}" for g in INCOME_GROUPS)


def _check_groups(v, m, lo, hi):
    if v.shape != m.shape:
        raise ParameterError(f"values and mass must have the same size ({v.size} != {m.size}).")
    if not (0.0 <= lo < hi <= 1.0):
        raise ParameterError(
            f"group quantiles ({lo}, {hi}) are not allowed: need 0 <= lo < hi <= 1."
        )
    if np.any(m < 0) or not np.isfinite(m).all() or m.sum() <= 0:
        raise ParameterError("mass must be finite, non-negative and not all zero.")
    if not np.isfinite(v).all():
        raise ParameterError("the ranking variable has non-finite values.")


def group_weights(values, mass, lo: float, hi: float) -> np.ndarray:
    r"""Exact weights of the population quantile range [lo, hi] of ``values``.

    Households are ranked by ``values``; the group holds the population between the
    ``lo`` and ``hi`` quantiles. States with equal values form one block that is split
    proportionally to mass where it straddles a boundary: with :math:`F^-_b, F^+_b` the
    population shares below and up to block :math:`b`, each state of the block gets the
    fraction :math:`|[F^-_b, F^+_b] \cap [lo, hi]| / (F^+_b - F^-_b)` of its mass, so the
    weights sum to exactly ``(hi - lo) * sum(mass)``.

    Parameters
    ----------
    values : array (n,)
        Ranking variable (e.g. labor income).
    mass : array (n,)
        Non-negative population weights.
    lo, hi : float
        Quantiles, 0 <= lo < hi <= 1.

    Returns
    -------
    ndarray (n,)
        Each state's mass inside the group.
    """
    v = np.asarray(values, float).ravel()
    m = np.asarray(mass, float).ravel()
    _check_groups(v, m, lo, hi)
    total = m.sum()
    levels, inv = np.unique(v, return_inverse=True)
    block = np.bincount(inv, weights=m, minlength=levels.size) / total
    F_hi = np.cumsum(block)
    F_lo = F_hi - block
    overlap = np.clip(np.minimum(F_hi, hi) - np.maximum(F_lo, lo), 0.0, None)
    frac = np.divide(overlap, block, out=np.zeros_like(block), where=block > 0)
    return m * frac[inv]


def check_rebate(rule, field: str = "rebate") -> str:
    """``rule`` if it is one of :data:`REBATE_RULES`, else a one-line ParameterError."""
    if not isinstance(rule, str) or rule not in REBATE_RULES:
        raise ParameterError(
            f"{field} = {rule!r} is not allowed: use one of {', '.join(REBATE_RULES)}."
        )
    return rule


def check_labor_tax(rate, field: str = "labor_tax") -> float:
    """A labor-income tax rate as a float in [0, 1), else a one-line ParameterError."""
    try:
        v = float(rate)
    except (TypeError, ValueError):
        raise ParameterError(f"{field} = {rate!r} is not allowed: it must be a number.") from None
    if not (math.isfinite(v) and 0.0 <= v < 1.0):
        raise ParameterError(
            f"{field} = {rate!r} is not allowed: a labor-income tax rate must be finite, "
            ">= 0 and < 1."
        )
    return v


def rebate_weights(rule: str, z, dist) -> np.ndarray:
    r"""The rebate weights :math:`r(z)` (Nz,) of a rule, with :math:`\sum_z \mu(z) r(z) = 1`.

    Parameters
    ----------
    rule : one of :data:`REBATE_RULES`.
    z, dist : (Nz,) income levels and their stationary distribution :math:`\mu`.

    Raises
    ------
    ParameterError
        An unknown rule, or a group that holds no mass under ``dist``.
    """
    check_rebate(rule)
    z = np.asarray(z, float)
    mu = np.asarray(dist, float)
    if rule == "lump-sum":
        return np.ones_like(z)
    if rule == "labor-income":
        return z / float(mu @ z)
    name = rule.split(":", 1)[1]
    lo, hi = INCOME_GROUPS[name]
    wt = group_weights(z, mu, lo, hi)
    mass = float(wt.sum())
    if not mass > 0:
        raise ParameterError(f"rebate = {rule!r} is not allowed: the group {name} has no mass.")
    f = np.divide(wt, mu, out=np.zeros_like(wt), where=mu > 0)
    return f / mass
