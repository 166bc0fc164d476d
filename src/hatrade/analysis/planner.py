r"""The efficient allocation (Proposition 4): the planner's problem and its solution.

A planner with country weights :math:`\omega_i` allocates the world's output in a
stationary environment, with full insurance inside each country. This module solves the
planner's problem for a :class:`~hatrade.core.params.World` (same primitives as the decentralized
model, including the country scaling of :math:`\sigma_i` and :math:`\psi_i`) and gives its
allocation, shadow prices and trade shares.

Derivation
----------
*Primitives.* Country :math:`i` has mass :math:`L_i` of households; a household's income
state :math:`z` has the stationary distribution :math:`\mu(z)` of the income process (mean
efficiency units :math:`\bar N = \sum_z \mu(z) z = 1`). Each period a household draws
taste shocks :math:`\epsilon_j` (iid Type-1 extreme value, scale
:math:`\sigma_i = \sigma_\epsilon A_i^{1-\gamma}`), consumes one variety :math:`j` and
gets :math:`u(c) + \psi_i(z,j) + \epsilon_j`, with
:math:`\psi_i(z,i) = \psi_{slope} A_i^{1-\gamma}\log z_{perm}` and 0 for imports (exactly
the decentralized model's preferences). Country :math:`j` produces
:math:`A_j L_j \bar N` units of variety :math:`j`; delivering one unit to :math:`i` uses
:math:`d_{ij}` units (iceberg). Tariffs are transfers, not resource costs: the planner
ignores them.

*Planner.* There is no aggregate risk and the environment is stationary, so the planner's
problem is the same static problem every period and its value is
:math:`W = \sum_t \beta^t w = w/(1-\beta)` with

.. math::

    w = \max \sum_i \omega_i L_i \sum_z \mu(z)\,
        \mathbb E_\epsilon\big[u(c_i(z,\epsilon)) + \psi_i(z, j_i(z,\epsilon))
        + \epsilon_{j_i(z,\epsilon)}\big]
    \quad\text{s.t.}\quad
    \sum_i L_i \sum_z \mu(z)\, \mathbb E_\epsilon\big[c_i(z,\epsilon)\,d_{ij}\,
    \mathbf 1\{j_i(z,\epsilon) = j\}\big] \le A_j L_j \bar N \quad (\chi_j),

where the planner picks for every household (state :math:`z`, shocks :math:`\epsilon`) a
variety :math:`j_i(z,\epsilon)` and a quantity :math:`c_i(z,\epsilon)` ("full insurance":
nothing forces consumption to track income). :math:`\chi_j` is the multiplier on
variety :math:`j`'s resource constraint.

*Quantities.* Pointwise maximization of the Lagrangian gives, for a household assigned
variety :math:`j`, :math:`\omega_i u'(c) = \chi_j d_{ij}`, so consumption depends only on
the pair :math:`(i,j)`, not on :math:`z` or :math:`\epsilon`:

.. math:: c_{ij} = (u')^{-1}(\chi_j d_{ij}/\omega_i), \qquad \chi_j = \omega_j u'(c_{jj}).

*Choices.* Given these quantities, the household's contribution to the Lagrangian from
variety :math:`j`, divided by :math:`\omega_i`, is
:math:`u(c_{ij}) - u'(c_{ij})c_{ij} + \psi_i(z,j) + \epsilon_j`: the utility of the
variety net of the (utility) value of the resources it uses. The planner assigns the
variety that maximizes it, so with extreme-value shocks the choice probabilities are logit,

.. math::

    \pi_{ij}(z) = \frac{\exp\big((n_{ij} + \psi_i(z,j))/\sigma_i\big)}
                       {\sum_k \exp\big((n_{ik} + \psi_i(z,k))/\sigma_i\big)},
    \qquad n_{ij} = u(c_{ij}) - u'(c_{ij})\,c_{ij}.

The home-bias shifter *does* enter: the planner still faces the taste shocks and
:math:`\psi_i(z,j)`, so the assignment of varieties depends on :math:`z` (richer
households are assigned the home variety more often when :math:`\psi_{slope} > 0`), even
though consumption does not. Country-level choice shares are
:math:`\pi_{ij} = \sum_z \mu(z)\pi_{ij}(z)`. With :math:`\psi = 0`, :math:`\pi_{ij}(z)`
does not depend on :math:`z`.

*Value.* The expected maximum gives the log-sum; the expected utility of a type-:math:`z`
household is (Euler's constant dropped, as everywhere in hatrade)

.. math::

    U_i(z) = \sum_j \pi_{ij}(z)\big(u(c_{ij}) + \psi_i(z,j) - \sigma_i\log\pi_{ij}(z)\big)
           = \sigma_i \log\sum_j e^{(n_{ij}+\psi_i(z,j))/\sigma_i}
             + \sum_j \pi_{ij}(z)\,u'(c_{ij})\,c_{ij},

:math:`U_i = \sum_z \mu(z) U_i(z)` and :math:`w = \sum_i \omega_i L_i U_i`.

*Equilibrium conditions.* The :math:`M` unknowns :math:`\chi_j` solve the resource
constraints (which bind: utility is increasing)

.. math:: A_j L_j \bar N = \sum_i L_i\,\pi_{ij}\,c_{ij}\,d_{ij}, \qquad j = 1..M.

The problem is convex in :math:`(\pi, x = \pi c)` (the objective is a sum of perspectives of
the concave :math:`u` plus an entropy; the constraints are linear), so these first-order
conditions characterize the unique optimum. They are solved by Newton's method on
:math:`\log\chi` with the exact Jacobian (``jax.jacfwd``) and a backtracking line search,
in float64.

*Prices and trade.* :math:`\chi_j` is the shadow value of a unit of variety :math:`j`; the
planner's allocation is a competitive allocation at factory prices
:math:`q_j = \chi_j/\kappa` (the scale :math:`\kappa` is a numeraire), with shadow wages
:math:`w^*_j = q_j A_j`. Trade flows are valued at these prices,
:math:`X_{ij} = L_i \pi_{ij}\, q_j d_{ij} c_{ij} = L_i\pi_{ij}\,\omega_i u'(c_{ij})c_{ij}/\kappa`,
and trade shares are :math:`s_{ij} = X_{ij}/\sum_k X_{ik}` (the scale cancels). We set
:math:`\kappa` so that world spending :math:`\sum_{ij} X_{ij}` equals the decentralized
world spending when an equilibrium is given, and so that :math:`\mathrm{mean}(w^*) = 1`
otherwise.

Weights
-------
``"equal"``: :math:`\omega_i = 1` per person (utilitarian). ``"matched"``: Negishi-type
weights chosen so that every country's total consumption spending in the efficient
allocation, :math:`E_i = \sum_j X_{ij}`, equals its spending :math:`\sum_j M_{ij}` in a given
decentralized equilibrium (same resources, efficient use within and across countries). The
weights are normalized to a population-weighted mean of one and solved jointly with
:math:`\chi` (2M unknowns, Newton). An array gives the weights directly (positive, one per
country).

The allocation at given multipliers and weights and the Newton solves of the conditions
above are in :mod:`hatrade.analysis.planner_allocation`, the result object
:class:`~hatrade.analysis.planner_solution.PlannerSolution` (prices, trade shares, tables) in
:mod:`hatrade.analysis.planner_solution`; both are re-exported here. The planner's trade
elasticities and the welfare effects of trade costs (Proposition 4) are
in :mod:`hatrade.analysis.planner_prop4`; the comparison with a decentralized equilibrium in
the public entry point :mod:`hatrade.analysis.efficient`.
"""

