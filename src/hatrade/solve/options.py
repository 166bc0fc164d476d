r"""The solver's options, and the checks of a solve's inputs shared by every entry point.

:class:`SolverOptions` holds every knob of the Newton-Broyden iteration of
:func:`hatrade.solve_equilibrium` (tolerances, iteration caps, the method, the coarse
stage and the inexact household solves); :func:`check_solve_inputs` is the one check of
what is solved for (``solve_for``, the fixed ``R`` or ``beta``), used by
:func:`hatrade.solve_equilibrium` and by the configuration reader
(:func:`hatrade.io.config.parse_config`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hatrade.core.errors import ParameterError

__all__ = [
    "FIELDS",
    "METHODS",
    "SOLVE_FOR",
    "SolverOptions",
    "check_solve_inputs",
    "resolve_solve_for",
    "solve_input_problem",
    "solve_option_problem",
    "solver_options",
]

#: What a solve may solve for: the world interest rate given beta, or beta given R.
SOLVE_FOR: tuple[str, ...] = ("R", "beta")

#: Iteration methods of :class:`SolverOptions`.
METHODS: tuple[str, ...] = ("broyden", "newton")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_real(x: Any) -> bool:
    return (
        isinstance(x, (int, float, np.integer, np.floating))
        and not isinstance(x, (bool, np.bool_))
        and math.isfinite(float(x))
    )


@dataclass(frozen=True)
class _Range:
    """An allowed range of one option: ``kind`` "real" or "int", bounds, open or closed."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind == "int" else "a finite number"
        if self.lo is not None and self.hi is not None:
            return (
                f"{what} in {'(' if self.lo_open else '['}{self.lo:g}, "
                f"{self.hi:g}{')' if self.hi_open else ']'}"
            )
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {self.lo:g}"
        return what

    def admits(self, x: Any) -> bool:
        if not (_is_int(x) if self.kind == "int" else _is_real(x)):
            return False
        v = float(x)
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))


# the allowed range of every numeric field (see the table in SolverOptions' docstring)
_RANGES: dict[str, _Range] = {
    "tol": _Range("real", 0.0, 0.1, lo_open=True),
    "max_iter": _Range("int", 1),
    "hh_tol": _Range("real", 0.0, 1e-2, lo_open=True),
    "hh_max_iter": _Range("int", 1),
    "jac_tol": _Range("real", 0.0, 1.0, lo_open=True),
    "direction_cost": _Range("real", 0.0, lo_open=True),
    "coarse_tol": _Range("real", 0.0, 0.1, lo_open=True),
    "coarse_min": _Range("real", 0.0),
    "coarse_jac_tol": _Range("real", 0.0, 1.0, lo_open=True),
    "coarse_max_iter": _Range("int", 1),
    "inexact": _Range("real", 0.0, 1.0, hi_open=True),
    "inexact_max": _Range("real", 0.0, 0.1, lo_open=True),
    "inexact_slack": _Range("real", 1.0),
}


def solve_option_problem(name: str, value: Any) -> str | None:
    """``"<name> = <value> is not allowed: <name> must be ..."`` when ``value`` is outside
    the range of the numeric :class:`SolverOptions` field ``name``, else None (the check
    that configuration and batch files share with the API)."""
    rng = _RANGES[name]
    if rng.admits(value):
        return None
    return f"{name} = {value!r} is not allowed: {name} must be {rng.describe()}."


