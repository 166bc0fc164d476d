r"""Stages ``unilateral`` and ``global``: welfare of a change of trade costs.

``unilateral`` changes the home country's (the US's) import costs, ``global`` all trade
costs, by ``Setup.trade_cost_change`` (:math:`d' = (1 + \text{change})\,d`, no floor at
one). For each model: the new stationary equilibrium with :math:`\beta` fixed at its
baseline value (wages and :math:`R` adjust), the equivalent variation of every home
household (Proposition 2) and its summaries by expenditure quintile and income group, a
counterfactual folder per model, and figures comparing the models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hatrade.data.published import published
from hatrade.io.equilibrium_store import cached_equilibrium
from hatrade.io.results import counterfactual_summary, save_counterfactual
from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec
from hatrade.replicate.stages.equilibrium import equilibrium_key

__all__ = ["stage_counterfactual", "stage_unilateral", "stage_global", "start_jacobian", "scenario"]


def scenario(setup, kind: str):
    """The :class:`~hatrade.analysis.counterfactual.Scenario` of ``kind`` ('unilateral'
    or 'global') for ``setup``."""
    from hatrade.analysis.counterfactual import Scenario

    if kind == "unilateral":
        return Scenario(
            name=f"unilateral-{setup.home}",
            trade_cost_change=setup.trade_cost_change,
            importer=setup.home,
            allow_d_below_one=True,
        )
    return Scenario(
        name="global",
        trade_cost_change=setup.trade_cost_change,
        all_pairs=True,
        allow_d_below_one=True,
    )


def start_jacobian(eq):
    r"""A starting Jacobian for a counterfactual of ``eq`` (unknowns: wages and R).

    The baseline equilibrium was solved for wages and :math:`\beta` at fixed R; its
    (Broyden-updated) Jacobian has the same wage columns. The last column, the derivative
    in :math:`\beta`, is turned into one in R through the Euler equation, where only
    :math:`\beta R` enters: :math:`\partial/\partial R \approx (\beta/R)\,
    \partial/\partial\beta` (the income effect of R on :math:`R a` is left out; Broyden's
    updates correct it). It saves the counterfactual an exact Jacobian and its
    compilation. None when the baseline has no Jacobian of that shape (e.g. it was solved
    under financial autarky or with tariffs).
    """
    J = getattr(eq, "jacobian", None)
    M = eq.world.M
    if (
        J is None
        or eq.world.financial != "globalization"
        or np.shape(J) != (M, M)
        or eq.world.has_tariffs
    ):
        return None
    J = np.array(J, float)
    J[:, -1] *= float(eq.beta) / float(np.asarray(eq.prices.R).ravel()[0])
    return J if np.all(np.isfinite(J)) else None


def _new_equilibrium(ctx: StageContext, spec: ModelSpec, eq, sc, kind: str):
    """The counterfactual of one model (through the cache) and the new equilibrium's key."""
    from hatrade.analysis.counterfactual import Counterfactual, apply_scenario, run_counterfactual

    s = ctx.setup
    world_new = apply_scenario(eq.world, sc)
    hh = eq.household.replace(beta=float(eq.beta))
    options = {"solve_for": "R", "beta": float(eq.beta), "tol": s.tol, "hh_tol": s.hh_tol}

    def solve():
        ctx.step(f"{spec.name}: new equilibrium (beta fixed; wages and R adjust)")
        # Broyden updates between exact Jacobians, starting from the Jacobian of this
        # model's other counterfactual (same unknowns: wages and R) when there is one,
        # else from the baseline's (see start_jacobian); not from another model's.
        J = ctx.jacobians.get(("R", spec.name))
        if J is None:
            J = start_jacobian(eq)
        return run_counterfactual(
            eq,
            world_new,
            progress=ctx.newton(f"{spec.name} {kind}"),
            tol=s.tol,
            hh_tol=s.hh_tol,
            method="broyden",
            jacobian=J,
        ).new

    new, _ = cached_equilibrium(
        ctx.cache,
        world_new,
        hh,
        solve,
        options=options,
        income=eq.income,
        label=f"{spec.name} {kind} equilibrium",
    )
    if new.jacobian is not None:
        ctx.jacobians[("R", spec.name)] = new.jacobian
    cf = Counterfactual(scenario=sc, baseline=eq, new=new)
    return cf, equilibrium_key(world_new, hh, options, eq.income)


