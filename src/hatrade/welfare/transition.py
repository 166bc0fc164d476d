r"""Who gains along a transition: every state's equivalent variation at t = 0.

A household in state :math:`(a, z)` of country i at the reform (t = 0, assets carried in at
the old return :math:`R_0`) gets the value :math:`V_0(a, z)` of the path it faces
(:attr:`hatrade.analysis.transition.Transition.V0`). Its equivalent variation is the
scaling :math:`\lambda` of all its income at the *old* steady state's prices that gives it
the same value,

.. math::

    V^{old}(a, z; \lambda) = V_0(a, z),

the steady-state EV of :mod:`hatrade.welfare.ev` with the path's value as the target
(same inversion, same conventions: income scaled in the budget and the Euler equation,
the first root above 1 for borrowers whose value first falls in :math:`\lambda`). The
steady-state comparison's :math:`V^{old}(\lambda) = V^{new}` is computed beside it.
:math:`V_0` lies on the old steady state's asset grid (that of the assets carried into
t = 0) also when TFP, which scales the grid, changes at t = 0 (docs/transitions.md), so
the comparison is state by state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hatrade.core.x64 import enable_x64
from hatrade.welfare.ev import EVResult, equivalent_variation
from hatrade.welfare.problem import country_index
from hatrade.welfare.summary import (
    QUINTILES,
    expenditure_quintiles,
    group_means,
    income_groups,
)

__all__ = ["TRANSITION_WELFARE_COLUMNS", "TransitionWelfare", "transition_welfare"]

#: Columns of :attr:`TransitionWelfare.table` (one row per state, a-major, 1-based indices).
TRANSITION_WELFARE_COLUMNS = (
    "country",
    "a_index",
    "z_index",
    "a",
    "z",
    "mass",
    "lambda_transition",
    "gain_transition_percent",
    "lambda_steady_state",
    "gain_steady_state_percent",
    "defined_transition",
    "defined_steady_state",
)


@dataclass
class TransitionWelfare:
    """One country's welfare along a transition: per-state table, summary and the EVs."""

    country: str
    table: object  # pandas DataFrame, TRANSITION_WELFARE_COLUMNS
    summary: dict
    ev_transition: EVResult
    ev_steady_state: EVResult


def _table(code, old, ci: int, ev_t: EVResult, ev_s: EVResult):
    import pandas as pd

    mass = np.asarray(old.lam[ci])
    Na, Nz = mass.shape
    ia, iz = np.meshgrid(np.arange(1, Na + 1), np.arange(1, Nz + 1), indexing="ij")
    cols = {
        "country": code,
        "a_index": ia.ravel(),
        "z_index": iz.ravel(),
        "a": np.repeat(np.asarray(old.a_grid[ci]), Nz),
        "z": np.tile(np.asarray(old.income.z), Na),
        "mass": mass.ravel(),
        "lambda_transition": ev_t.lam.ravel(),
        "gain_transition_percent": ev_t.gain_percent.ravel(),
        "lambda_steady_state": ev_s.lam.ravel(),
        "gain_steady_state_percent": ev_s.gain_percent.ravel(),
        "defined_transition": ev_t.defined.ravel(),
        "defined_steady_state": ev_s.defined.ravel(),
    }
    return pd.DataFrame(cols, columns=list(TRANSITION_WELFARE_COLUMNS))


def _means(old, ci: int, gain: np.ndarray, defined: np.ndarray) -> dict:
    mass = np.asarray(old.lam[ci])
    ok = defined & np.isfinite(gain)
    mean = float(np.sum(mass[ok] * gain[ok]) / mass[ok].sum()) if ok.any() else float("nan")
    _, Wq = expenditure_quintiles(old, ci)
    _, Wi = income_groups(old, ci)
    g = np.where(ok, gain, np.nan)
    return {
        "mean_gain_percent": mean,
        "quintile_gain_percent": {k: float(v) for k, v in zip(QUINTILES, group_means(g, Wq))},
        "income_group_gain_percent": {k: float(group_means(g, w[None])[0]) for k, w in Wi.items()},
    }


@enable_x64
def transition_welfare(transition, country, *, value_tol: float = 1e-9, **ev_options):
    r"""Equivalent variations at t = 0 of one country's states, transition and steady state.

    Parameters
    ----------
    transition : Transition
        From :func:`hatrade.analysis.transition.run_transition`.
    country : str or int
    value_tol : float
        States whose path value differs from the old one by at most this (V units) are
        unaffected: :math:`\lambda = 1` (the path's backward pass reproduces the steady
        state's values to about the household tolerance, so a zero change is not mistaken
        for a tiny gain of a borrower, whose EV would be a distant first root above 1).
    **ev_options
        Passed to :func:`hatrade.welfare.ev.equivalent_variation` (``n_nodes``,
        ``verify``, ``lam_tol``, ...).

    Returns
    -------
    TransitionWelfare
        ``table`` (:data:`TRANSITION_WELFARE_COLUMNS`) and ``summary``: mean gains
        (weighted by the old stationary distribution, defined states), means by
        expenditure quintile and income group, for the transition and the steady-state
        comparison, and ``share_losers_transition``: the mass with
        :math:`V_0 < V^{old}` (worse off at the reform).
    """
    old, new = transition.old, transition.new
    ci = country_index(old, country)
    code = old.world.countries[ci]
    V0 = np.asarray(transition.V0[ci], float)
    ev_s = equivalent_variation(old, new, ci, **ev_options)
    V_old = np.asarray(ev_s.V_old, float)
    target = np.where(np.abs(V0 - V_old) <= value_tol, V_old, V0)
    ev_t = equivalent_variation(old, new, ci, target=target, **ev_options)
    mass = np.asarray(old.lam[ci])
    summary = {
        "country": code,
        "transition": _means(old, ci, ev_t.gain_percent, ev_t.defined),
        "steady_state": _means(old, ci, ev_s.gain_percent, ev_s.defined),
        "share_losers_transition": float(mass[target < V_old].sum() / mass.sum()),
        "share_losers_steady_state": float(
            mass[np.asarray(ev_s.V_new) < V_old - value_tol].sum() / mass.sum()
        ),
        "undefined_mass_transition": float(mass[~ev_t.defined].sum() / mass.sum()),
    }
    return TransitionWelfare(
        country=code,
        table=_table(code, old, ci, ev_t, ev_s),
        summary=summary,
        ev_transition=ev_t,
        ev_steady_state=ev_s,
    )
