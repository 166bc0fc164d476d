r"""Welfare figures: who gains from a counterfactual.

* :func:`quintile_figure` - mean gain (equivalent variation, percent) by expenditure
  quintile and the population mean, one bar per model (e.g. the baseline against the log
  model, side by side: the paper's welfare figures), with the ACR benchmark marked;
* :func:`income_group_figure` - the same by labor-income group;
* :func:`heatmap_figure` - the gain over (assets, income state) for one country;
* :func:`assets_figure` - the gain against assets, one line per income state.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, without
``pyplot`` (nothing global is touched); :func:`save_figure` writes atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.plots.style import new_figure, save_figure

__all__ = [
    "quintile_figure",
    "income_group_figure",
    "heatmap_figure",
    "assets_figure",
    "save_figure",
    "save_welfare_figures",
    "grouped_bars",
]

log = logging.getLogger(__name__)

_COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000")


def _new_figure(figsize=(6.5, 4.2)):
    return new_figure(figsize)


def grouped_bars(ax, groups, series: dict, ylabel: str):
    """Bars by group, one colour per series, each bar labelled with its value."""
    n = len(series)
    width = 0.8 / max(n, 1)
    x = np.arange(len(groups))
    for k, (label, vals) in enumerate(series.items()):
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax.bar(pos, vals, width=width * 0.95, color=_COLORS[k % len(_COLORS)], label=label)
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(
                    f"{v:.2f}",
                    (b.get_x() + b.get_width() / 2, v),
                    ha="center",
                    va="bottom" if v >= 0 else "top",
                    fontsize=7,
                    xytext=(0, 2 if v >= 0 else -2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, groups)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _gain_bars_figure(groups, series: dict, xlabel: str, title: str):
    """Bars of welfare gains (percent, EV) by group, one series per model; a legend if several."""
    fig = _new_figure()
    ax = fig.add_subplot()
    grouped_bars(ax, groups, series, "welfare gain, % (equivalent variation)")
    ax.set_xlabel(xlabel)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def quintile_figure(summaries: dict, title: str | None = None):
    r"""Gain by expenditure quintile and the mean, one bar series per model.

    Parameters
    ----------
    summaries : dict label -> country summary
        Each value is a country entry of ``summary.json`` (``by_country[code]``) with
        ``quintile_gain_percent``, ``mean_gain_percent`` and ``acr_percent``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    groups = ["Q1\n(poorest)", "Q2", "Q3", "Q4", "Q5\n(richest)", "Mean", "ACR"]
    series = {}
    for label, s in summaries.items():
        q = s["quintile_gain_percent"]
        series[label] = [q[f"Q{k}"] for k in range(1, 6)] + [
            s["mean_gain_percent"],
            s["acr_percent"],
        ]
    return _gain_bars_figure(
        groups,
        series,
        "expenditure quintile (baseline), population mean, ACR benchmark",
        title or "Welfare gains by expenditure quintile",
    )


def income_group_figure(summaries: dict, title: str | None = None):
    """Gain by labor-income group (bottom 20%, below median, 45-55th, above median, top 20%)."""
    keys = ["bottom_20", "below_median", "median_45_55", "above_median", "top_20"]
    groups = ["bottom\n20%", "below\nmedian", "45-55th\npct", "above\nmedian", "top\n20%", "Mean"]
    series = {
        label: [s["income_group_gain_percent"][k] for k in keys] + [s["mean_gain_percent"]]
        for label, s in summaries.items()
    }
    return _gain_bars_figure(
        groups,
        series,
        "labor income w z (baseline distribution)",
        title or "Welfare gains by income group",
    )


