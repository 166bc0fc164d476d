r"""Aggregation and world equilibrium (docs/model.md section 3).

For prices (wages w, interest rates R, transfers T, discount factor beta) every country's
household problem is solved (vmapped over countries), its stationary distribution found
and aggregated:

.. math::

    N_i = L_i \sum \lambda z, \quad Y_i = w_i N_i, \quad
    M_{ij} = L_i \sum_{a,z} \lambda \pi_j p_{ij} c_j, \quad
    A_i = L_i \sum_{a,z} \lambda \sum_j \pi_j a'_j .

Equilibrium: goods markets :math:`Y_j = \sum_i M_{ij}` (one dropped by Walras' law), bond
markets (one world market under financial globalization, one per country under autarky),
and rebated tariff revenue :math:`T_i L_i = \sum_j t_{ij}/(1+t_{ij}) M_{ij}`. Wages are
normalized to mean one. The solver is a Newton-Broyden iteration whose Jacobian is composed
from the household-block Jacobian (:mod:`hatrade.core.jacobian`: forward-mode AD through the
household fixed point by implicit differentiation, M + 2 directions for all countries at
once) and the known price and market-clearing maps, with warm starts throughout
(:mod:`hatrade.solve.newton`). The result types (:class:`Equilibrium`, :class:`Prices`,
:class:`EquilibriumJacobian`) live in :mod:`hatrade.solve.equilibrium_result` and are
importable from here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hatrade.core.errors import EquilibriumError, ParameterError
from hatrade.core.household import HHState, Policies
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.markets import (
    Layout,
    ModelArrays,
    check_households,
    explain_no_equilibrium,
    initial_states,
    model_arrays,
    solve_households,
)
from hatrade.core.memory import check_world_memory
from hatrade.core.params import Household, World
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium_result import Equilibrium, EquilibriumJacobian, Prices
from hatrade.solve.newton import NewtonProblem, NewtonResult, newton_solve
from hatrade.solve.options import (
    SolverOptions,
    check_solve_inputs,
    resolve_solve_for,
    solver_options,
)

__all__ = [
    "Equilibrium",
    "EquilibriumError",
    "EquilibriumJacobian",
    "Prices",
    "SolverOptions",
    "evaluate",
    "solve_equilibrium",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- solver


def _checked_jacobian(jacobian, layout: Layout, countries):
    """A user's ``jacobian=`` as an (n, n) array, after checking that it fits the unknowns."""
    if jacobian is None:
        return None
    want = layout.unknown_names(countries)
    if isinstance(jacobian, EquilibriumJacobian) and tuple(jacobian.unknowns) != want:
        raise ParameterError(
            f"jacobian= is for the unknowns ({', '.join(jacobian.unknowns)}) but this solve "
            f"has ({', '.join(want)}): pass the Jacobian of an equilibrium solved for the "
            "same unknowns (same countries, solve_for, financial regime and tariffs), or none."
        )
    J = np.array(jacobian, dtype=float)
    if J.shape != (layout.n, layout.n):
        raise ParameterError(
            f"jacobian= has shape {J.shape}; this solve has {layout.n} unknowns "
            f"({', '.join(want)})."
        )
    if not np.all(np.isfinite(J)):
        raise ParameterError("jacobian= has non-finite entries.")
    if not isinstance(jacobian, EquilibriumJacobian):
        log.debug("jacobian= is an unlabeled array: only its shape could be checked")
    return J


_world_jit = jax.jit(solve_households, static_argnums=(6, 7))


