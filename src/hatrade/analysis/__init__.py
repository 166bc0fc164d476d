"""Analyses of solved worlds: counterfactuals, trade elasticities, the household cross-section,
the efficient allocation, income and expenditure groups, and the gravity regression."""
