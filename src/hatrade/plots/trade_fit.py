r"""Figures.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, without
``pyplot``: nothing global (the backend, rcParams, the list of open figures) is touched, so
the functions are safe to call from scripts, notebooks and tests.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.plots.style import new_figure, save_figure

__all__ = ["trade_fit_figure", "save_trade_fit"]

log = logging.getLogger(__name__)


def trade_fit_figure(
    table: pd.DataFrame, fit: dict | None = None, title: str | None = None, label_pairs: int = 0
):
    r"""Model against data log normalized trade (the paper's Figure 2).

    Each point is an ordered pair :math:`i \neq j` with data: horizontal
    :math:`\log X_{ij}/X_{ii}` (data), vertical :math:`\log s_{ij}/s_{ii}` (model), with the
    45-degree line. Without data, the model's log normalized trade is shown by pair.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``importer``, ``exporter``, ``log_normalized_model``,
        ``log_normalized_data`` (the content of ``trade.csv``).
    fit : dict, optional
        ``corr``, ``rmse``, ``n_pairs`` (see :func:`hatrade.io.results.trade_fit`), shown in
        the corner.
    title : str, optional
    label_pairs : int
        Annotate this many pairs with the largest absolute model-data gap.

    Returns
    -------
    matplotlib.figure.Figure
    """
    off = table[table["importer"] != table["exporter"]]
    have = off["log_normalized_data"].notna()
    fig = new_figure((6.0, 5.5))
    ax = fig.add_subplot()
    if have.any():
        d = off.loc[have, "log_normalized_data"].to_numpy(float)
        m = off.loc[have, "log_normalized_model"].to_numpy(float)
        lo = float(min(d.min(), m.min()))
        hi = float(max(d.max(), m.max()))
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        lims = (lo - pad, hi + pad)
        ax.plot(lims, lims, color="0.4", lw=1.0, ls="--", label="45-degree line", zorder=1)
        ax.scatter(
            d,
            m,
            s=14,
            alpha=0.75,
            color="tab:blue",
            edgecolor="none",
            label=f"country pairs (n = {d.size})",
            zorder=2,
        )
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_aspect("equal")
        ax.set_xlabel(r"data: $\log(X_{ij}/X_{ii})$")
        ax.set_ylabel(r"model: $\log(s_{ij}/s_{ii})$")
        if label_pairs > 0:
            gap = np.abs(m - d)
            sub = off.loc[have]
            for k in np.argsort(gap)[::-1][:label_pairs]:
                r = sub.iloc[k]
                ax.annotate(
                    f"{r['importer']}-{r['exporter']}",
                    (d[k], m[k]),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        if fit:
            txt = []
            if fit.get("corr") is not None:
                txt.append(f"corr = {fit['corr']:.3f}")
            if fit.get("rmse") is not None:
                txt.append(f"RMSE = {fit['rmse']:.3f}")
            if txt:
                ax.text(
                    0.03,
                    0.97,
                    "\n".join(txt),
                    transform=ax.transAxes,
                    va="top",
                    ha="left",
                    fontsize=9,
                    bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.7"),
                )
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    else:
        labels = [f"{i}-{j}" for i, j in zip(off["importer"], off["exporter"])]
        y = off["log_normalized_model"].to_numpy(float)
        x = np.arange(len(y))
        ax.axhline(0.0, color="0.4", lw=1.0, ls="--")
        ax.scatter(x, y, s=18, color="tab:blue", zorder=2)
        if len(labels) <= 30:
            ax.set_xticks(x, labels, rotation=90, fontsize=7)
        ax.set_xlabel("importer-exporter pair")
        ax.set_ylabel(r"model: $\log(s_{ij}/s_{ii})$")
        ax.margins(x=0.15, y=0.1)
    ax.grid(True, lw=0.3, alpha=0.5)
    title = title or "Bilateral trade: model vs. data"
    if not have.any():
        title += "\n(no trade data for these countries: model only)"
    ax.set_title(title)
    return fig


def save_trade_fit(
    table: pd.DataFrame, path, fit: dict | None = None, title: str | None = None
) -> Path:
    """Draw :func:`trade_fit_figure` and save it as a PNG at ``path``."""
    return save_figure(trade_fit_figure(table, fit=fit, title=title), path)