def heatmap_figure(table: pd.DataFrame, value: str = "gain_percent", title: str | None = None):
    """Heat map of ``value`` over assets (x) and income state (y) for one country's rows of
    ``welfare.csv`` (a diverging map centred at zero when some states lose)."""
    t = table.sort_values(["a_index", "z_index"])
    Na, Nz = t["a_index"].max(), t["z_index"].max()
    V = t[value].to_numpy(float).reshape(Na, Nz)
    a = t["assets"].to_numpy(float).reshape(Na, Nz)[:, 0]
    fig = _new_figure((7.0, 4.2))
    ax = fig.add_subplot()
    lo, hi = float(np.nanmin(V)), float(np.nanmax(V))
    if lo < 0 < hi:  # winners and losers: a diverging map centred at zero
        from matplotlib.colors import TwoSlopeNorm

        mesh = ax.pcolormesh(
            a,
            np.arange(1, Nz + 1),
            V.T,
            shading="nearest",
            cmap="RdBu",
            norm=TwoSlopeNorm(0.0, lo, hi),
        )
    else:
        mesh = ax.pcolormesh(
            a, np.arange(1, Nz + 1), V.T, shading="nearest", cmap="viridis", vmin=lo, vmax=hi
        )
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label(value.replace("_", " ").replace("percent", "(%)"))
    ax.set_yticks(np.arange(1, Nz + 1))
    ax.set_xlabel("assets a")
    ax.set_ylabel("income state z (index, low to high)")
    country = t["country"].iloc[0] if "country" in t else ""
    note = " (blank: EV undefined)" if np.isnan(V).any() else ""
    ax.set_title(title or f"{country}: welfare gain by assets and income state{note}", fontsize=10)
    return fig


def assets_figure(table: pd.DataFrame, value: str = "gain_percent", title: str | None = None):
    """``value`` against assets, one line per income state (one country's rows)."""
    t = table.sort_values(["a_index", "z_index"])
    Na, Nz = t["a_index"].max(), t["z_index"].max()
    V = t[value].to_numpy(float).reshape(Na, Nz)
    a = t["assets"].to_numpy(float).reshape(Na, Nz)[:, 0]
    z = t["z"].to_numpy(float).reshape(Na, Nz)[0]
    fig = _new_figure()
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for k in range(Nz):
        ax.plot(a, V[:, k], color=cmap(k / max(Nz - 1, 1)), lw=1.2, label=f"z = {z[k]:.2f}")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xlabel("assets a")
    ax.set_ylabel(value.replace("_", " ").replace("percent", "(%)"))
    ax.legend(frameon=False, fontsize=6, ncol=2)
    country = t["country"].iloc[0] if "country" in t else ""
    ax.set_title(title or f"{country}: welfare gain by assets", fontsize=10)
    return fig


def save_welfare_figures(
    out_dir,
    summary: dict,
    table: pd.DataFrame,
    compare: dict | None = None,
    label: str = "HA model",
) -> list[Path]:
    """Write the welfare figures of a counterfactual folder; returns the paths.

    ``summary`` is the content of ``summary.json``; ``compare`` an optional second summary
    (e.g. the log model's) drawn side by side in the quintile and income figures.
    """
    out = Path(out_dir)
    paths = []
    for code, s in (summary.get("by_country") or {}).items():
        series = {label: s}
        if compare is not None and code in (compare.get("by_country") or {}):
            series[compare.get("label", "comparison")] = compare["by_country"][code]
        name = summary.get("scenario", {}).get("name", "")
        fig = quintile_figure(
            series, title=f"{code}: welfare gains by expenditure quintile ({name})"
        )
        paths.append(save_figure(fig, out / f"gains_by_quintile_{code}.png"))
        fig = income_group_figure(series, title=f"{code}: welfare gains by income group ({name})")
        paths.append(save_figure(fig, out / f"gains_by_income_{code}.png"))
        rows = table[table["country"] == code]
        if len(rows):
            paths.append(save_figure(heatmap_figure(rows), out / f"gains_heatmap_{code}.png"))
            paths.append(save_figure(assets_figure(rows), out / f"gains_by_assets_{code}.png"))
    return paths
