r"""The planner's solution (Proposition 4): the efficient allocation of a world, its shadow
prices and trade shares, and its tables.

:func:`hatrade.analysis.planner.solve_planner` returns a :class:`PlannerSolution`; the math
(notation, derivation, the numeraire :math:`\kappa`) is in the docstring of
:mod:`hatrade.analysis.planner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hatrade.core.income import IncomeProcess
from hatrade.core.params import Household, World

__all__ = ["PlannerSolution"]


@dataclass(frozen=True, eq=False)
class PlannerSolution:
    r"""The efficient allocation of a world (see :mod:`hatrade.analysis.planner` for the math).

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
