"""hatrade: the Heterogeneous Agent Trade model (Waugh 2023) in JAX.

Quick start::

    import hatrade
    world = hatrade.ek_world("baseline")               # 19 OECD countries, published calibration
    hh = hatrade.published_household("baseline")      # gamma 1.45, sigma_eps 0.33, psi_slope 0.725
    eq = hatrade.solve_equilibrium(world, hh, R=1.01)  # 18 wages + beta at R = 1.01
    eq.wages, eq.import_share, eq.trade_table()

Importing hatrade does not change JAX's configuration; its entry points compute in float64.
"""

from importlib.metadata import PackageNotFoundError, version

from hatrade.core.errors import EquilibriumError
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.params import Household, ParameterError, World
from hatrade.core.worlds import ek_world, published_household
from hatrade.solve.equilibrium import Equilibrium, evaluate, solve_equilibrium
from hatrade.solve.options import SolverOptions

try:
    __version__ = version("hatrade")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = [
    "Household",
    "World",
    "ParameterError",
    "IncomeProcess",
    "income_process",
    "ek_world",
    "published_household",
    "solve_equilibrium",
    "evaluate",
    "Equilibrium",
    "EquilibriumError",
    "SolverOptions",
    "__version__",
]
