"""Household welfare of a counterfactual: the equivalent variation of every state
(:mod:`~hatrade.welfare.ev`), the consumption-equivalent (Lucas) measure
(:mod:`~hatrade.welfare.lucas`), country summaries (:mod:`~hatrade.welfare.summary`) and
the Proposition 2 decomposition (:mod:`~hatrade.welfare.decompose`)."""

from hatrade.welfare.decompose import Decomposition, decompose
from hatrade.welfare.ev import EVResult, equivalent_variation
from hatrade.welfare.lucas import consumption_equivalent, value_split
from hatrade.welfare.problem import household_problem
from hatrade.welfare.summary import (
    ACR_THETA,
    WELFARE_COLUMNS,
    CountryWelfare,
    acr_gain,
    country_welfare,
    expenditure_quintiles,
    group_means,
    income_groups,
    welfare,
)

__all__ = [
    "ACR_THETA",
    "WELFARE_COLUMNS",
    "CountryWelfare",
    "Decomposition",
    "EVResult",
    "acr_gain",
    "consumption_equivalent",
    "country_welfare",
    "decompose",
    "equivalent_variation",
    "expenditure_quintiles",
    "group_means",
    "household_problem",
    "income_groups",
    "value_split",
    "welfare",
]