@enable_x64
def evaluate(
    world: World,
    household: Household,
    wages,
    R=1.01,
    beta=None,
    T=None,
    *,
    income: IncomeProcess | None = None,
    hh_tol: float | None = None,
    hh_max_iter: int | None = None,
    state: HHState | None = None,
    options: SolverOptions | None = None,
) -> Equilibrium:
    """Solve households and aggregate at given prices (no market clearing).

    Useful to inspect a published equilibrium (``data/calibration/*-prices.csv``).
    ``hh_tol`` and ``hh_max_iter`` (default: those of ``options``, else of
    :class:`SolverOptions`, 1e-10 and 3000) are the household fixed point's tolerance and
    iteration cap.
    """
    given = {k: v for k, v in (("hh_tol", hh_tol), ("hh_max_iter", hh_max_iter)) if v is not None}
    opts = solver_options(options, **given)
    inc = income or income_process(household)
    beta = household.beta if beta is None else beta
    if beta is None:
        raise ParameterError("beta is None: give beta (in (0, 1)) to evaluate at fixed prices.")
    check_world_memory(world.M, household.n_a, int(np.size(inc.z)), directions=0)
    M, arrs = world.M, model_arrays(world, household, inc)
    w = jnp.asarray(np.asarray(wages, float))
    Rv = jnp.broadcast_to(jnp.asarray(R, dtype=float), (M,))
    Tv = jnp.zeros(M) if T is None else jnp.asarray(T, dtype=float)
    x0 = state if state is not None else initial_states(arrs, w, Rv, Tv, beta)
    agg, sol = _world_jit(arrs, w, Rv, Tv, jnp.asarray(beta), x0, opts.hh_tol, opts.hh_max_iter)
    with explain_no_equilibrium(world, household, inc, float(np.mean(np.asarray(R))), beta):
        check_households(sol, world.countries, opts.hh_max_iter)
    return _make_result(
        world,
        household,
        inc,
        arrs,
        np.asarray(w),
        np.asarray(Rv),
        np.asarray(Tv),
        float(beta),
        agg,
        sol,
    )


def _make_result(
    world: World,
    household: Household,
    inc: IncomeProcess,
    arrs: ModelArrays,
    w,
    R,
    T,
    beta: float,
    agg: dict,
    sol: dict,
    **kw: Any,
) -> Equilibrium:
    return Equilibrium(
        world=world,
        household=household,
        income=inc,
        prices=Prices(w=np.asarray(w), R=np.asarray(R), T=np.asarray(T), beta=float(beta)),
        p=np.asarray(sol["prm"].p),
        policies=Policies._make(np.asarray(a) for a in sol["pol"]),
        lam=np.asarray(sol["lam"]),
        a_grid=np.asarray(arrs.a_grid),
        aggregates={k: np.asarray(v) for k, v in agg.items()},
        state=sol["state"],
        hh_iterations=np.asarray(sol["iterations"]),
        **kw,
    )


def _solved_result(problem: NewtonProblem, res: NewtonResult) -> Equilibrium:
    """The :class:`Equilibrium` of a converged Newton-Broyden solve."""
    world, layout = problem.world, problem.layout
    w, Rv, Tv, b = (np.asarray(a) for a in layout.prices(jnp.asarray(res.final.u)))
    jac_out = (
        None
        if res.jacobian is None
        else EquilibriumJacobian(
            np.array(res.jacobian),
            layout.unknown_names(world.countries),
            layout.residual_names(world.countries),
        )
    )
    st, co = res.stats, res.coarse
    return _make_result(
        world,
        problem.household,
        problem.income,
        problem.arrs,
        w,
        Rv,
        Tv,
        float(b),
        res.final.agg,
        res.final.sol,
        converged=True,
        iterations=res.iterations,
        residual=res.final.err,
        household_solves=st.household_solves,
        jacobians=st.jacobians,
        jacobian_directions=st.jacobian_directions,
        history=res.history,
        seconds=res.seconds,
        jacobian=jac_out,
        seconds_household=st.seconds_household,
        seconds_jacobian=st.seconds_jacobian,
        coarse_household_solves=co.household_solves,
        coarse_jacobians=co.jacobians,
        seconds_coarse=co.seconds,
    )


