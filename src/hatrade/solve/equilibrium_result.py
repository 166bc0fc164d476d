"""The result of a world equilibrium solve or evaluation, with its labeled outputs.

:class:`Equilibrium` (returned by :func:`hatrade.solve_equilibrium` and
:func:`hatrade.evaluate`) holds the prices (:class:`Prices`), the households' policies and
stationary distributions, the aggregates (docs/model.md section 3) and the solver's
diagnostics, and gives them labeled: wages and import shares as ``pandas`` series by ISO3
code, trade tables, an ``xarray.Dataset`` of the household arrays, Euler-equation errors.
:class:`EquilibriumJacobian` is the Jacobian of the excess demands in the unknowns with the
names of both, reusable as the starting Jacobian of a nearby solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.errors import ParameterError
from hatrade.core.household import HHState, Policies, euler_errors
from hatrade.core.income import IncomeProcess
from hatrade.core.markets import country_params, model_arrays
from hatrade.core.params import Household, World

__all__ = ["Equilibrium", "EquilibriumJacobian", "Prices"]


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
    solver's unknowns and relative excess demands, see :func:`hatrade.solve.equilibrium.solve_equilibrium`). Pass it as
    ``jacobian=`` to a solve with the same unknowns (the labels are checked). Behaves as an
    array (``np.asarray(J)``).
    """

    matrix: np.ndarray
    unknowns: tuple
    residuals: tuple

    def __post_init__(self):
        n = len(self.unknowns)
        if np.shape(self.matrix) != (len(self.residuals), n):
            raise ParameterError(
                f"Jacobian has shape {np.shape(self.matrix)}; its labels need "
                f"({len(self.residuals)}, {n})."
            )

    @property
    def shape(self):
        return np.shape(self.matrix)

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.matrix, dtype=dtype)
        return a.copy() if copy else a

    def to_frame(self):
        """``pandas.DataFrame``: rows the excess demands, columns the unknowns."""
        import pandas as pd

        return pd.DataFrame(
            np.asarray(self.matrix), index=list(self.residuals), columns=list(self.unknowns)
        )


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

        return pd.Series(
            1.0 - np.diag(self.trade_shares), index=list(self.countries), name="import_share"
        )

    def trade_table(self):
        """Long table: importer, exporter, share, log_normalized_model (log s_ij/s_ii)."""
        import pandas as pd

        s = self.trade_shares
        c = list(self.countries)
        rows = [
            (c[i], c[j], s[i, j], np.log(s[i, j] / s[i, i]))
            for i in range(len(c))
            for j in range(len(c))
        ]
        return pd.DataFrame(rows, columns=["importer", "exporter", "share", "log_normalized_model"])

    def net_exports(self) -> np.ndarray:
        """X_i - IM_i: exports minus imports at factory prices (net of tariffs).

        In a stationary equilibrium this equals -(R_i - 1) A_i (docs/model.md 3).
        """
        Mij = np.asarray(self.aggregates.get("X", self.aggregates["M"]))
        return Mij.sum(axis=0) - np.diag(Mij) - (Mij.sum(axis=1) - np.diag(Mij))

    def euler_errors(self) -> np.ndarray:
        """log10 Euler-equation errors, (M, Na, Nz, M), NaN at the constraint."""
        prm = country_params(
            model_arrays(self.world, self.household, self.income),
            jnp.asarray(self.prices.w),
            jnp.asarray(self.prices.R),
            jnp.asarray(self.prices.T),
            jnp.asarray(self.prices.beta),
        )
        return np.asarray(jax.vmap(euler_errors)(self.policies, prm))

    def to_dataset(self):
        """Policies, choice probabilities and distributions as an ``xarray.Dataset``."""
        import xarray as xr

        c = list(self.countries)
        Na, Nz = self.lam.shape[1:]
        dims3 = ("country", "a_index", "z_index", "variety")
        coords = {
            "country": c,
            "variety": c,
            "a_index": np.arange(1, Na + 1),
            "z_index": np.arange(1, Nz + 1),
        }
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
            "R": float(R[0])
            if self.world.financial == "globalization"
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
