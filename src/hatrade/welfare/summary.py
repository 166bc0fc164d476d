r"""Country summaries of household welfare: the per-state table, means by expenditure
quintile and income group, losers, social welfare and the ACR benchmark (docs/model.md
section 5).

Means are weighted by the baseline stationary distribution :math:`\lambda`; groups are
those of :mod:`hatrade.analysis.groups` (the same households as the cross-section's micro
table). The ACR benchmark is :math:`100\,(1/\theta) \log(s_{ii}/s'_{ii})` with the trade
elasticity :math:`\theta` (:data:`ACR_THETA`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hatrade.analysis.groups import (
    QUINTILES,
    expenditure_quintile_weights,
    income_group_weights,
)
from hatrade.core.x64 import enable_x64
from hatrade.data.published import published
from hatrade.welfare.ev import EVResult, equivalent_variation
from hatrade.welfare.lucas import consumption_equivalent
from hatrade.welfare.problem import country_index

__all__ = [
    "ACR_THETA",
    "WELFARE_COLUMNS",
    "CountryWelfare",
    "acr_gain",
    "country_welfare",
    "expenditure_quintiles",
    "group_means",
    "income_groups",
    "welfare",
]

#: Trade elasticity of the ACR benchmark (docs/model.md 5: 100 (1/4.22) log(s_ii/s_ii')).
ACR_THETA: float = published("acr_theta").value

#: Columns of ``welfare.csv`` (one row per state of each reported country).
WELFARE_COLUMNS = (
    "country",
    "a_index",
    "z_index",
    "assets",
    "z",
    "mass",
    "lambda",
    "gain_percent",
    "cev_percent",
    "ev_residual",
    "ev_residual_verified",
    "ev_gain_error_estimate_points",
    "ev_defined",
    "ev_first_root_above_one",
)


@enable_x64
def acr_gain(old, new, country, theta: float = ACR_THETA) -> float:
    r"""ACR benchmark in percent: :math:`100 (1/\theta) \log(s_{ii}/s'_{ii})`."""
    i = country_index(old, country)
    return 100.0 / theta * math.log(old.trade_shares[i, i] / new.trade_shares[i, i])


def group_means(values, W) -> np.ndarray:
    """Mass-weighted mean of ``values`` (states) in each group (rows of W); states where
    ``values`` is NaN are left out (the group's weights renormalized)."""
    v = np.ravel(values)
    ok = np.isfinite(v)
    Wk = W[:, ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (Wk @ v[ok]) / Wk.sum(axis=1)


def expenditure_quintiles(eq, country):
    r"""Expenditure :math:`e(a,z) = \sum_j \pi_j p_j c_j` and quintile weights (5, n)
    (:func:`hatrade.analysis.groups.expenditure_quintile_weights`)."""
    return expenditure_quintile_weights(eq, country)


def income_groups(eq, country):
    r"""Labor income :math:`w z` (Na, Nz) and the weights of the income groups
    {group: weights (n,)} (:func:`hatrade.analysis.groups.income_group_weights`: below/above
    median, the 45-55th percentile band, bottom/top 20%; ties split by mass)."""
    return income_group_weights(eq, country)


@dataclass
class CountryWelfare:
    """Welfare of one country's households: per-state table and summary."""

    country: str
    ev: EVResult
    cev: np.ndarray
    table: object  # pandas DataFrame (WELFARE_COLUMNS)
    summary: dict


def _table(ev: EVResult, cev_pc, old, ci: int):
    """The per-state table (:data:`WELFARE_COLUMNS`), rows a-major, indices 1-based."""
    import pandas as pd

    mass = old.lam[ci]
    Na, Nz = mass.shape
    ia, iz = np.meshgrid(np.arange(1, Na + 1), np.arange(1, Nz + 1), indexing="ij")
    return pd.DataFrame(
        {
            "country": ev.country,
            "a_index": ia.ravel(),
            "z_index": iz.ravel(),
            "assets": np.repeat(old.a_grid[ci], Nz),
            "z": np.tile(np.asarray(old.income.z), Na),
            "mass": mass.ravel(),
            "lambda": ev.lam.ravel(),
            "gain_percent": ev.gain_percent.ravel(),
            "cev_percent": cev_pc.ravel(),
            "ev_residual": ev.residual.ravel(),
            "ev_residual_verified": ev.verified,
            # without verification: the interpolation error estimate of gain_percent
            "ev_gain_error_estimate_points": (
                np.full(Na * Nz, np.nan)
                if ev.verified or ev.lam_error_estimate is None
                else 100.0 * np.asarray(ev.lam_error_estimate).ravel()
            ),
            "ev_defined": ev.defined.ravel(),
            # dV/dlam <= 0 at 1 (borrowers near the limit): lambda is the first root above 1
            "ev_first_root_above_one": (ev.nonmonotone & ev.defined).ravel(),
        },
        columns=list(WELFARE_COLUMNS),
    )


def _ev_summary(ev: EVResult, cev_pc, mass) -> dict:
    """The EV's accuracy, work and the states where it is special or undefined."""
    ok, wsum, est = ev.defined, mass.sum(), ev.residual_estimate
    return {
        "verified": ev.verified,
        "max_abs_residual": ev.max_residual,
        "max_residual_estimate": float(np.nanmax(est))
        if np.any(np.isfinite(est))
        else float("nan"),
        "max_gain_error_estimate_points": (
            float(100 * np.nanmax(ev.lam_error_estimate))
            if np.any(np.isfinite(ev.lam_error_estimate))
            else float("nan")
        ),
        "states": int(mass.size),
        "first_root_above_one_states": int((ev.nonmonotone & ok).sum()),
        "first_root_above_one_mass": float(mass[ev.nonmonotone & ok].sum() / wsum),
        "undefined_states": int((~ok).sum()),
        "undefined_mass": float(mass[~ok].sum() / wsum),
        "undefined_cev_percent_mean": float(np.sum(mass[~ok] * cev_pc[~ok]) / mass[~ok].sum())
        if (~ok).any()
        else None,
        "unbracketed_states": int((ok & ~ev.bracketed).sum()),
        "nodes": ev.nodes.tolist(),
        "work": ev.work,
    }


def _cev_summary(ev: EVResult, cev_pc, split_err: float, mass, tol: float) -> dict:
    """Agreement of the EV and the Lucas measure in sign, and the policy-evaluation check."""
    ok, gain = ev.defined, ev.gain_percent
    dV = ev.V_new - ev.V_old
    better, worse = dV > tol, dV < -tol
    agree = np.where(ok, (np.sign(np.round(gain, 10)) == np.sign(np.round(cev_pc, 10))), True)
    sign_ok = ((cev_pc > 0) == better) | ~(better | worse)
    return {
        "policy_evaluation_error": split_err,
        "ev_sign_agreement_share": float(np.mean(agree[ok])) if ok.any() else None,
        "ev_sign_disagreement_mass": float(mass[~agree].sum() / mass.sum()),
        "sign_matches_value_change": bool(np.all(sign_ok)),
    }


def _social_welfare(old, new, ci: int, ev: EVResult) -> dict:
    """Distribution-weighted V before and after, split into households and distribution."""
    W_old = float(np.sum(old.lam[ci] * ev.V_old))
    W_new = float(np.sum(new.lam[ci] * ev.V_new))
    W_new_old_dist = float(np.sum(old.lam[ci] * ev.V_new))
    return {
        "old": W_old,
        "new": W_new,
        "new_at_old_distribution": W_new_old_dist,
        "change": W_new - W_old,
        "change_households": W_new_old_dist - W_old,
        "change_distribution": W_new - W_new_old_dist,
    }


def _summary(
    old, new, ci: int, ev: EVResult, cev_pc, split_err: float, theta: float, tol: float
) -> dict:
    mass = old.lam[ci]
    gain = ev.gain_percent
    _, Wq = expenditure_quintile_weights(old, ci)
    _, Wi = income_group_weights(old, ci)
    wsum = mass.sum()
    ok = ev.defined
    mean_gain = float(np.sum(mass[ok] * gain[ok]) / mass[ok].sum()) if ok.any() else float("nan")
    dV = ev.V_new - ev.V_old
    return {
        "mean_gain_percent": mean_gain,
        "median_gain_percent": _weighted_median(gain[ok], mass[ok]) if ok.any() else float("nan"),
        "mean_cev_percent": float(np.nansum(mass * cev_pc) / wsum),
        "acr_percent": acr_gain(old, new, ci, theta),
        "acr_theta": theta,
        "share_losers": float(np.sum(mass[dV < -tol]) / wsum),
        "quintile_gain_percent": {k: float(v) for k, v in zip(QUINTILES, group_means(gain, Wq))},
        "quintile_cev_percent": {k: float(v) for k, v in zip(QUINTILES, group_means(cev_pc, Wq))},
        "income_group_gain_percent": {
            k: float(group_means(gain, w[None])[0]) for k, w in Wi.items()
        },
        "min_gain_percent": float(np.nanmin(gain)) if ok.any() else float("nan"),
        "max_gain_percent": float(np.nanmax(gain)) if ok.any() else float("nan"),
        "social_welfare": _social_welfare(old, new, ci, ev),
        "home_share": {
            "old": float(old.trade_shares[ci, ci]),
            "new": float(new.trade_shares[ci, ci]),
        },
        "ev": _ev_summary(ev, cev_pc, mass),
        "cev": _cev_summary(ev, cev_pc, split_err, mass, tol),
    }


@enable_x64
def country_welfare(
    cf_or_old,
    new=None,
    country=None,
    *,
    verify: bool = False,
    n_nodes: int = 8,
    theta: float = ACR_THETA,
    hh_tol: float = 1e-12,
    tol: float = 1e-10,
    reference_seconds: float | None = None,
) -> CountryWelfare:
    """EV, CEV and summaries for one country of a counterfactual.

    Parameters
    ----------
    cf_or_old : Counterfactual or Equilibrium (then ``new`` is the new equilibrium)
    country : str
    verify, n_nodes, hh_tol, tol : see :func:`hatrade.welfare.ev.equivalent_variation`.
    theta : trade elasticity of the ACR benchmark.

    Notes
    -----
    Means are weighted by the baseline stationary distribution; the
    EV statistics leave out states where the EV is undefined (``ev.defined``; their mass
    is ``ev.undefined_mass`` and their mean Lucas gain is reported); a household *loses*
    when :math:`V^{new} < V^{old} - tol` (a comparison of values, so it is meaningful in
    every state).
    """
    old, new = (cf_or_old.baseline, cf_or_old.new) if new is None else (cf_or_old, new)
    ci = old.world.index(country)
    ev = equivalent_variation(
        old,
        new,
        country,
        n_nodes=n_nodes,
        verify=verify,
        tol=tol,
        hh_tol=hh_tol,
        reference_seconds=reference_seconds,
    )
    g, split_err = consumption_equivalent(old, ev.V_new, country)
    cev_pc = 100.0 * g
    return CountryWelfare(
        country=ev.country,
        ev=ev,
        cev=g,
        table=_table(ev, cev_pc, old, ci),
        summary=_summary(old, new, ci, ev, cev_pc, split_err, theta, tol),
    )


def _weighted_median(x, w):
    x, w = np.ravel(x), np.ravel(w)
    o = np.argsort(x)
    c = np.cumsum(w[o]) / w.sum()
    return float(x[o][np.searchsorted(c, 0.5)])


def welfare(cf, countries=None, **kw) -> dict:
    """:func:`country_welfare` for several countries of a Counterfactual: {code: result}."""
    countries = list(cf.countries) if countries is None else list(countries)
    return {c: country_welfare(cf, country=c, **kw) for c in countries}
