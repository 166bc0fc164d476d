# %% [markdown]
# # Transition paths, and who gains along them
#
# The paper compares stationary equilibria. With incomplete markets the path between them
# matters for welfare: after a trade liberalization wages and the interest rate move over
# years while households' assets adjust, so the gain of a household alive at the reform
# differs from the steady-state comparison. This tutorial solves the perfect-foresight
# transition after a 10% cut of one country's import costs in a small world and compares
# the two welfare measures (conventions and algorithm: [Transitions](../transitions.md)).

# %%
import logging

import matplotlib.pyplot as plt
import pandas as pd

import hatrade
from hatrade.analysis.counterfactual import Scenario
from hatrade.analysis.transition import run_transition
from hatrade.welfare.transition import transition_welfare

logging.basicConfig(level=logging.WARNING)

world = hatrade.World(
    countries=["USA", "CAN"],
    tfp=[1.0, 0.9],
    labor=[1.0, 0.5],
    d=[[1.0, 1.6], [1.6, 1.0]],
)
household = hatrade.Household(gamma=1.45, sigma_eps=0.33, psi_slope=0.725, beta=0.93, n_a=30)
household = household.replace(n_perm=3, n_iid=1)  # a small income process: quick
old = hatrade.solve_equilibrium(world, household)

# %% [markdown]
# ## The path
#
# `run_transition` starts from the old stationary distribution (and the old return on the
# assets carried into period 0), solves the new steady state (beta fixed), and finds the
# wage and interest-rate paths that clear every market in every period: Newton in sequence
# space with the exact Jacobian of the household block (the fake-news algorithm). A
# horizon of 60 periods is enough for this small world; an error would say so otherwise.

# %%
tr = run_transition(old, Scenario(importer="USA", trade_cost_change=-0.10), periods=60)
print(f"converged: {tr.converged}, iterations: {tr.iterations}, "
      f"largest excess demand: {tr.residual:.1e}")
tr.paths.head()

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
for code, p in tr.paths.groupby("country"):
    axes[0].plot(p["period"], p["wage"], label=code)
    axes[2].plot(p["period"], p["import_share"], label=code)
usa = tr.paths[tr.paths["country"] == "USA"]
axes[1].plot(usa["period"], usa["R"])
axes[0].set(title="wages (mean one)", xlabel="period")
axes[1].set(title="interest rate R", xlabel="period")
axes[2].set(title="import share", xlabel="period")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Welfare at the reform, against the steady-state comparison
#
# For every household state, `transition_welfare` finds the scaling of income at the old
# prices that gives the household the value of the path it faces at t = 0, next to the
# steady-state equivalent variation.

# %%
w = transition_welfare(tr, "USA")
s = w.summary
table = pd.DataFrame(
    {
        "transition": s["transition"]["quintile_gain_percent"],
        "steady state": s["steady_state"]["quintile_gain_percent"],
    }
)
table.loc["mean"] = [s["transition"]["mean_gain_percent"], s["steady_state"]["mean_gain_percent"]]
print(f"share of households who lose at the reform: {s['share_losers_transition']:.3f}")
table.round(3)

# %%
ax = table.drop("mean").plot.bar(figsize=(6, 3.5), rot=0)
ax.set(xlabel="expenditure quintile", ylabel="mean welfare gain (%)")
plt.show()