def _welfare(ctx: StageContext, spec: ModelSpec, cf, new_key: str, kind: str) -> dict:
    """The equivalent variation of every home household, through the cache: ``table``
    and ``summary``."""
    from hatrade.welfare.summary import country_welfare

    s = ctx.setup
    n_nodes = s.resolved_ev_nodes()

    def compute():
        ctx.step(f"{spec.name}: equivalent variation of every {s.home} household")
        r = country_welfare(cf, country=s.home, n_nodes=n_nodes)
        return {"table": r.table, "summary": r.summary}

    return ctx.memo(
        "welfare",
        {
            "baseline": ctx.eq_key[spec.name],
            "new": new_key,
            "country": s.home,
            "n_nodes": n_nodes,
            "verify": False,
        },
        compute,
        label=f"{spec.name} {kind} {s.home}",
    )


def _write_model_files(ctx: StageContext, spec: ModelSpec, cf, w: dict, res: StageResult) -> None:
    """The model's counterfactual folder (:func:`hatrade.io.results.save_counterfactual`:
    summary, welfare, changes and trade, as ``hatrade counterfactual`` writes them)."""
    summary = counterfactual_summary(
        cf,
        {ctx.setup.home: w["summary"]},
        name=cf.scenario.name,
        label=spec.title,
        source=f"replicate:{spec.name}",
    )
    names = save_counterfactual(ctx.path(spec.name), cf, w["table"], summary)
    res.files.extend(ctx.rel(spec.name, n) for n in names)


def _undefined_ev_text(spec: ModelSpec, summ: dict) -> str | None:
    """A paragraph on the household states whose equivalent variation is undefined."""
    ev_info = summ.get("ev") or {}
    if not ev_info.get("undefined_states"):
        return None
    return (
        f"{spec.title}: the equivalent variation is undefined for "
        f"{ev_info['undefined_states']} household states (mass "
        f"{ev_info.get('undefined_mass', float('nan')):.2e}): borrowers for whom no "
        "feasible scaling of income above 1 makes them as well off; they are left "
        "out of the means."
    )


def _model_counterfactual(
    ctx: StageContext, spec: ModelSpec, sc, kind: str, res: StageResult
) -> tuple:
    """One model: new equilibrium, welfare, files, numbers.

    Returns
    -------
    (summary, welfare table row, wage and import-share changes by country)
    """
    from hatrade.plots.welfare import heatmap_figure

    s = ctx.setup
    eq = ctx.need_eq(spec)
    cf, new_key = _new_equilibrium(ctx, spec, eq, sc, kind)
    w = _welfare(ctx, spec, cf, new_key, kind)
    summ = w["summary"]
    _write_model_files(ctx, spec, cf, w, res)
    q = summ["quintile_gain_percent"]
    i = eq.world.index(s.home)
    row = {
        "model": spec.title,
        **{k: q[k] for k in sorted(q)},
        "mean": summ["mean_gain_percent"],
        "median": summ["median_gain_percent"],
        "ACR": summ["acr_percent"],
        "share losing": summ["share_losers"],
        "R change %": float(cf.R_change_percent()[i]),
        f"wage change {s.home} %": float(100 * (cf.new.prices.w[i] / eq.prices.w[i] - 1)),
    }
    text = _undefined_ev_text(spec, summ)
    if text:
        res.text.append(text)
    ch = cf.changes()
    changes = pd.DataFrame(
        {
            "country": ch.index,
            "model": spec.name,
            "wage change %": ch["wage_change_percent"].to_numpy(),
            "import share old": ch["import_share_old"].to_numpy(),
            "import share new": ch["import_share_new"].to_numpy(),
        }
    )
    if spec is s.models[0]:
        fig = heatmap_figure(
            w["table"], title=f"{s.home}: welfare gain by assets and income ({spec.title})"
        )
        res.figures.append(
            ctx.figure(
                fig,
                f"{kind}-heatmap-{spec.name}",
                f"Gains by household state, {spec.title}",
                "Equivalent variation (percent) by assets and income state.",
                f"gains_heatmap_{spec.name}.png",
            )
        )
    ctx.numbers.setdefault("welfare", {}).setdefault(kind, {})[spec.name] = {
        "quintile_gain_percent": q,
        "mean_gain_percent": summ["mean_gain_percent"],
        "acr_percent": summ["acr_percent"],
        "share_losers": summ["share_losers"],
        "R_over_w_change_percent": float(cf.R_over_w_change_percent()[i]),
    }
    return summ, row, changes


