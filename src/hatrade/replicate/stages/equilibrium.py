r"""Stage ``equilibrium``: the stationary equilibrium of each model.

For each model: the wages and :math:`\beta` that clear every market at the world interest
rate :math:`R` (solved from the published prices, through the results cache), written as a
solve folder (:func:`hatrade.io.results.save_solve`); then the table of equilibrium prices
and the wages and import shares by country.
"""

from __future__ import annotations

import pandas as pd

from hatrade.io.equilibrium_store import cached_equilibrium, equilibrium_inputs
from hatrade.io.fingerprint import fingerprint
from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec

__all__ = ["stage_equilibrium", "equilibrium_key"]


def equilibrium_key(world, hh, options: dict, income=None) -> str:
    """The results-cache key of an equilibrium (what later results are keyed on)."""
    return fingerprint("equilibrium", equilibrium_inputs(world, hh, income, **options))


def _solve_model(ctx: StageContext, spec: ModelSpec, res: StageResult) -> dict:
    """Solve (or load) one model's equilibrium, write its solve folder; its table row."""
    from hatrade.io.results import save_solve
    from hatrade.solve.equilibrium import solve_equilibrium

    s = ctx.setup
    hh = spec.household
    options = {"solve_for": "beta", "R": s.R, "tol": s.tol, "hh_tol": s.hh_tol}

    def solve():
        ctx.step(
            f"{spec.name}: solving wages and beta from the published prices "
            "(the first solve compiles)"
        )
        # Broyden updates between exact Jacobians: the published prices are close to the
        # solution, so few steps follow the first exact Jacobian
        return solve_equilibrium(
            spec.world,
            hh,
            solve_for="beta",
            R=s.R,
            wages=spec.wages,
            beta_guess=spec.beta,
            tol=s.tol,
            hh_tol=s.hh_tol,
            method="broyden",
            progress=ctx.newton(spec.name),
        )

    eq, hit = cached_equilibrium(
        ctx.cache, spec.world, hh, solve, options=options, label=f"{spec.name} equilibrium"
    )
    ctx.eq[spec.name] = eq
    ctx.eq_key[spec.name] = equilibrium_key(spec.world, hh, options)
    ctx.step(f"{spec.name}: writing the solve folder")
    save_solve(
        eq,
        ctx.path(spec.name),
        spec.name,
        data_fit="ek",
        parameters={"household": hh.to_dict(), "solve": {**options, "wages_start": "published"}},
    )
    res.files.extend(
        ctx.rel(spec.name, f)
        for f in ("summary.json", "trade.csv", "households.nc", "trade_fit.png")
    )
    w = eq.wages
    ctx.numbers.setdefault("beta", {})[spec.name] = float(eq.beta)
    ctx.numbers.setdefault("wages", {})[spec.name] = {k: float(v) for k, v in w.items()}
    return {
        "model": spec.title,
        "beta": float(eq.beta),
        "R": float(eq.prices.R[0]),
        f"wage {s.home}": float(w[s.home]),
        f"import share {s.home}": float(eq.import_share[s.home]),
        "max excess demand": float(eq.residual),
        "Newton steps": int(eq.iterations),
        "solved or loaded": ("loaded from cache" if hit else f"solved in {eq.seconds:.1f} s"),
    }


def _wage_table(ctx: StageContext) -> pd.DataFrame:
    """Wages and import shares by country, one column pair per solved model."""
    s = ctx.setup
    wt = pd.DataFrame({"country": list(s.models[0].world.countries)})
    for spec in s.models:
        if spec.name in ctx.eq:
            eq = ctx.eq[spec.name]
            wt[f"wage ({spec.name})"] = eq.wages.reindex(wt["country"]).to_numpy()
            wt[f"import share ({spec.name})"] = eq.import_share.reindex(wt["country"]).to_numpy()
    return wt


def stage_equilibrium(ctx: StageContext) -> StageResult:
    """The stationary equilibrium of every model (see the module docstring)."""
    s = ctx.setup
    res = StageResult("equilibrium", "")
    done, errors = for_each_model(ctx, lambda spec: _solve_model(ctx, spec, res))
    rows = list(done.values())
    if rows:
        res.tables.append(
            Table(
                "equilibrium",
                "Equilibrium prices",
                pd.DataFrame(rows),
                "beta clears the world bond market at R; wages have mean one.",
                formats={
                    "beta": ".6f",
                    "R": ".4f",
                    f"wage {s.home}": ".6f",
                    f"import share {s.home}": ".4f",
                    "max excess demand": ".2e",
                },
            )
        )
        wt = _wage_table(ctx)
        res.tables.append(
            Table(
                "wages",
                "Wages and import shares by country",
                wt,
                formats={c: ".5f" for c in wt.columns if c != "country"},
            )
        )
        res.files.append(ctx.write_csv(wt, "wages.csv"))
    return stage_status(res, done, errors)
