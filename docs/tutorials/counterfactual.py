# %% [markdown]
# # Your own counterfactual, and who gains
#
# This tutorial builds a small world, solves its stationary equilibrium, cuts one country's
# import costs by 10% (the paper's experiment, on a world small enough to run in seconds)
# and asks which households gain: the equivalent variation of every household state, its
# mean by expenditure quintile, and the share of households who lose.
#
# Everything here is the public API; `hatrade counterfactual` on the command line runs the
# same computation from a TOML file (see [the command line](../commands.md)).

# %%
import logging

import matplotlib.pyplot as plt
import pandas as pd

import hatrade
from hatrade.analysis.counterfactual import Scenario, run_counterfactual
from hatrade.welfare import country_welfare

logging.basicConfig(level=logging.WARNING)

# %% [markdown]
# ## A world of three countries
#
# `d[i][j]` is the iceberg cost of importer `i` buying from exporter `j` (rows import).
# The household block has the paper's baseline preferences (relative risk aversion 1.45,
# taste-shock dispersion 0.33, the income slope of the taste shifter 0.725) on a coarse
# asset grid; with the discount factor fixed at 0.93 the solver finds the wages and the
# world interest rate R that clear the goods and bond markets.

# %%
world = hatrade.World(
    countries=["USA", "CAN", "MEX"],
    tfp=[1.0, 0.9, 0.7],
    labor=[1.0, 0.4, 0.5],
    d=[[1.0, 1.6, 1.8], [1.6, 1.0, 2.0], [1.8, 2.0, 1.0]],
)
household = hatrade.Household(gamma=1.45, sigma_eps=0.33, psi_slope=0.725, beta=0.93, n_a=40)
old = hatrade.solve_equilibrium(world, household)
print(f"beta = {old.beta:.6f}, R = {old.R:.4f}")
old.import_share

# %% [markdown]
# ## A 10% cut of US import costs
#
# A `Scenario` describes the change: here $d'_{USA,j} = 0.9\, d_{USA,j}$ for both
# partners. The new stationary equilibrium keeps beta at its baseline value and solves the
# wages and the interest rate.

# %%
cf = run_counterfactual(old, Scenario(importer="USA", trade_cost_change=-0.10))
print(f"R: {old.R:.5f} -> {cf.new.R:.5f}")
(cf.new.wages / old.wages - 1).mul(100).round(3).rename("wage change (%)")

# %% [markdown]
# ## Who gains
#
# `country_welfare` computes, for every household state $(a, z)$, the scaling
# $\lambda(a,z)$ of income at the old prices that makes the household as well off as in
# the new steady state (the equivalent variation; gains are $100(\lambda - 1)$ percent),
# and summarises it with the baseline's stationary distribution.

# %%
w = country_welfare(cf, country="USA")
s = w.summary
print(f"mean gain {s['mean_gain_percent']:.3f}%, ACR benchmark {s['acr_percent']:.3f}%")
print(f"share of households who lose: {s['share_losers']:.3f}")
quintiles = pd.Series(s["quintile_gain_percent"], name="mean gain (%)")
quintiles

# %% [markdown]
# Every state's numbers are in `w.table` (one row per asset and income state: the mass,
# $\lambda$, the gain, the consumption-equivalent Lucas measure and the accuracy of each
# inversion). Here are the states with the largest and the smallest gains:

# %%
w.table.sort_values("gain_percent")[["assets", "z", "mass", "gain_percent"]].iloc[[0, 1, -2, -1]]

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(quintiles.index, quintiles.to_numpy())
ax.set_xlabel("expenditure quintile")
ax.set_ylabel("mean welfare gain (%)")
ax.set_title("10% cut of US import costs, three-country world")
plt.show()