from __future__ import annotations

import logging
import time

import jax.numpy as jnp
import numpy as np

from hatrade.analysis.planner_allocation import (
    PlannerError,
    allocation,
    planner_arrays,
    resource_residual,
    solve_matched,
    solve_multipliers,
)
from hatrade.analysis.planner_solution import PlannerSolution
from hatrade.core.income import IncomeProcess, income_process
from hatrade.core.params import Household, ParameterError, World
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "PlannerError",
    "PlannerSolution",
    "solve_planner",
    "planner_arrays",
    "allocation",
    "resource_residual",
    "solve_multipliers",
    "check_equilibrium",
    "WEIGHT_KINDS",
]

log = logging.getLogger(__name__)

WEIGHT_KINDS = ("equal", "matched")


def _check_weights(weights, world: World) -> np.ndarray:
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(
            f"weights = {weights!r} is not allowed: weights must be "
            f"{WEIGHT_KINDS} or {world.M} positive numbers."
        ) from None
    if w.ndim != 1 or w.shape[0] != world.M:
        raise ParameterError(
            f"weights has shape {w.shape}; it must have {world.M} entries, one per "
            f"country ({', '.join(world.countries)})."
        )
    bad = [world.countries[k] for k in np.flatnonzero(~np.isfinite(w) | (w <= 0))]
    if bad:
        raise ParameterError(
            f"weights must be positive and finite; not so for {bad} "
            f"(values {[float(w[world.index(b)]) for b in bad]})."
        )
    return w