@dataclass(frozen=True)
class SolverOptions:
    r"""Every option of the equilibrium solver (:func:`hatrade.solve_equilibrium`).

    Frozen and validated on construction: a value outside its range raises
    :class:`~hatrade.core.errors.ParameterError` naming the field, the value and what is
    allowed. Change fields with :meth:`replace` (validated again).

    ==================  ================  ===============================================
    field               allowed           meaning
    ==================  ================  ===============================================
    tol                 (0, 0.1]          convergence criterion: max abs relative excess
                                          demand (goods :math:`(\sum_i M_{ij}/(1+t_{ij})
                                          - Y_j)/Y_j`, bonds :math:`\sum_i A_i/\sum_i Y_i`
                                          or :math:`A_i/Y_i`, tariff budgets over
                                          :math:`Y_i`)
    max_iter            integer >= 1      Newton iterations
    hh_tol              (0, 0.01]         household fixed-point tolerance (sup-norm step
                                          in c and v) of the final household solves
    hh_max_iter         integer >= 1      household fixed-point iteration cap
    jac_tol             (0, 1]            relative tolerance of the implicit-
                                          differentiation tangents in the Jacobians
    method              "broyden",        "broyden": Broyden updates between household-
                        "newton"          block Jacobians, a new one when it pays;
                                          "newton": a new Jacobian at every iterate
    coarse_n_a          None or           asset grid of the coarse stage (None: none)
                        integer >= 3
    predict             True, False       warm-start household solves from the first-
                                          order prediction of their states
    direction_cost      > 0               cost of one Jacobian direction in household-
                                          iteration equivalents ("broyden" weighs it
                                          against the iterations a new Jacobian saves)
    coarse_tol          (0, 0.1]          the coarse equilibrium is solved to
                                          max(tol, coarse_tol)
    coarse_min          >= 0              no coarse stage when the start's max excess
                                          demand is below max(tol, coarse_min)
    coarse_jac_tol      (0, 1]            the coarse steps' tangents are solved to
                                          max(jac_tol, coarse_jac_tol)
    coarse_max_iter     integer >= 1      Newton iterations of the coarse stage
    inexact             [0, 1)            household solves to inexact x the max excess
                                          demand while it is large (0: always hh_tol)
    inexact_max         (0, 0.1]          the loosest household tolerance used
    inexact_slack       >= 1              a solve is continued when its excess demands
                                          ask for a tolerance more than inexact_slack
                                          times tighter than the one used
    ==================  ================  ===============================================

    The household tolerance that a max excess demand :math:`e` calls for is
    :math:`\max(hh\_tol, \min(inexact \cdot e, inexact\_max))` (:meth:`household_tol`);
    convergence is declared only after a household solve to ``hh_tol``.
    """

    tol: float = 1e-10
    max_iter: int = 30
    hh_tol: float = 1e-10
    hh_max_iter: int = 3000
    jac_tol: float = 1e-2
    method: str = "broyden"
    coarse_n_a: int | None = 30
    predict: bool = True
    direction_cost: float = 100.0
    coarse_tol: float = 1e-2
    coarse_min: float = 5e-2
    coarse_jac_tol: float = 0.1
    coarse_max_iter: int = 30
    inexact: float = 1e-3
    inexact_max: float = 1e-3
    inexact_slack: float = 30.0

    def __post_init__(self) -> None:
        for name, rng in _RANGES.items():
            value = getattr(self, name)
            problem = solve_option_problem(name, value)
            if problem is not None:
                raise ParameterError(problem)
            # plain Python numbers (hashable, and static arguments of compiled functions)
            object.__setattr__(self, name, int(value) if rng.kind == "int" else float(value))
        if self.method not in METHODS:
            raise ParameterError(
                f"method = {self.method!r} is not allowed: use {' or '.join(map(repr, METHODS))}."
            )
        if self.coarse_n_a is not None:
            if not (_is_int(self.coarse_n_a) and self.coarse_n_a >= 3):
                raise ParameterError(
                    f"coarse_n_a = {self.coarse_n_a!r} is not allowed: use an integer >= 3 (the "
                    "coarse stage's asset grid points) or None (no coarse stage)."
                )
            object.__setattr__(self, "coarse_n_a", int(self.coarse_n_a))
        if not isinstance(self.predict, (bool, np.bool_)):
            raise ParameterError(f"predict = {self.predict!r} is not allowed: use True or False.")
        object.__setattr__(self, "predict", bool(self.predict))

    def replace(self, **changes: Any) -> SolverOptions:
        """A copy with ``changes`` (field names; unknown ones raise ParameterError)."""
        return solver_options(self, **changes)

    def household_tol(self, err: float) -> float:
        """The household tolerance that a max excess demand ``err`` calls for."""
        if not self.inexact or not np.isfinite(err):
            return self.hh_tol
        return max(self.hh_tol, min(self.inexact * err, self.inexact_max))

    def first_household_tol(self) -> float:
        """The tolerance of the first household solve (the loosest one, when inexact)."""
        return max(self.hh_tol, self.inexact_max) if self.inexact else self.hh_tol


