r"""Stage ``trade_fit``: model against data log normalized trade (Figure 2).

For each model: :math:`\log(X_{ij}/X_{ii})` of the data against the model's
:math:`\log(s_{ij}/s_{ii})` for every ordered pair :math:`i \neq j`, as a figure, a CSV file
and the correlation and RMSE of the two.
"""

from __future__ import annotations

import pandas as pd

from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec

__all__ = ["stage_trade_fit"]


def _fit_model(ctx: StageContext, spec: ModelSpec, res: StageResult) -> dict:
    """One model's figure and trade table; its row of the fit table."""
    from hatrade.io.results import trade_fit, trade_table_with_data
    from hatrade.plots.trade_fit import trade_fit_figure

    eq = ctx.need_eq(spec)
    table = trade_table_with_data(eq, "ek")
    fit = trade_fit(table)
    fig = trade_fit_figure(table, fit=fit, title=f"Bilateral trade: model vs. data, {spec.title}")
    res.figures.append(
        ctx.figure(
            fig,
            f"trade-fit-{spec.name}",
            f"Model vs. data trade, {spec.title}",
            "Each point is an ordered pair i≠j: data log(X_ij/X_ii) against the model's "
            "log(s_ij/s_ii), with the 45-degree line.",
            f"trade_fit_{spec.name}.png",
        )
    )
    res.files.append(ctx.write_csv(table, f"trade_{spec.name}.csv"))
    fit = fit or {}
    ctx.numbers.setdefault("trade_fit", {})[spec.name] = fit
    return {
        "model": spec.title,
        "corr(model, data)": fit.get("corr"),
        "RMSE": fit.get("rmse"),
        "pairs": fit.get("n_pairs"),
    }


def stage_trade_fit(ctx: StageContext) -> StageResult:
    """Model against data trade (see the module docstring)."""
    res = StageResult("trade_fit", "")
    done, errors = for_each_model(ctx, lambda spec: _fit_model(ctx, spec, res))
    rows = list(done.values())
    if rows:
        res.tables.append(
            Table(
                "trade-fit",
                "Fit of log normalized trade",
                pd.DataFrame(rows),
                formats={"corr(model, data)": ".4f", "RMSE": ".4f"},
            )
        )
    return stage_status(res, done, errors)