def check_equilibrium(eq, world: World) -> Equilibrium:
    """``eq`` itself if it is an equilibrium of ``world`` with positive spending.

    Raises
    ------
    ParameterError
        Not an Equilibrium, other countries, or non-positive / non-finite spending.
    """
    if not isinstance(eq, Equilibrium):
        raise ParameterError(
            f"eq must be a hatrade.solve.equilibrium.Equilibrium, got {type(eq).__name__}."
        )
    if tuple(eq.countries) != tuple(world.countries):
        raise ParameterError(
            f"the equilibrium's countries {list(eq.countries)} differ from the "
            f"world's {list(world.countries)}."
        )
    S = eq.spending.sum(axis=1)
    if not np.all(np.isfinite(S)) or np.any(S <= 0):
        raise ParameterError(
            "the equilibrium has non-positive or non-finite spending "
            f"{S.tolist()}; matched weights need positive spending."
        )
    return eq


def _initial_weights(weights, world: World, eq: Equilibrium | None) -> tuple[str, np.ndarray]:
    """The kind of weights ("equal", "matched", "given") and the starting weights per person."""
    if not isinstance(weights, str):
        return "given", _check_weights(weights, world)
    if weights not in WEIGHT_KINDS:
        raise ParameterError(
            f"weights = {weights!r} is not allowed: use one of {WEIGHT_KINDS} "
            f"or an array of {world.M} positive numbers."
        )
    if weights == "matched" and eq is None:
        raise ParameterError(
            "weights='matched' needs a decentralized equilibrium: pass eq=... "
            "(e.g. hatrade.evaluate at published prices)."
        )
    return weights, np.ones(world.M)


def _solve_unknowns(kind, w0, world, household, eq, ar, log_d, *, tol, max_iter):
    r"""Newton on the multipliers at the starting weights, then (``"matched"``) jointly on
    multipliers and weights. Returns log chi, log omega, iterations, residual history."""
    # start: chi_j = omega_j u'(A_j Nbar) (own output consumed at home)
    chi0 = w0 * (world.tfp * float(ar["nbar"])) ** (-household.gamma)
    x, its, hist = solve_multipliers(
        np.log(chi0),
        jnp.log(jnp.asarray(w0)),
        log_d,
        ar,
        tol=tol,
        max_iter=max_iter,
        what="planner (resource constraints)",
    )
    log_w = np.log(w0)
    if kind == "matched":
        S = eq.spending.sum(axis=1)
        target = jnp.asarray(S / S.sum())
        xx, its2, hist2 = solve_matched(
            np.concatenate([x, log_w]),
            log_d,
            ar,
            target,
            tol=tol,
            max_iter=max_iter,
            what="planner with matched weights",
        )
        x, log_w = xx[: world.M], xx[world.M :]
        its += its2
        hist = hist + hist2
    return x, log_w, its, hist


