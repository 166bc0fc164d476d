r"""Stage ``elasticities``: Proposition 1 trade elasticities of the home country.

For each model, the home country's (the US's) trade elasticities by partner on impact
(wages, :math:`R` and the distribution fixed) and in the long run (the distribution
re-solved), their trade-share-weighted aggregates and the household (micro) elasticities
(docs/model.md 5). Elasticities go through the results cache; :func:`elasticities` is shared
with the ``micro`` stage.
"""

from __future__ import annotations

import pandas as pd

from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec

__all__ = ["stage_elasticities", "elasticities"]


def _elasticity_bundle(lr) -> dict:
    """A long-run elasticity result as plain data (what the cache stores)."""
    imp = lr.impact
    return {
        "impact_table": imp.table,
        "longrun_table": lr.table,
        "micro": imp.micro,
        "theta": imp.theta,
        "theta_extensive": imp.theta_extensive,
        "theta_intensive": imp.theta_intensive,
        "theta_longrun": lr.theta_longrun,
        "method": imp.method,
        "residual": imp.residual,
        "seconds": imp.seconds,
        "country": imp.country,
    }


def _elasticity_objects(b: dict):
    """The impact and long-run results back from :func:`_elasticity_bundle`'s data."""
    from hatrade.analysis.elasticity import ElasticityResult, LongRunResult

    imp = ElasticityResult(
        country=b["country"],
        table=b["impact_table"],
        theta=b["theta"],
        theta_extensive=b["theta_extensive"],
        theta_intensive=b["theta_intensive"],
        micro=b["micro"],
        method=b["method"],
        residual=b["residual"],
        seconds=b["seconds"],
    )
    lr = LongRunResult(
        country=b["country"],
        table=b["longrun_table"],
        theta_impact=b["theta"],
        theta_longrun=b["theta_longrun"],
        impact=imp,
    )
    return imp, lr


def elasticities(ctx: StageContext, key: str, eq, country: str, label: str):
    """Impact and long-run elasticities of ``country`` in ``eq`` (cache key ``key``),
    through the results cache.

    Returns
    -------
    (ElasticityResult, LongRunResult)
    """
    from hatrade.analysis.elasticity import longrun_elasticities

    def compute():
        ctx.step(f"{label}: elasticities of {country} (exact derivatives)")
        return _elasticity_bundle(longrun_elasticities(eq, country))

    b = ctx.memo(
        "elasticity",
        {"equilibrium": key, "country": country, "kind": "longrun", "method": "direct"},
        compute,
        label=f"{label} {country}",
    )
    return _elasticity_objects(b)


def _model_elasticities(ctx: StageContext, spec: ModelSpec, res: StageResult):
    """One model's elasticities, figure and files; its summary row and its table by
    partner."""
    from hatrade.plots.elasticity import partner_elasticities_figure

    s = ctx.setup
    eq = ctx.need_eq(spec)
    imp, lr = elasticities(ctx, ctx.eq_key[spec.name], eq, s.home, spec.name)
    ctx.elast[spec.name] = (imp, lr)
    fig = partner_elasticities_figure(
        imp, longrun=lr, title=f"{s.home} trade elasticities by partner, {spec.title}"
    )
    res.figures.append(
        ctx.figure(
            fig,
            f"elasticities-{spec.name}",
            f"{s.home} trade elasticities by partner, {spec.title}",
            "Proposition 1 impact elasticity θ_ij (w, R and the distribution "
            "fixed) against the partner's price; open markers: long run (distribution "
            "re-solved). Marker size: trade weight.",
            f"elasticities_{spec.name}.png",
        )
    )
    t = lr.table.copy()
    res.files.append(ctx.write_csv(t, f"elasticities_{spec.name}.csv"))
    imp.micro.to_netcdf(ctx.path(f"micro_elasticities_{spec.name}.nc"), engine="h5netcdf")
    res.files.append(ctx.rel(f"micro_elasticities_{spec.name}.nc"))
    row = {
        "model": spec.title,
        "θ impact": imp.theta,
        "extensive": imp.theta_extensive,
        "intensive": imp.theta_intensive,
        "θ long run": lr.theta_longrun,
        "min over partners": float(t["theta_impact"].min()),
        "max over partners": float(t["theta_impact"].max()),
    }
    if spec.household.gamma == 1.0:
        row["−1/σ_ε (Prop. 3)"] = -1.0 / spec.household.sigma_eps
    ctx.numbers.setdefault("theta", {})[spec.name] = {
        "impact": imp.theta,
        "longrun": lr.theta_longrun,
        "extensive": imp.theta_extensive,
        "intensive": imp.theta_intensive,
        "by_partner": {p: float(v) for p, v in zip(t["partner"], t["theta_impact"])},
    }
    return row, t.set_index("partner")


def _by_partner(done: dict) -> pd.DataFrame:
    """The elasticities by partner of every model side by side, after the first model's
    trade shares."""
    by_partner = None
    for name, (_, bp) in done.items():
        if by_partner is None:
            by_partner = pd.DataFrame(
                {"partner": bp.index, f"trade share ({name})": bp["trade_share"].to_numpy()}
            ).set_index("partner")
        by_partner[f"θ impact ({name})"] = bp["theta_impact"]
        by_partner[f"θ long run ({name})"] = bp["theta_longrun"]
    return by_partner.reset_index()


def stage_elasticities(ctx: StageContext) -> StageResult:
    """The home country's trade elasticities (see the module docstring)."""
    s = ctx.setup
    res = StageResult("elasticities", "")
    done, errors = for_each_model(ctx, lambda spec: _model_elasticities(ctx, spec, res))
    if done:
        summary = [row for row, _ in done.values()]
        res.tables.append(
            Table(
                "elasticity-summary",
                f"{s.home} aggregate trade elasticity",
                pd.DataFrame(summary),
                "Trade-share-weighted over partners; impact = extensive + intensive margin.",
                formats={},
            )
        )
        bp = _by_partner(done)
        res.tables.append(
            Table(
                "elasticity-partners",
                f"{s.home} elasticities by partner",
                bp,
                formats={c: ".4f" for c in bp.columns if c != "partner"},
            )
        )
        res.files.append(ctx.write_csv(bp, "elasticities_by_partner.csv"))
    res.files.append(ctx.write_json(ctx.numbers.get("theta", {}), "summary.json"))
    return stage_status(res, done, errors)