def _describe(setup, kind: str) -> str:
    """The experiment in words, e.g. 'a 10% cut of USA's import costs'."""
    change = setup.trade_cost_change
    return f"a {abs(change):.0%} {'cut' if change < 0 else 'rise'} " + (
        f"of {setup.home}'s import costs" if kind == "unilateral" else "of all trade costs"
    )


def _comparison(
    ctx: StageContext, kind: str, summaries: dict, rows: list, res: StageResult
) -> None:
    """Figures and the table that compare the models' welfare gains."""
    from hatrade.plots.welfare import income_group_figure, quintile_figure

    s = ctx.setup
    what = _describe(s, kind)
    acr_theta = published("acr_theta").value
    fig = quintile_figure(
        summaries, title=f"{s.home} welfare gains by expenditure quintile: {what}"
    )
    res.figures.insert(
        0,
        ctx.figure(
            fig,
            f"{kind}-quintiles",
            f"{s.home} welfare gains by expenditure quintile",
            "Equivalent variation in percent (Proposition 2), baseline against log model; "
            f"mean over the stationary distribution; ACR benchmark 100 (1/{acr_theta:g}) "
            "log(s_ii/s_ii').",
            "gains_by_quintile.png",
        ),
    )
    fig = income_group_figure(summaries, title=f"{s.home} welfare gains by income group: {what}")
    res.figures.insert(
        1,
        ctx.figure(
            fig,
            f"{kind}-income",
            f"{s.home} welfare gains by income group",
            "Equivalent variation by labor-income group.",
            "gains_by_income.png",
        ),
    )
    df = pd.DataFrame(rows)
    res.tables.append(
        Table(
            f"{kind}-welfare",
            f"{s.home} welfare gains (%), {what}",
            df,
            "Q1..Q5: expenditure quintiles of the baseline distribution "
            "(Q1 poorest). Beta fixed; wages and R adjust.",
            formats={c: ".3f" for c in df.columns if c not in ("model", "share losing")}
            | {"share losing": ".3f"},
        )
    )
    res.files.append(ctx.write_csv(df, "welfare_summary.csv"))


def _changes_by_country(ctx: StageContext, kind: str, by_country: list, res: StageResult) -> None:
    """Wage and import-share changes of every country and model (and, for the global
    experiment, a table of the wage changes)."""
    bc = pd.concat(by_country, ignore_index=True)
    res.files.append(ctx.write_csv(bc, "changes_by_country.csv"))
    if kind == "global":
        wide = bc.pivot(index="country", columns="model", values="wage change %")
        wide.columns = [f"wage change % ({c})" for c in wide.columns]
        wide = wide.reindex(list(ctx.setup.models[0].world.countries)).reset_index()
        res.tables.append(
            Table(
                "global-wages",
                "Wage changes by country (%)",
                wide,
                formats={c: ".3f" for c in wide.columns if c != "country"},
            )
        )


def stage_counterfactual(ctx: StageContext, kind: str) -> StageResult:
    """The ``kind`` ('unilateral' or 'global') experiment (see the module docstring)."""
    s = ctx.setup
    res = StageResult(kind, "")
    sc = scenario(s, kind)
    done, errors = for_each_model(ctx, lambda spec: _model_counterfactual(ctx, spec, sc, kind, res))
    if done:
        summaries = {s.model(name).title: summ for name, (summ, _, _) in done.items()}
        _comparison(ctx, kind, summaries, [row for _, row, _ in done.values()], res)
        _changes_by_country(ctx, kind, [ch for _, _, ch in done.values()], res)
    res.text.append(
        f"Counterfactual: {_describe(s, kind)} (d' = {1 + s.trade_cost_change:g} "
        "d, no new floor), new stationary equilibrium with beta at its baseline "
        "value."
    )
    return stage_status(res, done, errors)


def stage_unilateral(ctx: StageContext) -> StageResult:
    """Stage ``unilateral``: a change of the home country's import costs."""
    return stage_counterfactual(ctx, "unilateral")


def stage_global(ctx: StageContext) -> StageResult:
    """Stage ``global``: a change of all trade costs."""
    return stage_counterfactual(ctx, "global")
