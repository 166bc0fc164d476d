r"""Welfare criteria of a policy for one country's households, relative to the baseline.

A criterion is a mass-weighted mean gain over a set of households, with the weights of the
*baseline* stationary distribution :math:`\lambda^0(a,z)` (docs/policy.md section 2):

* ``"utilitarian"``: all households;
* ``"quintile:Q1"`` .. ``"quintile:Q5"``: an expenditure quintile of the baseline
  (:data:`hatrade.analysis.groups.QUINTILES`, Q1 the poorest);
* ``"group:<name>"``: an income group (:data:`hatrade.analysis.groups.INCOME_GROUPS`);
* ``"real_income"``: not a household mean but the country's real spending per person,
  :math:`100\,(e_i P_i^0/(e_i^0 P_i) - 1)` with :math:`e_i = \sum_j M_{ij}/L_i` and the
  logit price index :math:`P_i = (\sum_j p_{ij}^{-1/\sigma_i})^{-\sigma_i}`: the welfare of
  the Armington model the log model reduces to (docs/policy.md section 4).

The gain of a state is measured by the equivalent variation (:mod:`hatrade.welfare.ev`,
``measure="ev"``) or by the consumption equivalent (:mod:`hatrade.welfare.lucas`,
``measure="ce"``): :math:`(1+g)^{1-\gamma} U_c + U_\psi = V^{new}` with the baseline's
:math:`U_c, U_\psi`, a smooth closed-form function of :math:`V^{new}` (:func:`ce_of_value`),
which is what the optimizer differentiates. The share of households who lose
(:math:`V^{new} < V^{old}`) is reported, never optimized.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from hatrade.analysis.groups import (
    INCOME_GROUPS,
    QUINTILES,
    expenditure_quintile_weights,
    income_group_weights,
)
from hatrade.core.household import policies
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.welfare.lucas import value_split
from hatrade.welfare.problem import household_problem

__all__ = [
    "CRITERIA",
    "CEMap",
    "CriteriaPanel",
    "Criterion",
    "ce_map",
    "ce_of_value",
    "criterion_weights",
    "evaluate_criteria",
    "parse_criterion",
    "price_index",
]

#: Every criterion string :func:`parse_criterion` accepts.
CRITERIA = (
    ("utilitarian",)
    + tuple(f"quintile:{q}" for q in QUINTILES)
    + tuple(f"group:{g}" for g in INCOME_GROUPS)
    + ("real_income",)
)


@dataclass(frozen=True)
class Criterion:
    """A parsed criterion: ``kind`` in {"utilitarian", "quintile", "group", "real_income"}
    and the quintile or group ``name`` (None otherwise)."""

    text: str
    kind: str
    name: str | None = None

    @property
    def household_mean(self) -> bool:
        """Whether it is a mean of household gains (all but ``real_income``)."""
        return self.kind != "real_income"


def parse_criterion(text, field: str = "criterion") -> Criterion:
    """``"utilitarian"``, ``"quintile:Q1"``, ``"group:bottom_20"``, ``"real_income"``.

    Raises a one-line ParameterError naming the allowed values otherwise.
    """
    if isinstance(text, Criterion):
        return text
    if not isinstance(text, str) or text not in CRITERIA:
        raise ParameterError(
            f"{field} = {text!r} is not allowed: use one of {', '.join(CRITERIA)}."
        )
    kind, _, name = text.partition(":")
    return Criterion(text=text, kind=kind, name=name or None)


def criterion_weights(baseline, country, criterion) -> np.ndarray | None:
    """The baseline mass of every state (Na, Nz) inside the criterion's set of households
    (None for ``real_income``). Raises ParameterError when that set has no mass."""
    crit = parse_criterion(criterion)
    i = baseline.world.index(country)
    lam = np.asarray(baseline.lam[i])
    if crit.kind == "real_income":
        return None
    if crit.kind == "utilitarian":
        W = lam.copy()
    elif crit.kind == "quintile":
        _, Wq = expenditure_quintile_weights(baseline, i)
        W = Wq[list(QUINTILES).index(crit.name)].reshape(lam.shape)
    else:
        _, Wi = income_group_weights(baseline, i)
        W = Wi[crit.name].reshape(lam.shape)
    if not W.sum() > 0:
        raise ParameterError(
            f"criterion = {crit.text!r} is not defined for {country}: the group has no mass."
        )
    return W


@dataclass(frozen=True)
class CEMap:
    """The baseline's policy evaluation for the consumption equivalent of one country."""

    U_c: np.ndarray
    U_psi: np.ndarray
    gamma: float
    beta: float


