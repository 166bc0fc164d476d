r"""Stage ``table1``: Table 1 of the paper.

The gravity regression of :math:`\log(X_{ij}/X_{ii})` on the data (the moments), the same
regression on each model's trade shares (the model fit) and the trade-cost parameters of
each calibration; with the published numbers beside them in the paper's setup. Also all 46
moments (importer and exporter terms included) in ``moments.csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hatrade.data.published import table1_values
from hatrade.replicate.context import StageContext, for_each_model, stage_status
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import ModelSpec

__all__ = ["stage_table1"]

_CAPTION = (
    "Moment: the gravity regression on the Eaton-Kortum data. Model fit: the same "
    "regression on model-generated trade. Parameter: the trade cost exp(-x/4) of each "
    "calibrated coefficient x (before the importer term and the floor at 1)."
)


def _data_regression(countries: tuple):
    """The gravity regression on the shipped trade data of ``countries``."""
    from hatrade.analysis.gravity import gravity_regression
    from hatrade.data import load_trade_data

    data = load_trade_data()
    data = data[data["importer"].isin(countries) & data["exporter"].isin(countries)]
    data = data[data["importer"] != data["exporter"]].reset_index(drop=True)
    return gravity_regression(data, countries=countries)


def _model_fit(
    ctx: StageContext, spec: ModelSpec, g_data, out: pd.DataFrame, moments: pd.DataFrame
) -> dict:
    """The regression on one model's trade: its columns of ``out`` and ``moments``, and
    its coefficients."""
    from hatrade.analysis.gravity import gravity_regression, model_trade_table, table1

    countries = tuple(ctx.setup.models[0].world.countries)
    eq = ctx.need_eq(spec)
    ctx.step(f"{spec.name}: gravity regression on model trade")
    g_model = gravity_regression(model_trade_table(eq.trade_shares, countries), countries=countries)
    t = table1(g_data, g_model, spec.params)
    out[f"model fit ({spec.name})"] = t["model_fit"]
    if "parameter" in t:
        out[f"parameter ({spec.name})"] = t["parameter"]
    moments[f"model ({spec.name})"] = np.asarray(g_model.moments, float)
    return {k: float(v) for k, v in t["model_fit"].items()}


def stage_table1(ctx: StageContext) -> StageResult:
    """Table 1 (see the module docstring)."""
    from hatrade.analysis.gravity import COEFFICIENT_NAMES, table1

    s = ctx.setup
    res = StageResult("table1", "")
    countries = tuple(s.models[0].world.countries)
    ctx.step("gravity regression on the data")
    g_data = _data_regression(countries)
    out = table1(g_data)[["barrier", "moment"]].copy()
    if s.paper:
        pub = table1_values()
        out.insert(2, "published", [pub[k] for k in out.index])
    moments = pd.DataFrame(
        {
            "moment": [f"S_{c}" for c in countries[:-1]]
            + [f"theta_m_{c}" for c in countries[:-1]]
            + list(COEFFICIENT_NAMES)
        }
    )
    done, errors = for_each_model(ctx, lambda spec: _model_fit(ctx, spec, g_data, out, moments))
    moments.insert(1, "data", np.asarray(g_data.moments, float))
    ctx.numbers["table1_model_fit"] = done
    ctx.numbers["table1_data"] = {k: float(v) for k, v in out["moment"].items()}
    out = out.reset_index(drop=True)
    fmt = {c: ".3f" for c in out.columns if c != "barrier"}
    res.tables.append(Table("table1", "Table 1: estimation results", out, _CAPTION, formats=fmt))
    res.files.append(ctx.write_csv(out, "table1.csv"))
    res.files.append(ctx.write_csv(moments, "moments.csv"))
    return stage_status(res, done, errors)
