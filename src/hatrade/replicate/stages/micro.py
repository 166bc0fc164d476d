r"""Stage ``micro``: the home country's households.

For each model, the micro table (import share, trade elasticity and MPC by income group
and expenditure quintile, exact weights of the stationary distribution) and, for the first
model, household trade elasticities by state; then the paper's figure, household
elasticities in a symmetric two-country world with the first model's preferences
(:func:`two_country_elasticities`, which :func:`hatrade.replicate.replicate` starts in the
background at once since it needs none of the other results).
"""

from __future__ import annotations

import logging
import traceback

from hatrade.io.equilibrium_store import cached_equilibrium
from hatrade.replicate.context import (
    StageContext,
    StageDependencyError,
    for_each_model,
    stage_status,
)
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec
from hatrade.replicate.stages.elasticities import elasticities
from hatrade.replicate.stages.equilibrium import equilibrium_key

__all__ = ["stage_micro", "two_country_elasticities"]

log = logging.getLogger(__name__)


def two_country_elasticities(ctx: StageContext):
    """The micro figure's symmetric two-country world (the first model's preferences): its
    equilibrium and the home country's elasticities, through the cache.

    Returns
    -------
    ElasticityResult
        The impact elasticities of the first country.
    """
    from hatrade.plots.elasticity import symmetric_two_country
    from hatrade.solve.equilibrium import solve_equilibrium

    s = ctx.setup
    spec = s.models[0]
    world2 = symmetric_two_country(s.two_country_d)
    hh = spec.household
    options = {"solve_for": "beta", "R": s.R, "tol": s.tol, "hh_tol": s.hh_tol}

    def solve():
        ctx.step("symmetric two-country world: solving beta")
        return solve_equilibrium(
            world2,
            hh,
            solve_for="beta",
            R=s.R,
            beta_guess=spec.beta,
            tol=s.tol,
            hh_tol=s.hh_tol,
            progress=ctx.newton("two-country"),
        )

    eq2, _ = cached_equilibrium(
        ctx.cache, world2, hh, solve, options=options, label="symmetric two-country equilibrium"
    )
    key2 = equilibrium_key(world2, hh, options)
    imp2, _ = elasticities(ctx, key2, eq2, world2.countries[0], "two-country")
    return imp2


def _cross_section_table(ctx: StageContext, spec: ModelSpec, eq, imp):
    """The household cross-section of the home country (MPCs), through the cache."""
    from hatrade.analysis.cross_section import cross_section

    s = ctx.setup

    def compute():
        ctx.step(f"{spec.name}: household cross-section of {s.home} (MPCs)")
        xs = cross_section(eq, s.home, transfer=s.transfer, elasticities=imp)
        return {"table": xs.table}

    return ctx.memo(
        "cross_section",
        {"equilibrium": ctx.eq_key[spec.name], "country": s.home, "transfer": s.transfer},
        compute,
        label=f"{spec.name} {s.home}",
    )["table"]


def _model_micro(ctx: StageContext, spec: ModelSpec, res: StageResult) -> None:
    """One model's micro table, cross-section and figures."""
    from hatrade.analysis.cross_section import micro_table
    from hatrade.plots.elasticity import micro_by_assets_figure, micro_table_figure

    s = ctx.setup
    eq = ctx.need_eq(spec)
    if spec.name not in ctx.elast:
        raise StageDependencyError(
            f"the {spec.name} elasticities are not available (stage 'elasticities' failed for it)."
        )
    imp, _ = ctx.elast[spec.name]
    xs_table = _cross_section_table(ctx, spec, eq, imp)
    mt = micro_table(xs_table)
    res.files.append(ctx.write_csv(mt, f"micro_table_{spec.name}.csv"))
    res.files.append(ctx.write_csv(xs_table, f"cross_section_{spec.name}.csv"))
    shown = mt[["grouping", "group", "import_share", "elasticity", "mpc", "mass"]].copy()
    res.tables.append(
        Table(
            f"micro-{spec.name}",
            f"{s.home} households, {spec.title}: import shares, trade elasticities and MPCs",
            shown,
            "Exact weights of the stationary distribution; income groups "
            "by labor income w z, quintiles by expenditure. MPC: marginal "
            f"propensity to spend out of a one-time transfer of {s.transfer}.",
            formats={"import_share": ".4f", "elasticity": ".3f", "mpc": ".3f", "mass": ".3f"},
        )
    )
    fig = micro_table_figure(mt, title=f"{s.home} households, {spec.title}")
    res.figures.append(
        ctx.figure(
            fig,
            f"micro-table-{spec.name}",
            f"Micro table, {spec.title}",
            "Import share, trade elasticity and MPC by group.",
            f"micro_table_{spec.name}.png",
        )
    )
    if spec is s.models[0]:
        fig = micro_by_assets_figure(
            imp, title=f"{s.home} household trade elasticities by state, {spec.title}"
        )
        res.figures.append(
            ctx.figure(
                fig,
                f"micro-assets-{spec.name}",
                f"{s.home} household elasticities by state",
                "Household trade elasticity against assets, one line per income state.",
                f"micro_elasticity_{spec.name}.png",
            )
        )
    ctx.numbers.setdefault("micro", {})[spec.name] = mt.to_dict(orient="records")


def _two_country_figure(ctx: StageContext, res: StageResult) -> None:
    """The paper's figure: a symmetric two-country world with the first model's
    preferences (collected from the background computation when there is one)."""
    from hatrade.plots.elasticity import micro_by_assets_figure

    s = ctx.setup
    spec = s.models[0]
    bg = ctx.background.pop("two_country", None)
    imp2 = bg.result(into=ctx.cache) if bg is not None else two_country_elasticities(ctx)
    fig = micro_by_assets_figure(
        imp2,
        title=f"Trade elasticities by household state (symmetric two countries, "
        f"d = {s.two_country_d})",
    )
    res.figures.append(
        ctx.figure(
            fig,
            "micro-assets-two-country",
            "Trade elasticities by household state",
            f"The paper's figure: a symmetric two-country world (TFP 1, d = {s.two_country_d}) "
            f"with the {spec.name} preferences; household elasticity against assets.",
            "micro_elasticity_two_country.png",
        )
    )
    res.files.append(
        ctx.write_csv(
            imp2.micro["household_elasticity"].to_dataframe().reset_index(),
            "micro_elasticity_two_country.csv",
        )
    )


def stage_micro(ctx: StageContext) -> StageResult:
    """The home country's households (see the module docstring)."""
    res = StageResult("micro", "")
    done, errors = for_each_model(ctx, lambda spec: _model_micro(ctx, spec, res))
    try:
        _two_country_figure(ctx, res)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - reported, the stage goes on
        errors["two-country figure"] = (err, traceback.format_exc())
        log.warning("micro: two-country figure failed: %s", err)
    return stage_status(res, done, errors)
