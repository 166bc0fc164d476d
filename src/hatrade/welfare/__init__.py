"""Household welfare of a counterfactual: the equivalent variation of every state, the
consumption-equivalent (Lucas) measure, country summaries and the Proposition 2
decomposition."""

from hatrade.welfare.ev import (ACR_THETA, WELFARE_COLUMNS, CountryWelfare, Decomposition,
                                EVResult, acr_gain, consumption_equivalent, country_welfare,
                                decompose, equivalent_variation, expenditure_quintiles,
                                group_means, household_problem, income_groups, value_split,
                                welfare)

__all__ = ["EVResult", "CountryWelfare", "Decomposition", "equivalent_variation",
           "consumption_equivalent", "value_split", "country_welfare", "welfare", "acr_gain",
           "group_means", "expenditure_quintiles", "income_groups", "decompose",
           "household_problem", "ACR_THETA", "WELFARE_COLUMNS"]
