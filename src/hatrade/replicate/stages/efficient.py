r"""Stage ``efficient``: the efficient allocation against the decentralized one.

For each model: the planner's problem (Proposition 4) with the setup's welfare weights
(``matched``: the weights that give each country its decentralized spending), compared
with the decentralized equilibrium pair by pair (trade shares, import shares and,
optionally, the aggregate trade elasticities of both allocations).
"""

from __future__ import annotations

import pandas as pd

from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec

__all__ = ["stage_efficient"]

_CAPTION = (
    "Left: log(s_ij/s_ii) in the decentralized equilibrium against the efficient "
    "allocation (planner with weights that give each country its decentralized "
    "spending). Right: import shares."
)


def _planner(ctx: StageContext, spec: ModelSpec, eq) -> dict:
    """The planner's solution compared with ``eq``, through the cache: ``table`` and
    ``summary``."""
    from hatrade.analysis.efficient import efficient_report, solve_planner

    s = ctx.setup

    def compute():
        ctx.step(f"{spec.name}: planner's problem ({s.planner_weights} weights)")
        planner = solve_planner(eq.world, eq.household, s.planner_weights, eq)
        ctx.step(f"{spec.name}: comparing with the decentralized allocation")
        table, summary = efficient_report(planner, eq, decentralized_theta=s.efficient_elasticities)
        return {"table": table, "summary": summary}

    return ctx.memo(
        "efficient",
        {
            "equilibrium": ctx.eq_key[spec.name],
            "weights": s.planner_weights,
            "elasticities": s.efficient_elasticities,
        },
        compute,
        label=f"{spec.name} planner",
    )


def _summary_row(ctx: StageContext, spec: ModelSpec, comp: dict) -> dict:
    """The model's row of the summary table."""
    home = ctx.setup.home
    row = {
        "model": spec.title,
        "pairs": comp["pairs"],
        "pairs trading more (efficient)": comp["pairs_trading_more_efficient"],
        "mean log(s_eff/s_dec), i≠j": comp["mean_log_ratio_offdiagonal"],
        "corr with log d_ij": comp.get("corr_log_ratio_log_trade_costs"),
    }
    agg = comp.get("aggregate_elasticity") or {}
    for col, label in (
        ("theta_efficient_prop4", f"θ {home} efficient (Prop. 4)"),
        ("theta_decentralized_prop1", f"θ {home} decentralized (Prop. 1)"),
    ):
        if col in agg and home in agg[col]:
            row[label] = agg[col][home]
    return row


def _model_efficient(ctx: StageContext, spec: ModelSpec, res: StageResult) -> tuple:
    """One model: planner, files, figure, numbers; its summary row and import shares."""
    from hatrade.plots.efficient import efficient_trade_figure

    eq = ctx.need_eq(spec)
    b = _planner(ctx, spec, eq)
    table, summ = b["table"], b["summary"]
    res.files.append(ctx.write_csv(table, spec.name, "efficient_trade.csv"))
    res.files.append(
        ctx.write_json(
            {"kind": "efficient", "label": spec.title, **summ}, spec.name, "summary.json"
        )
    )
    fig = efficient_trade_figure(table, title=f"Efficient vs. decentralized trade, {spec.title}")
    res.figures.append(
        ctx.figure(
            fig,
            f"efficient-{spec.name}",
            f"Efficient vs. decentralized trade, {spec.title}",
            _CAPTION,
            f"efficient_trade_{spec.name}.png",
        )
    )
    comp = summ["comparison"]
    imp = comp["import_share"]
    shares = pd.DataFrame(
        {
            "country": list(imp),
            f"efficient ({spec.name})": [v["efficient"] for v in imp.values()],
            f"decentralized ({spec.name})": [v["decentralized"] for v in imp.values()],
        }
    )
    row = _summary_row(ctx, spec, comp)
    ctx.numbers.setdefault("efficient", {})[spec.name] = {
        "pairs_trading_more_efficient": comp["pairs_trading_more_efficient"],
        "mean_log_ratio_offdiagonal": comp["mean_log_ratio_offdiagonal"],
        "import_share": imp,
    }
    return row, shares


def stage_efficient(ctx: StageContext) -> StageResult:
    """Efficient against decentralized trade (see the module docstring)."""
    res = StageResult("efficient", "")
    done, errors = for_each_model(ctx, lambda spec: _model_efficient(ctx, spec, res))
    if done:
        df = pd.DataFrame([row for row, _ in done.values()])
        res.tables.append(
            Table(
                "efficient-summary",
                "Efficient against decentralized trade",
                df,
                formats={
                    c: ".4f"
                    for c in df.columns
                    if c not in ("model", "pairs", "pairs trading more (efficient)")
                },
            )
        )
        shares = None
        for _, sh in done.values():
            shares = sh if shares is None else shares.merge(sh, on="country", how="outer")
        res.tables.append(
            Table(
                "efficient-import-shares",
                "Import shares by country",
                shares,
                formats={c: ".4f" for c in shares.columns if c != "country"},
            )
        )
        res.files.append(ctx.write_csv(shares, "import_shares.csv"))
    return stage_status(res, done, errors)
