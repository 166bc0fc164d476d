"""The state of one Newton-Broyden solve (:mod:`hatrade.solve.newton`) in small explicit
objects: the fixed inputs (:class:`NewtonProblem`), an iterate (:class:`Iterate`), the
Jacobian in use (:class:`JacobianState`), the work counters (:class:`SolveStats`) and the
results of the coarse stage and of the solve (:class:`CoarseResult`, :class:`NewtonResult`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hatrade.core.income import IncomeProcess
from hatrade.core.jacobian import HouseholdBlock, direction_rows, solver_directions
from hatrade.core.markets import Layout, ModelArrays
from hatrade.core.params import Household, World
from hatrade.solve.options import SolverOptions

__all__ = [
    "CoarseResult",
    "Iterate",
    "JacobianState",
    "NewtonProblem",
    "NewtonResult",
    "SolveStats",
]


@dataclass(frozen=True, eq=False)
class NewtonProblem:
    """The fixed inputs of one Newton-Broyden solve.

    ``match`` (the coarse stage's own solve): the excess demands that this model's are
    shifted to equal at the start; ``shift`` is that constant, set after the first
    household solve. The shifted residuals are the ones solved (and reported).
    """

    world: World
    household: Household
    income: IncomeProcess
    arrs: ModelArrays
    layout: Layout
    options: SolverOptions
    match: Any = None
    shift: Any = None

    @property
    def rows(self):
        """The household-block directions of this problem's unknowns."""
        return direction_rows(self.world.M, solver_directions(self.layout))


@dataclass(eq=False)
class Iterate:
    """An iterate: the unknowns ``u``, the excess demands ``r`` there (max abs ``err``) and
    the households' aggregates and solution (``sol["state"]`` warm-starts the next solve)."""

    u: Any
    r: Any
    agg: dict
    sol: dict
    err: float

    @property
    def state(self):
        return self.sol["state"]


@dataclass(eq=False)
class JacobianState:
    """The Jacobian ``J`` in use (None: make one), the household block it came from (warm
    tangents and state predictions), the last Broyden-updated Jacobian ``last``, whether
    ``J`` is ``fresh`` (no step taken on it yet), and the max excess demand ``err`` where it
    was made with the ``steps`` taken on it since."""

    J: np.ndarray | None
    err: float
    block: HouseholdBlock | None = None
    last: np.ndarray | None = None
    fresh: bool = False
    steps: int = 0


@dataclass
class SolveStats:
    """Work counters of a solve: primal world household solves, Jacobians, their forward
    directions, and the seconds spent in household solves and in Jacobians."""

    household_solves: int = 0
    jacobians: int = 0
    jacobian_directions: int = 0
    seconds_household: float = 0.0
    seconds_jacobian: float = 0.0


@dataclass(eq=False)
class CoarseResult:
    """What the coarse stage gives the full solve: its solution ``u`` and a coarse Jacobian
    ``J`` made there (both None when the stage failed or had nothing to do), and its work."""

    u: np.ndarray | None = None
    J: np.ndarray | None = None
    household_solves: int = 0
    jacobians: int = 0
    seconds: float = 0.0


@dataclass(eq=False)
class NewtonResult:
    """A converged solve: the last iterate, its iterations and residual history, the work
    done, the last Jacobian (Broyden-updated; None if none was used), the last household
    block, the coarse stage's result and the wall time since the solve began."""

    final: Iterate
    iterations: int
    history: list
    stats: SolveStats
    jacobian: np.ndarray | None
    block: HouseholdBlock | None
    coarse: CoarseResult = field(default_factory=CoarseResult)
    seconds: float = 0.0
