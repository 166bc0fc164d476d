# %% [markdown]
# # Your own data set
#
# hatrade takes any tidy bilateral trade table: one row per exporter-importer pair
# (domestic sales included) with a trade value and pair covariates. This tutorial checks
# the 30-country 2006 data set shipped with the package (from the structural-gravity
# literature; provenance in `src/hatrade/data/`), calibrates the model to five of its
# countries with a gravity specification of your choice, and compares model and data trade.
# The full guide, with the 30-country results: [Your own data](../own-data.md).

# %%
import logging
from importlib import resources

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import hatrade
from hatrade.calibration.generic import calibrate_data, fit_table, prepare
from hatrade.data.specification import SpecificationError
from hatrade.data.tidy import check_trade_data, read_trade_data

logging.basicConfig(level=logging.WARNING)

path = resources.files("hatrade.data") / "trade-30-countries-2006.csv"
table = pd.read_csv(str(path))
table.head()

# %% [markdown]
# ## Check the data
#
# `check_trade_data` (the command line: `hatrade data check FILE`) names every problem
# with its rows: missing or duplicate pairs, zeros and negatives, missing domestic sales,
# unknown codes; imbalances are warnings. Here, five countries of the file:

# %%
five = ["USA", "CAN", "MEX", "JPN", "DEU"]
sub = table[table["exporter"].isin(five) & table["importer"].isin(five)]
data = read_trade_data(sub)
report = check_trade_data(data)
print(report)

# %% [markdown]
# ## Calibrate by gravity as a guide
#
# The trade-cost function is the specification's covariates with parameters to calibrate
# (plus importer terms), TFPs per country and beta at R = 1.01, chosen so that the gravity
# regression on model trade reproduces the regression on the data (OLS on log normalized
# shares, as in the paper; `estimator="ppml"` keeps zero flows). A coarse household grid
# keeps this quick.

# %%
try:
    prepare(data, "lndist + contiguity + common_language + pta", "ols")
except SpecificationError as err:
    print(err)

# %% [markdown]
# Among these five countries a shared language (English, Spanish and German) only links
# pairs that the fixed effects and the other covariates already separate, so the
# specification is refused before any solve, naming the covariate. Without it:

# %%
household = hatrade.published_household("baseline", n_a=30, n_perm=3, n_iid=1)
setup = prepare(data, "lndist + contiguity + pta", "ols")
result, _ = calibrate_data(setup, household=household, tol=1e-8, max_iter=15)
print(f"converged: {result.converged}, beta = {result.equilibrium.beta:.6f}")

# %%
fit = fit_table(result, setup)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
x, y = np.log(fit["share_data"]), np.log(fit["share_model"])
ax.scatter(x, y)
lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
ax.set(xlabel="log import share, data", ylabel="log import share, model",
       title="five countries, 2006")
plt.show()
fit.head()
