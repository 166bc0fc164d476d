# %% [markdown]
# # Trade elasticities, and who buys what
#
# In hatrade the aggregate trade elasticity is the sum of household decisions
# (Proposition 1 of the paper, docs: [the model](../model.md), section 5): when a partner's
# price rises by one percent, each household changes the probability of choosing that
# variety (the *extensive* margin) and how much it spends on it (the *intensive* margin).
# This tutorial computes the elasticities of one country in a small world, splits them into
# the two margins, and shows how they vary across households.

# %%
import logging

import matplotlib.pyplot as plt

import hatrade
from hatrade.analysis.elasticity import trade_elasticities

logging.basicConfig(level=logging.WARNING)

world = hatrade.World(
    countries=["USA", "CAN", "MEX"],
    tfp=[1.0, 0.9, 0.7],
    labor=[1.0, 0.4, 0.5],
    d=[[1.0, 1.6, 1.8], [1.6, 1.0, 2.0], [1.8, 2.0, 1.0]],
)
household = hatrade.Household(gamma=1.45, sigma_eps=0.33, psi_slope=0.725, beta=0.93, n_a=40)
eq = hatrade.solve_equilibrium(world, household)

# %% [markdown]
# ## The elasticities by partner
#
# The impact elasticity holds wages, the interest rate and the distribution of households
# fixed. With log utility it would be exactly $-1/\sigma_\epsilon$ for every partner
# (Proposition 3); with $\gamma = 1.45$ and income risk it differs, and it differs by
# partner because different households buy from different partners.

# %%
el = trade_elasticities(eq, "USA")
print(f"USA: theta = {el.theta:.4f} (extensive {el.theta_extensive:.4f}, "
      f"intensive {el.theta_intensive:.4f}); -1/sigma_eps = {-1 / 0.33:.4f}")
el.table[["partner", "theta", "theta_extensive", "theta_intensive", "trade_share", "theta_direct"]]

# %% [markdown]
# `theta_direct` is the same elasticity computed from aggregate spending directly, an
# internal check of the decomposition.
#
# ## Who buys what, and how elastic they are
#
# The micro arrays (an xarray Dataset) hold every household state's import share and
# elasticity. Households near the borrowing limit, whose consumption is most sensitive to
# prices, respond differently from the wealthy.

# %%
micro = el.micro
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
for k in range(micro.sizes["z_index"]):
    z = micro["z"].isel(z_index=k).item()
    axes[0].plot(micro["assets"], micro["import_share"].isel(z_index=k), label=f"z = {z:.2f}")
    axes[1].plot(micro["assets"], micro["household_elasticity"].isel(z_index=k))
axes[0].set(xlabel="assets", ylabel="import share", title="who buys imports")
axes[1].set(xlabel="assets", ylabel="elasticity", title="household trade elasticity")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()
