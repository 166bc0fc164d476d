"""Solvers of the world equilibrium: result types, the solver's options and the
Newton-Broyden iteration."""

from hatrade.core.errors import EquilibriumError
from hatrade.solve.equilibrium import (
    Equilibrium,
    EquilibriumJacobian,
    Prices,
    evaluate,
    solve_equilibrium,
)
from hatrade.solve.options import SolverOptions, check_solve_inputs

__all__ = [
    "Equilibrium",
    "EquilibriumError",
    "EquilibriumJacobian",
    "Prices",
    "SolverOptions",
    "check_solve_inputs",
    "evaluate",
    "solve_equilibrium",
]