@enable_x64
def solve_planner(
    world: World,
    household: Household,
    weights="equal",
    eq: Equilibrium | None = None,
    *,
    income: IncomeProcess | None = None,
    beta: float | None = None,
    tol: float = 1e-13,
    max_iter: int = 100,
) -> PlannerSolution:
    r"""Solve the planner's problem (Proposition 4) for a world.

    Parameters
    ----------
    world, household : primitives (as for :func:`hatrade.solve_equilibrium`); the planner
        uses gamma, sigma_eps, psi_slope and the income process, not the asset grid.
    weights : {"equal", "matched"} or array (M,)
        ``"equal"``: one per person; ``"matched"``: Negishi weights that give each country
        the spending it has in ``eq`` (requires ``eq``); an array: positive weights per
        person.
    eq : Equilibrium, optional
        Decentralized equilibrium of the same world: sets the numeraire (world spending) and,
        for ``"matched"``, the target spending; its beta is used for welfare.
    income : IncomeProcess, optional
        Default: ``eq.income`` or :func:`hatrade.income_process` of ``household``.
    beta : float, optional
        Discount factor for welfare (default: ``eq.beta``, else ``household.beta``).
    tol : float
        Newton tolerance on the log resource constraints (max abs).
    max_iter : int

    Returns
    -------
    PlannerSolution

    Raises
    ------
    ParameterError
        Bad weights (wrong length, non-positive, unknown name), ``"matched"`` without ``eq``,
        an equilibrium of another world.
    PlannerError
        When Newton's method fails (no solution found).
    """
    t0 = time.perf_counter()
    if not isinstance(world, World):
        raise ParameterError(f"world must be a hatrade.World, got {type(world).__name__}.")
    if not isinstance(household, Household):
        raise ParameterError(
            f"household must be a hatrade.Household, got {type(household).__name__}."
        )
    if eq is not None:
        check_equilibrium(eq, world)
    inc = income or (eq.income if eq is not None else income_process(household))
    if world.has_tariffs:
        log.info("planner: tariffs are transfers, not resource costs; the planner ignores them")
    kind, w0 = _initial_weights(weights, world, eq)
    ar = planner_arrays(world, household, inc)
    log_d = jnp.log(ar["d"])
    x, log_w, its, hist = _solve_unknowns(
        kind, w0, world, household, eq, ar, log_d, tol=tol, max_iter=max_iter
    )
    a = {
        k: np.asarray(v)
        for k, v in allocation(jnp.asarray(x), jnp.asarray(log_w), log_d, ar).items()
    }
    rel = a["demand"] / a["supply"] - 1.0
    res = float(np.max(np.abs(rel)))
    if not np.isfinite(res) or res > 1e-8:
        raise PlannerError(
            f"planner: resource constraints violated after Newton (max relative error {res:.2e})."
        )
    chi = np.exp(x)
    # numeraire: world spending = decentralized world spending, else mean shadow wage = 1
    if eq is not None:
        kappa = float(a["value"].sum() / eq.spending.sum())
    else:
        kappa = float(np.mean(chi * world.tfp))
    b = beta if beta is not None else (eq.beta if eq is not None else household.beta)
    sol = PlannerSolution(
        world=world,
        household=household,
        income=inc,
        weights=np.exp(log_w),
        weights_kind=kind,
        chi=chi,
        c=a["c"],
        pi_z=a["pi_z"],
        pi=a["pi"],
        U=a["U"],
        sigma=np.asarray(ar["sigma"]),
        kappa=kappa,
        beta=None if b is None else float(b),
        resource_error=res,
        iterations=its,
        history=hist,
        seconds=time.perf_counter() - t0,
    )
    log.info("planner (%s weights): %d Newton iterations, max resource error %.1e", kind, its, res)
    return sol