#: Field names of :class:`SolverOptions`, in order.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SolverOptions))


def solver_options(options: SolverOptions | None = None, **overrides: Any) -> SolverOptions:
    """``options`` (default :class:`SolverOptions`) with ``overrides`` (field names).

    Raises
    ------
    ParameterError
        For an override that is not a field (the message lists the allowed names), or a
        value outside its range.
    """
    if options is not None and not isinstance(options, SolverOptions):
        raise ParameterError(f"options = {options!r} is not allowed: give a SolverOptions or None.")
    unknown = [k for k in overrides if k not in FIELDS]
    if unknown:
        what = "keyword" if len(unknown) == 1 else "keywords"
        raise ParameterError(
            f"unknown solver {what} {', '.join(map(repr, unknown))}; allowed "
            f"options: {', '.join(FIELDS)}."
        )
    base = options if options is not None else SolverOptions()
    return dataclasses.replace(base, **overrides) if overrides else base


def resolve_solve_for(solve_for: str | None, beta: float | None) -> str:
    """``solve_for``, defaulting to "beta" when no beta is given and to "R" otherwise."""
    if solve_for is None:
        return "beta" if beta is None else "R"
    return solve_for


def solve_input_problem(
    financial: str, solve_for: str, R: Any, beta: float | None
) -> tuple[str, str] | None:
    """What is wrong with what a solve solves for, as ``(field, message)``, or None.

    The field is ``"solve_for"``, ``"beta"`` or ``"R"`` (the configuration reader places
    the message in its table); :func:`check_solve_inputs` raises the message.
    """
    if solve_for not in SOLVE_FOR:
        return "solve_for", (
            f"solve_for = {solve_for!r} is not allowed: use 'R' (solve the "
            "interest rate given beta) or 'beta' (solve the discount factor "
            "given R)."
        )
    if solve_for == "beta" and financial == "autarky":
        return "solve_for", (
            "solve_for = 'beta' is not allowed with financial = 'autarky' (one "
            "bond market and rate per country): solve for R_i given beta "
            "(solve_for = 'R')."
        )
    if solve_for == "R" and beta is None:
        return "beta", (
            "beta is missing: solve_for = 'R' needs the discount factor beta in "
            "(0, 1) (the household's beta, or a given beta)."
        )
    try:
        r = float(R)
    except (TypeError, ValueError):
        r = math.nan
    if not (math.isfinite(r) and r > 0):
        return "R", f"R = {R!r} is not allowed: R must be a finite number > 0."
    return None


def check_solve_inputs(financial: str, solve_for: str, R: Any, beta: float | None) -> None:
    """Check what a solve solves for, and its fixed price.

    Parameters
    ----------
    financial : {"globalization", "autarky"}
        The world's financial regime.
    solve_for : {"R", "beta"}
        The unknown rate: the world interest rate given ``beta``, or beta given ``R``.
    R : float
        The fixed interest rate when solving for beta (must be a finite number > 0 in any
        case).
    beta : float or None
        The fixed discount factor when solving for R.

    Raises
    ------
    ParameterError
        ``solve_for`` not in :data:`SOLVE_FOR`; ``solve_for="beta"`` under financial
        autarky (one bond market and rate per country: only R_i given beta can be solved
        for); ``solve_for="R"`` without ``beta``; ``R`` not > 0.
    """
    problem = solve_input_problem(financial, solve_for, R, beta)
    if problem is not None:
        raise ParameterError(problem[1])
