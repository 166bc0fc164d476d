"""The stages of ``hatrade replicate``, one module each, and their registry.

A stage is a function ``stage(ctx: StageContext) -> StageResult`` that computes one group
of results for every model of the setup, writes its files into ``OUT/<stage>/`` and
returns what the report shows (see :mod:`hatrade.replicate.context`). :data:`STAGES` maps
the names, in order (:data:`STAGE_NAMES`), to the functions.
"""

from __future__ import annotations

from typing import Callable

from hatrade.replicate.report import StageResult
from hatrade.replicate.setup import Setup
from hatrade.replicate.stages.counterfactuals import stage_global, stage_unilateral
from hatrade.replicate.stages.efficient import stage_efficient
from hatrade.replicate.stages.elasticities import stage_elasticities
from hatrade.replicate.stages.equilibrium import stage_equilibrium
from hatrade.replicate.stages.micro import stage_micro
from hatrade.replicate.stages.table1 import stage_table1
from hatrade.replicate.stages.trade_fit import stage_trade_fit
from hatrade.replicate.stages.transitions import stage_transitions

__all__ = ["STAGES", "STAGE_NAMES", "OPTIONAL_STAGES", "ALL_STAGE_NAMES", "stage_titles"]

#: Stage name -> function, in the order the stages run (the report stage runs last).
STAGES: dict[str, Callable[..., StageResult]] = {
    "equilibrium": stage_equilibrium,
    "table1": stage_table1,
    "trade_fit": stage_trade_fit,
    "elasticities": stage_elasticities,
    "micro": stage_micro,
    "unilateral": stage_unilateral,
    "global": stage_global,
    "efficient": stage_efficient,
    "transitions": stage_transitions,
}

#: Stages beyond the paper that run only when asked for (``replicate(stages=...)``,
#: ``hatrade replicate --transitions``).
OPTIONAL_STAGES: tuple[str, ...] = ("transitions",)

#: Every stage in order, the optional ones included.
ALL_STAGE_NAMES: tuple[str, ...] = tuple(STAGES)

#: The stages of a default run, in order (the report stage runs last, after these).
STAGE_NAMES: tuple[str, ...] = tuple(n for n in STAGES if n not in OPTIONAL_STAGES)


def stage_titles(setup: Setup) -> dict:
    """Titles of the stages for a setup."""
    names = " and ".join(m.title.split(" (")[0].lower() for m in setup.models)
    pct = f"{abs(setup.trade_cost_change):.0%}"
    return {
        "equilibrium": f"Stationary equilibria ({names})",
        "table1": "Table 1: gravity moments, model fit and trade-cost parameters",
        "trade_fit": "Bilateral trade: model vs. data",
        "elasticities": f"Trade elasticities of {setup.home} by partner",
        "micro": f"{setup.home} households: micro table and micro elasticities",
        "unilateral": f"Welfare: {pct} cut of {setup.home} import costs (unilateral)",
        "global": f"Welfare: {pct} cut of all trade costs (global)",
        "efficient": "Efficient vs. decentralized allocation",
        "transitions": f"Beyond the paper: transitions after the {pct} cuts, welfare at t = 0",
    }
