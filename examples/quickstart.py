"""hatrade API quick start: a two-country world, solved and saved.

Run with ``python examples/quickstart.py`` (about a minute on two cores; most of it is
JAX compiling the solver on the first call).
"""

from pathlib import Path

import hatrade
from hatrade.io.config import load_config
from hatrade.io.results import save_solve

# 1. Describe a world directly ...
world = hatrade.World(
    countries=["H", "F"],
    tfp=[1.0, 1.0],
    labor=[1.0, 1.0],
    d=[[1.0, 1.5], [1.5, 1.0]],  # iceberg costs d_ij: importer i (row), exporter j (column)
    financial="globalization",
)
household = hatrade.Household(gamma=2.0, sigma_eps=0.3, psi_slope=0.0, beta=0.93, n_a=50)

# 2. ... solve the stationary equilibrium: wages and the world interest rate R given beta.
eq = hatrade.solve_equilibrium(world, household)
print(f"R = {eq.R:.6f}, beta = {eq.beta}")
print(eq.wages)
print(eq.import_share)
print(eq.trade_table())  # importer, exporter, share, log_normalized_model

# Policies, choice probabilities and the stationary distribution, as an xarray Dataset.
ds = eq.to_dataset()
print(ds["choice_prob"].sel(country="H", variety="F").mean().item())

# 3. The same world from a TOML file (what `hatrade solve --config` reads), and the four
#    output files of `hatrade solve` (summary.json, trade.csv, households.nc, trade_fit.png).
cfg = load_config(Path(__file__).with_name("two_country.toml"))
print(cfg.name, cfg.solve_for, cfg.household.n_a)
summary = save_solve(eq, Path("results") / "quickstart", name="quickstart",
                     parameters={"household": household.to_dict(), "world": world.to_dict()})
print("wrote results/quickstart; beta =", summary["beta"])