def ce_map(baseline, country) -> CEMap:
    """:math:`U_c, U_\\psi` of the baseline allocation (:func:`hatrade.welfare.value_split`)."""
    U_c, U_psi, _ = value_split(baseline, country)
    return CEMap(U_c, U_psi, float(baseline.household.gamma), float(baseline.beta))


def ce_of_value(cm: CEMap, V):
    r"""Consumption equivalent :math:`g` (fraction) of new values ``V`` (JAX-differentiable).

    :math:`g = e^{(1-\beta)(V - U_c - U_\psi)} - 1` at :math:`\gamma = 1`, else
    :math:`((V - U_\psi)/U_c)^{1/(1-\gamma)} - 1`.
    """
    if abs(cm.gamma - 1.0) < 1e-12:
        return jnp.exp((1.0 - cm.beta) * (V - cm.U_c - cm.U_psi)) - 1.0
    return ((V - cm.U_psi) / cm.U_c) ** (1.0 / (1.0 - cm.gamma)) - 1.0


def price_index(p, sigma):
    r"""Logit price index :math:`(\sum_j p_j^{-1/\sigma})^{-\sigma}` along the last axis."""
    return jnp.sum(p ** (-1.0 / sigma[..., None]), axis=-1) ** (-sigma)


def real_income_gain(baseline, new, i: int) -> float:
    """The ``real_income`` criterion in percent."""
    sig = np.asarray(
        baseline.household.sigma_eps * baseline.world.tfp[i] ** (1 - baseline.household.gamma)
    )

    def real(eq):
        e = np.sum(eq.aggregates["M"][i]) / eq.world.labor[i]
        return e / float(price_index(jnp.asarray(eq.p[i]), jnp.asarray(sig)))

    return 100.0 * (real(new) / real(baseline) - 1.0)


class CriteriaPanel:
    """Every criterion of one country against a baseline, for many new equilibria: the
    weights and the consumption-equivalent map are computed once."""

    @enable_x64
    def __init__(self, baseline, country):
        self.baseline, self.i = baseline, baseline.world.index(country)
        self.country = country
        self.W = {text: criterion_weights(baseline, country, text) for text in CRITERIA[:-1]}
        self.cm = ce_map(baseline, self.i)
        prm0, x0 = household_problem(baseline, self.i)
        self.V_old = np.asarray(policies(x0, prm0).V)
        self.lam = np.asarray(baseline.lam[self.i])

    @enable_x64
    def values(self, new, *, ev=None, tol: float = 1e-10) -> dict:
        """{"ce": {criterion: percent}, "ev": {...} (with an EVResult ``ev``),
        "share_losers", "real_income"} of ``new``."""
        prm, x = household_problem(new, self.i)
        V_new = np.asarray(policies(x, prm).V)
        g = 100.0 * np.asarray(ce_of_value(self.cm, jnp.asarray(V_new)))
        out = {"ce": {}, "ev": {}}
        for text, W in self.W.items():
            out["ce"][text] = float(np.sum(W * g) / W.sum())
            if ev is not None:
                gain, ok = np.asarray(ev.gain_percent), np.asarray(ev.defined)
                out["ev"][text] = float(np.sum((W * gain)[ok]) / W[ok].sum())
        lam = self.lam
        out["share_losers"] = float(lam[V_new < self.V_old - tol].sum() / lam.sum())
        out["real_income"] = real_income_gain(self.baseline, new, self.i)
        return out


def evaluate_criteria(baseline, new, country, *, ev=None, tol: float = 1e-10) -> dict:
    """Every criterion of ``country``'s households at ``new`` against ``baseline``
    (:meth:`CriteriaPanel.values`; states where the EV is undefined left out of its means)."""
    return CriteriaPanel(baseline, country).values(new, ev=ev, tol=tol)
