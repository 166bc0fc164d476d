# %% [markdown]
# # Trade policy with redistribution
#
# Which import tariff is best for a country's households, and does the answer change when
# the tariff revenue goes to the poor? This tutorial takes a small world, evaluates the
# welfare criteria of a tariff with two rebate rules, and finds the optimal uniform tariff
# of one country with exact gradients through the equilibrium (the guide, with the
# closed-form checks: [Trade policy](../policy.md)).

# %%
import logging

import pandas as pd

import hatrade
from hatrade.analysis.counterfactual import Scenario, run_counterfactual
from hatrade.policy import evaluate_criteria, optimal_policy

logging.basicConfig(level=logging.WARNING)

world = hatrade.World(
    countries=["USA", "CAN"],
    tfp=[1.0, 0.9],
    labor=[1.0, 0.5],
    d=[[1.0, 1.6], [1.6, 1.0]],
)
household = hatrade.Household(gamma=1.45, sigma_eps=0.33, psi_slope=0.725, beta=0.93, n_a=20)
household = household.replace(n_perm=3, n_iid=1)  # a small income process: quick
old = hatrade.solve_equilibrium(world, household)

# %% [markdown]
# ## A 10% tariff, two ways to spend its revenue
#
# The revenue is rebated lump sum per person (the paper's rule) or only to the bottom 20%
# of the income distribution. `evaluate_criteria` reports, relative to the baseline, the
# criteria by the consumption equivalent of every state (percent): the utilitarian mean,
# the means of every expenditure quintile and income group; and the share of households
# who lose and the change of real income per person.

# %%
rows = {}
for rebate in ("lump-sum", "group:bottom_20"):
    sc = Scenario(importer="USA", tariff=0.10, rebate=rebate)
    cf = run_counterfactual(old, sc)
    crit = evaluate_criteria(old, cf.new, "USA")
    rows[rebate] = pd.Series(
        {**crit["ce"], "share_losers": crit["share_losers"], "real_income": crit["real_income"]}
    )
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## The optimal uniform tariff
#
# `optimal_policy` maximizes a criterion over the country's tariff, the other country's
# policy fixed, with a bounded quasi-Newton optimizer and the exact gradient of the
# criterion through the new stationary equilibrium (the implicit function theorem on the
# equilibrium's Jacobian). At the optimum the gradient vanishes, or the tariff sits on a
# bound.

# %%
best = optimal_policy(old, "USA", instrument="tariff", criterion="utilitarian")
print(f"optimal tariff {best.theta[0]:.4f}: utilitarian gain {best.value:.4f}%, "
      f"projected gradient norm {best.grad_norm:.1e}, {best.solves} equilibrium solves")
