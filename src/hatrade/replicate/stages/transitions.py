r"""Stage ``transitions`` (beyond the paper; opt-in): the paper's two experiments with the
transition.

The paper compares steady states. This stage solves, for the reference (baseline) model,
the perfect-foresight transition after each of the two experiments (a cut of the home
country's import costs, unilateral, and of all trade costs, global, by
``Setup.trade_cost_change``, unanticipated at t = 0, over ``Setup.transition_periods``
periods; :func:`hatrade.analysis.transition.run_transition`) and every home household's
equivalent variation at t = 0 of the path it faces, beside the steady-state comparison's
(:func:`hatrade.welfare.transition.transition_welfare`): mean and quintile gains, and the
share of losers. There is no published comparison.

Each experiment's result is cached (kind ``"transition"``: the baseline equilibrium's key,
the scenario, the horizon, the tolerances, the country and the EV nodes); its folder
``transitions/<experiment>/`` is a transition folder
(:func:`hatrade.io.transition_results.save_transition`). The stage is not run by default
(:data:`~hatrade.replicate.stages.OPTIONAL_STAGES`): ``hatrade replicate --transitions``
or ``replicate(stages=[..., "transitions"])``.
"""

from __future__ import annotations

import traceback

import pandas as pd

from hatrade.io.transition_results import save_transition, transition_summary
from hatrade.replicate.context import StageContext, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.stages.counterfactuals import scenario, start_jacobian

__all__ = ["stage_transitions", "EXPERIMENTS"]

#: The experiments (the counterfactual stages' names).
EXPERIMENTS = ("unilateral", "global")


def _compute(ctx: StageContext, spec, eq, sc, kind: str) -> dict:
    """One experiment's transition and the home households' welfare (a cache bundle)."""
    from hatrade.analysis.transition import run_transition
    from hatrade.welfare.transition import transition_welfare

    s = ctx.setup
    T = s.transition_periods
    ctx.step(f"{spec.name} {kind}: new steady state, Jacobians and the path (T = {T})")
    J = ctx.jacobians.get(("R", spec.name))
    tr = run_transition(
        eq,
        sc,
        periods=T,
        tol=s.tol,
        hh_tol=s.hh_tol,
        method="broyden",
        jacobian=J if J is not None else start_jacobian(eq),
        progress=ctx.newton(f"{spec.name} {kind} new steady state"),
    )
    ctx.step(f"{spec.name} {kind}: equivalent variation of every {s.home} household at t = 0")
    w = transition_welfare(tr, s.home, n_nodes=s.resolved_ev_nodes())
    summary = transition_summary(
        tr,
        {s.home: w.summary},
        name=f"transition-{sc.name}",
        label=spec.title,
        source=f"replicate:{spec.name}",
    )
    return {"paths": tr.paths, "welfare_table": w.table, "summary": summary}


def _experiment(ctx: StageContext, spec, kind: str, res: StageResult) -> dict:
    """One experiment through the cache; its folder written; the report's row."""
    s = ctx.setup
    eq = ctx.need_eq(spec)
    sc = scenario(s, kind)
    n_nodes = s.resolved_ev_nodes()
    inputs = {
        "baseline": ctx.eq_key[spec.name],
        "scenario": sc.to_dict(),
        "periods": s.transition_periods,
        "tol": s.tol,
        "hh_tol": s.hh_tol,
        "country": s.home,
        "n_nodes": n_nodes,
    }
    r = ctx.memo(
        "transition",
        inputs,
        lambda: _compute(ctx, spec, eq, sc, kind),
        label=f"{spec.name} {kind} transition",
    )
    names = save_transition(ctx.path(kind), r["paths"], r["welfare_table"], r["summary"])
    res.files.extend(ctx.rel(kind, n) for n in names)
    summ = r["summary"]
    w = summ["welfare"][s.home]
    conv = summ["convergence"]
    numbers = {
        "transition": w["transition"],
        "steady_state": w["steady_state"],
        "share_losers_transition": w["share_losers_transition"],
        "share_losers_steady_state": w["share_losers_steady_state"],
        "periods": summ["periods"],
        "iterations": conv["iterations"],
        "residual": conv["residual"],
        "end_gap": conv["end_gap"],
    }
    ctx.numbers.setdefault("transitions", {})[kind] = numbers
    rows = []
    for key, what in (("transition", "transition (t = 0)"), ("steady_state", "steady state")):
        g = w[key]
        rows.append(
            {
                "experiment": kind,
                "welfare": what,
                **{q: g["quintile_gain_percent"][q] for q in ("Q1", "Q2", "Q3", "Q4", "Q5")},
                "mean": g["mean_gain_percent"],
                "share losing": w[f"share_losers_{key}"],
            }
        )
    return {"rows": rows, "summary": summ, "figure_input": (r["paths"], w)}


def _figures(ctx: StageContext, done: dict, res: StageResult) -> None:
    from hatrade.plots.transition import paths_figure, transition_gains_figure

    s = ctx.setup
    for kind, d in done.items():
        paths, w = d["figure_input"]
        fig = transition_gains_figure(
            w, title=f"{s.home} gains at t = 0, transition against steady state ({kind})"
        )
        res.figures.append(
            ctx.figure(
                fig,
                f"transitions-{kind}-gains",
                f"{s.home} welfare gains, transition against steady state ({kind})",
                "Equivalent variation at t = 0 of the path each household faces, against the "
                "steady-state comparison; mean over the old stationary distribution.",
                kind,
                "gains_by_quintile.png",
            )
        )
        fig = paths_figure(paths, focus=s.home, title=f"Transition paths ({kind})")
        res.figures.append(
            ctx.figure(
                fig,
                f"transitions-{kind}-paths",
                f"Wages, R and import shares along the transition ({kind})",
                f"{s.home} bold; period 0 is the reform (unanticipated).",
                kind,
                "paths.png",
            )
        )


def stage_transitions(ctx: StageContext) -> StageResult:
    """Stage ``transitions`` (see the module docstring)."""
    s = ctx.setup
    res = StageResult("transitions", "")
    spec = s.models[0]
    done, errors = {}, {}
    for kind in EXPERIMENTS:
        try:
            done[kind] = _experiment(ctx, spec, kind, res)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported in the report
            errors[kind] = (err, traceback.format_exc())
    if done:
        df = pd.DataFrame([row for d in done.values() for row in d["rows"]])
        res.tables.append(
            Table(
                "transitions-welfare",
                f"{s.home} welfare gains (%) at t = 0: transition against steady state "
                f"({spec.title}; beyond the paper)",
                df,
                "Beyond the paper (no published comparison). Transition: the equivalent "
                "variation at t = 0 of the perfect-foresight path after the change "
                f"(unanticipated, T = {s.transition_periods}); steady state: the paper's "
                "comparison of stationary equilibria. Q1..Q5: expenditure quintiles of the "
                "old stationary distribution.",
                formats={c: ".3f" for c in df.columns if c not in ("experiment", "welfare")},
            )
        )
        res.files.append(ctx.write_csv(df, "welfare_summary.csv"))
        _figures(ctx, done, res)
    res.text.append(
        "Beyond the paper: the transition after each experiment for the "
        f"{spec.title.lower()}, welfare at t = 0 beside the steady-state comparison."
    )
    return stage_status(res, done, errors)