@enable_x64
def solve_equilibrium(
    world: World,
    household: Household,
    *,
    solve_for: str | None = None,
    R: float = 1.01,
    beta: float | None = None,
    wages=None,
    R_guess: float | None = None,
    beta_guess: float = 0.93,
    income: IncomeProcess | None = None,
    state: HHState | None = None,
    T_guess=None,
    jacobian=None,
    options: SolverOptions | None = None,
    progress: Callable[[int, float], None] | None = None,
    **overrides: Any,
) -> Equilibrium:
    r"""Solve the stationary world equilibrium.

    Unknowns (as in the paper): M-1 wages (the last follows from mean(w) = 1) and either the
    world interest rate R given beta (``solve_for="R"``, counterfactuals) or beta given R
    (``solve_for="beta"``, how the published calibration was made). Under financial autarky
    the unknowns are M-1 wages and one R per country (beta given). With tariffs, the
    per-household transfers T_i are unknowns too.

    Newton-type iteration with a backtracking line search (:mod:`hatrade.solve.newton`).
    The Jacobian of the excess demands is composed from the household-block Jacobian
    (:mod:`hatrade.core.jacobian`): every country's spending and asset demand
    differentiated with respect to its own log prices, income, rate or beta and transfer,
    M + 2 forward-mode directions for all countries at once (M + 3 with tariffs; implicit
    differentiation of the household fixed point, the stationary distribution re-solved),
    then the chain rule through :math:`p_{ij} = d_{ij} w_j (1+t_{ij})/A_j` and market
    clearing. Between such Jacobians Broyden's update keeps it current. Household problems
    are warm-started from the first-order prediction of their solution (previous states
    plus the block's state tangents times the price change), and each new Jacobian from the
    previous one's tangents.

    Two devices make a solve from far away cheap (``benchmarks/bench_core.py
    --equilibrium``): a coarse stage (``coarse_n_a``, below) finds the first step and the
    first Jacobian on a coarse asset grid, and household problems are solved inexactly
    while the excess demands are large: to ``inexact`` times the current max excess demand
    (at most ``inexact_max``, at least ``hh_tol``; a household tolerance :math:`\epsilon`
    moves the excess demands by about :math:`\epsilon`), continued to a tighter tolerance
    when a step's excess demands call for one, and always to ``hh_tol`` before convergence
    is declared, so the result (prices, states, residual) is that of exact household solves.

    Parameters
    ----------
    world, household : model primitives.
    solve_for : {"R", "beta"} or None
        Default: "beta" when ``household.beta`` is None and no ``beta`` is given, else "R".
    R : float
        Interest rate held fixed when solving for beta (> 0).
    beta : float, optional
        Discount factor held fixed when solving for R (default ``household.beta``).
    wages : array (M,), optional
        Initial wages (rescaled to mean one). Default: all ones.
    R_guess, beta_guess : initial values of the unknown rate / discount factor.
    income : IncomeProcess, optional
        Default: the Rouwenhorst process of ``household``.
    state : warm start for the household problems (e.g. ``other.state``).
    T_guess : array (M,), optional
        Initial tariff transfers (default zero).
    jacobian : EquilibriumJacobian or array, optional
        A Jacobian of the excess demands to start from (``other.jacobian`` of a nearby
        equilibrium solved for the same unknowns): counterfactuals then often need no new
        household-block Jacobian. An :class:`EquilibriumJacobian` is checked against this
        solve's unknowns (names of the wages, R or beta, R_i, T_i) and rejected with a
        :class:`~hatrade.core.params.ParameterError` when they differ (e.g. one computed for beta
        given to a solve for R); a plain array (e.g. from a file) can only be checked for its
        shape. Broyden updates keep it current; a new Jacobian is computed when it stalls.
    options : SolverOptions, optional
        The solver's options (default :class:`SolverOptions`'s defaults).
    progress : callable(iteration, residual), optional.
    **overrides
        Fields of :class:`SolverOptions` that replace those of ``options``, e.g.

        tol : float
            Convergence criterion: max abs relative excess demand (goods:
            (sum_i M_ij - Y_j)/Y_j; bonds: sum_i A_i / sum_i Y_i; tariff budgets relative
            to Y_i). Default 1e-10.
        max_iter : int
            Newton iterations (default 30).
        hh_tol, hh_max_iter : household fixed-point tolerance (sup-norm step in c and v) at
            the solution (early iterates use looser ones, see above) and the iteration cap.
        method : {"broyden", "newton"}
            "broyden" (default): Broyden updates, a new household-block Jacobian only when
            progress on the updated one is slow enough that a new one pays, or a step fails,
            so usually one or two per solve. "newton": a new Jacobian at every iterate
            (fewest household solves, most Jacobian work).
        jac_tol : float
            Relative tolerance of the implicit-differentiation tangents in the Jacobians
            (they only steer the iteration; the equilibrium is checked on exact residuals).
        coarse_n_a : int or None
            Asset grid of the coarse stage (default 30; None: no coarse stage). When no
            ``jacobian`` is given and the excess demands at the start exceed
            ``coarse_min``, the first step comes from a coarse copy of the model
            (``household.n_a`` replaced by ``coarse_n_a``; only when ``household.n_a`` is
            at least twice as large), a two-grid defect correction as in
            full-approximation multigrid: the coarse excess demands are shifted by a
            constant to equal the full model's at the start, the shifted coarse equilibrium
            is solved loosely (to ``coarse_tol``), and its solution is the full solve's
            first trial point, with a coarse Jacobian made there as its first Jacobian. The
            full solve then corrects the grid's effect in a few Broyden steps. The result is
            checked on the full model's excess demands as always; when the coarse stage
            fails or its step does not reduce them, the solve goes on as without it (a full
            Jacobian).

    Returns
    -------
    Equilibrium

    Raises
    ------
    ParameterError
        Before any numerical work: an unknown keyword (the message lists the allowed
        ones), an option out of its range (:class:`SolverOptions`), what is solved for
        (:func:`~hatrade.solve.options.check_solve_inputs`), the starting wages, or a
        ``jacobian`` that does not fit the unknowns.
    EquilibriumError
        No convergence, or a household problem fails (naming the inputs likely at fault).
    """
    t0 = time.perf_counter()
    opts = solver_options(options, **overrides)
    inc = income or income_process(household)
    beta_fixed = beta if beta is not None else household.beta
    solve_for = resolve_solve_for(solve_for, beta_fixed)
    check_solve_inputs(world.financial, solve_for, R, beta_fixed)
    M = world.M
    check_world_memory(M, household.n_a, int(np.size(inc.z)))
    beta_given = None if solve_for == "beta" else float(beta_fixed)  # type: ignore[arg-type]
    R_fixed = float(R) if solve_for == "beta" else None  # beta_fixed: check_solve_inputs
    layout = Layout(
        M=M,
        financial=world.financial,
        solve_for=solve_for,
        tariffs=world.has_tariffs,
        R_fixed=R_fixed,
        beta_fixed=beta_given,
    )
    arrs = model_arrays(world, household, inc)
    w0 = np.ones(M) if wages is None else np.asarray(wages, float)
    if w0.shape != (M,) or np.any(w0 <= 0):
        raise ParameterError(f"wages guess must be {M} positive numbers.")
    w0 = w0 / w0.mean()
    if R_guess is None:
        R_guess = float(R) if beta_given is None else 1.0 / beta_given - 0.06
    T0 = np.zeros(M) if T_guess is None else np.asarray(T_guess, float)
    u = layout.pack(
        w0,
        R_guess if solve_for == "R" else R,
        T0,
        beta_guess if solve_for == "beta" else beta_fixed,
    )
    J = _checked_jacobian(jacobian, layout, world.countries)
    w, Rv, Tv, b = layout.prices(jnp.asarray(u))
    x = state if state is not None else initial_states(arrs, w, Rv, Tv, b)
    problem = NewtonProblem(
        world=world, household=household, income=inc, arrs=arrs, layout=layout, options=opts
    )
    with explain_no_equilibrium(world, household, inc, R_guess if solve_for == "R" else R, b):
        return _solved_result(problem, newton_solve(problem, u, x, J, progress=progress, t0=t0))
