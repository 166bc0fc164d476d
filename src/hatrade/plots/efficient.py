r"""Figure comparing trade in the efficient allocation with the decentralized equilibrium.

Drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, without ``pyplot``
(nothing global is touched).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.plots.style import new_figure, save_figure

__all__ = ["efficient_trade_figure", "save_efficient_trade"]

log = logging.getLogger(__name__)

_REQUIRED = ("importer", "exporter", "share_efficient", "share_decentralized")


def _log_normalized(table: pd.DataFrame, col: str) -> pd.Series:
    """log(s_ij / s_ii) for every row of a long table with the diagonal included."""
    own = table.loc[table["importer"] == table["exporter"]].set_index("importer")[col]
    return np.log(table[col].to_numpy(float) / table["importer"].map(own).to_numpy(float))


def efficient_trade_figure(table: pd.DataFrame, title: str | None = None, label_pairs: int = 5):
    r"""Efficient against decentralized trade.

    Left: each ordered pair :math:`i \ne j`, :math:`\log(s_{ij}/s_{ii})` in the
    decentralized equilibrium (horizontal) and in the efficient allocation (vertical), with
    the 45-degree line (points above it: the planner buys more from j relative to home). Right: import shares
    :math:`1 - s_{ii}` by country in the two allocations.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``importer``, ``exporter``, ``share_efficient``, ``share_decentralized``, one
        row per ordered pair, diagonal included (``efficient_trade.csv``).
    title : str, optional
    label_pairs : int
        Annotate this many pairs with the largest absolute change.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Missing columns, or no diagonal rows (the own shares are needed).
    """
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; required: {list(_REQUIRED)}.")
    diag = table["importer"] == table["exporter"]
    countries = list(dict.fromkeys(table["importer"]))
    if set(table.loc[diag, "importer"]) != set(countries):
        raise ValueError(
            "table must include the diagonal rows (importer == exporter) of every "
            "country: own shares s_ii normalize trade."
        )
    ye = _log_normalized(table, "share_efficient")
    yd = _log_normalized(table, "share_decentralized")
    off = ~diag.to_numpy()
    x, y = yd[off], ye[off]

    fig = new_figure((11.0, 5.0))
    ax, bx = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, color="0.4", lw=1.0, ls="--", label="45-degree line", zorder=1)
    more = y > x
    ax.scatter(
        x[more],
        y[more],
        s=14,
        alpha=0.8,
        color="tab:blue",
        edgecolor="none",
        label=f"higher in the efficient allocation ({int(more.sum())})",
        zorder=2,
    )
    ax.scatter(
        x[~more],
        y[~more],
        s=14,
        alpha=0.8,
        color="tab:orange",
        edgecolor="none",
        label=f"lower in the efficient allocation ({int((~more).sum())})",
        zorder=2,
    )
    if label_pairs > 0:
        sub = table.loc[off].reset_index(drop=True)
        for k in np.argsort(np.abs(y - x))[::-1][:label_pairs]:
            ax.annotate(
                f"{sub.loc[k, 'importer']}-{sub.loc[k, 'exporter']}",
                (x[k], y[k]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal")
    ax.set_xlabel(r"decentralized: $\log(s_{ij}/s_{ii})$")
    ax.set_ylabel(r"efficient: $\log(s_{ij}/s_{ii})$")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.set_title("Bilateral trade, normalized by home purchases", fontsize=10)

    own = table.loc[diag].set_index("importer").reindex(countries)
    ie = 1.0 - own["share_efficient"].to_numpy(float)
    idc = 1.0 - own["share_decentralized"].to_numpy(float)
    pos = np.arange(len(countries))
    wdt = 0.4
    bx.bar(pos - wdt / 2, idc, wdt, color="tab:orange", label="decentralized")
    bx.bar(pos + wdt / 2, ie, wdt, color="tab:blue", label="efficient")
    bx.set_xticks(pos, countries, rotation=90 if len(countries) > 8 else 0, fontsize=7)
    bx.set_ylabel(r"import share $1 - s_{ii}$")
    bx.set_ylim(0, 1)
    bx.legend(fontsize=8, frameon=False)
    bx.grid(True, axis="y", lw=0.3, alpha=0.5)
    bx.set_title("Import shares by country", fontsize=10)
    fig.suptitle(title or "Efficient vs. decentralized trade")
    return fig


def save_efficient_trade(table: pd.DataFrame, path, title: str | None = None) -> Path:
    """Draw :func:`efficient_trade_figure` and save it as a PNG at ``path``."""
    return save_figure(efficient_trade_figure(table, title=title), path)
