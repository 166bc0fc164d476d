"""Solvers of the world equilibrium: result types and the Newton-Broyden iteration."""

from hatrade.core.errors import EquilibriumError
from hatrade.solve.equilibrium import (Equilibrium, EquilibriumJacobian, Prices, evaluate,
                                       solve_equilibrium)

__all__ = ["Equilibrium", "EquilibriumError", "EquilibriumJacobian", "Prices", "evaluate",
           "solve_equilibrium"]
