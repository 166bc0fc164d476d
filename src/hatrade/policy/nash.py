r"""Tariff wars: the Nash equilibrium in uniform tariffs (docs/policy.md section 5).

Every country sets the uniform tariff on all its partners that maximizes its criterion
given the others' tariffs (its best response, :func:`hatrade.policy.optimal.optimal_policy`).
:func:`nash_tariffs` iterates best responses country by country (Gauss-Seidel), each
warm-started at the previous round's tariff and equilibrium, until no tariff moves by more
than ``tol``. A best response costs one policy optimization (its equilibrium solves are
reported).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from hatrade.core.errors import EquilibriumError
from hatrade.core.params import ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.policy.criteria import evaluate_criteria, parse_criterion
from hatrade.policy.optimal import PolicyOptions, optimal_policy

__all__ = ["NashResult", "nash_tariffs"]

log = logging.getLogger(__name__)


@dataclass
class NashResult:
    """Nash tariffs by country, the criterion of each at the Nash equilibrium (percent
    against the baseline), rounds, equilibrium solves, seconds per best response and the
    final equilibrium."""

    countries: tuple
    tariffs: dict
    criterion: dict
    rounds: int
    converged: bool
    max_change: float
    solves: int
    best_responses: list = field(default_factory=list)
    eq: object = None
    seconds: float = 0.0


@enable_x64
def nash_tariffs(
    baseline,
    countries=None,
    *,
    criterion: str = "utilitarian",
    rebate: str | None = None,
    start: float = 0.1,
    tol: float = 1e-6,
    max_rounds: int = 20,
    options: PolicyOptions | None = None,
) -> NashResult:
    """Iterate best responses in uniform tariffs until they stop moving.

    Parameters
    ----------
    baseline : Equilibrium (no tariffs needed; criteria are relative to it)
    countries : codes that play (default all); the others keep their tariffs.
    criterion, rebate : as in :func:`~hatrade.policy.optimal.optimal_policy`.
    start : every player's initial tariff.
    tol : largest tariff change of a round at convergence.
    max_rounds : rounds at most (an :class:`~hatrade.core.errors.EquilibriumError` when
        reached).
    """
    t0 = time.perf_counter()
    world = baseline.world
    players = tuple(world.countries) if countries is None else tuple(countries)
    for c in players:
        world.index(c)
    if len(set(players)) != len(players) or not players:
        raise ParameterError(f"countries = {players!r}: give distinct country codes.")
    parse_criterion(criterion)
    if not (np.isfinite(start) and start >= 0):
        raise ParameterError(f"start = {start!r} is not allowed: a tariff >= 0.")
    opts = options or PolicyOptions()
    t = np.zeros((world.M, world.M)) if world.tariffs is None else np.array(world.tariffs)
    for c in players:
        i = world.index(c)
        t[i, [j for j in range(world.M) if j != i]] = start
    world = world.replace(tariffs=t)
    eq, solves, brs = baseline, 0, []
    values = {}
    for rnd in range(1, max_rounds + 1):
        change = 0.0
        for c in players:
            i = world.index(c)
            old = float(max(world.tariffs[i, j] for j in range(world.M) if j != i))
            x0 = min(max(old, opts.tariff_bounds[0]), opts.tariff_bounds[1])
            r = optimal_policy(
                baseline, c, criterion=criterion, rebate=rebate, world=world, x0=[x0],
                options=opts, start=eq,
            )  # fmt: skip
            world = r.eq.world.replace(rebate=world.rebate if rebate is None else rebate)
            eq, solves = r.eq, solves + r.solves
            values[c] = r.value
            brs.append(dict(round=rnd, country=c, tariff=float(r.theta[0]), solves=r.solves,
                            seconds=r.seconds, value=r.value))  # fmt: skip
            change = max(change, abs(float(r.theta[0]) - old))
            log.info(
                "nash round %d: %s best response %.8f (%d solves)", rnd, c, r.theta[0], r.solves
            )
        if change <= tol:
            break
    else:
        raise EquilibriumError(
            f"nash: best responses still move by {change:.2e} after {max_rounds} rounds "
            f"(tol {tol:g}); try more rounds or another start."
        )
    tariffs = {c: float(world.tariffs[world.index(c)].max()) for c in players}
    for c in players:  # every player's criterion at the final equilibrium
        v = evaluate_criteria(baseline, eq, c)
        values[c] = v["real_income"] if criterion == "real_income" else v["ce"][criterion]
    return NashResult(
        countries=players,
        tariffs=tariffs,
        criterion=values,
        rounds=rnd,
        converged=True,
        max_change=change,
        solves=solves,
        best_responses=brs,
        eq=eq,
        seconds=time.perf_counter() - t0,
    )
