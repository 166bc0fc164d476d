r"""Figures for trade elasticities and the household cross-section.

- :func:`partner_elasticities_figure`: :math:`\theta_{ij}` by partner against the price
  :math:`p_{ij}` (the paper's "US Trade Elasticities");
- :func:`micro_by_assets_figure`: household trade elasticity against assets for several
  income states (the paper's "Trade Elasticities by HH-Level State", drawn for a symmetric
  two-country world, see :func:`symmetric_two_country`);

  .. code-block:: python

      world = symmetric_two_country(1.5)
      eq = hatrade.solve_equilibrium(world, hatrade.published_household("baseline"),
                                     solve_for="beta", R=1.01)
      fig = micro_by_assets_figure(trade_elasticities(eq, "HOME"), max_assets=4)
      save_figure(fig, "hh_state_elasticities.png")

- :func:`micro_table_figure`: the micro table (import share, elasticity, MPC by group) as
  bars.

Figures are made and saved as everywhere in :mod:`hatrade.plots` (:mod:`hatrade.plots.style`:
the Agg canvas, no ``pyplot``; :func:`save_figure` writes PNG files atomically), and
:func:`save_figure` is re-exported here.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from hatrade.core.params import ParameterError, World
from hatrade.plots.style import new_figure, save_figure

__all__ = [
    "partner_elasticities_figure",
    "micro_by_assets_figure",
    "micro_table_figure",
    "save_figure",
    "symmetric_two_country",
]

log = logging.getLogger(__name__)


def partner_elasticities_figure(result, *, longrun=None, title: str | None = None):
    r"""Elasticity :math:`\theta_{ij}` of each partner against its price :math:`p_{ij}`.

    Parameters
    ----------
    result : hatrade.analysis.elasticity.ElasticityResult
    longrun : hatrade.analysis.elasticity.LongRunResult, optional
        Adds the long-run elasticities (distribution re-solved) as open markers.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = result.table
    fig = new_figure()
    ax = fig.add_subplot()
    size = 20 + 400 * np.sqrt(t["weight"].to_numpy() / t["weight"].max())
    ax.scatter(
        t["price"],
        t["theta"],
        s=size,
        alpha=0.7,
        color="tab:blue",
        edgecolor="k",
        linewidth=0.4,
        label=r"impact $\theta_{ij}$ (w, R, $\lambda$ fixed)",
        zorder=3,
    )
    for _, r in t.iterrows():
        ax.annotate(
            r["partner"],
            (r["price"], r["theta"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    if longrun is not None:
        lt = longrun.table.set_index("partner").loc[t["partner"]]
        ax.scatter(
            t["price"],
            lt["theta_longrun"],
            s=18,
            facecolor="none",
            edgecolor="tab:red",
            label=r"long run ($\lambda$ re-solved; w, R fixed)",
            zorder=2,
        )
    ax.axhline(
        result.theta, color="0.3", ls="--", lw=1.0, label=f"trade-weighted: {result.theta:.3f}"
    )
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.set_xlabel(r"price of the partner's variety $p_{ij}$ (log scale)")
    ax.set_ylabel(r"trade elasticity $\theta_{ij}$")
    ax.set_title(title or f"{result.country} trade elasticities by partner")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    return fig


def micro_by_assets_figure(
    result, *, z_indices=None, max_assets: float | None = None, title: str | None = None
):
    r"""Household trade elasticity against assets, one line per income state.

    Parameters
    ----------
    result : hatrade.analysis.elasticity.ElasticityResult
        Its ``micro`` dataset supplies ``household_elasticity`` (a, z), ``assets``, ``z``.
    z_indices : list of int, optional
        1-based income states to draw (default: five spread over the range).
    max_assets : float, optional
        Right end of the asset axis (default: the grid's end).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ds = result.micro
    el = ds["household_elasticity"].values
    a = ds["assets"].values
    z = ds["z"].values
    Nz = z.size
    if z_indices is None:
        order = np.argsort(z)
        pick = np.unique(np.linspace(0, Nz - 1, min(5, Nz)).round().astype(int))
        z_indices = [int(order[k]) + 1 for k in pick]
    for k in z_indices:
        if not (1 <= int(k) <= Nz):
            raise ParameterError(f"z index {k} is not allowed: use 1..{Nz}.")
    fig = new_figure()
    ax = fig.add_subplot()
    keep = a <= (max_assets if max_assets is not None else a[-1])
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for n, k in enumerate(z_indices):
        ax.plot(
            a[keep],
            el[keep, k - 1],
            color=cmap(n / max(1, len(z_indices) - 1)),
            lw=1.6,
            label=f"z = {z[k - 1]:.2f}",
        )
    ax.set_xlabel("assets a")
    ax.set_ylabel("household trade elasticity")
    ax.set_title(title or f"Trade elasticities by household state: {result.country}")
    ax.legend(fontsize=7, title="income state", title_fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def micro_table_figure(table: pd.DataFrame, *, title: str | None = None):
    """The micro table as bars: import share, trade elasticity and MPC by group.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`hatrade.analysis.cross_section.micro_table` output (columns grouping, group,
        import_share, elasticity, mpc).
    """
    missing = [
        c
        for c in ("grouping", "group", "import_share", "elasticity", "mpc")
        if c not in table.columns
    ]
    if missing:
        raise ParameterError(f"micro table lacks column(s) {missing}.")
    groupings = list(dict.fromkeys(table["grouping"]))
    cols = [
        ("import_share", "import share"),
        ("elasticity", "trade elasticity"),
        ("mpc", "MPC (spending)"),
    ]
    fig = new_figure(figsize=(10.0, 3.2 * len(groupings)))
    axes = fig.subplots(len(groupings), 3, squeeze=False)
    for r, g in enumerate(groupings):
        sub = table[table["grouping"] == g]
        x = np.arange(len(sub))
        for c, (col, label) in enumerate(cols):
            ax = axes[r, c]
            ax.bar(x, sub[col].to_numpy(float), color=f"C{c}", alpha=0.8)
            ax.set_xticks(
                x, [s.replace("_", " ") for s in sub["group"]], rotation=30, fontsize=7, ha="right"
            )
            ax.set_title(f"{label} by {g}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def symmetric_two_country(
    d: float = 1.5,
    *,
    labor: float = 1.0,
    countries=("HOME", "FOREIGN"),
    financial: str = "globalization",
) -> World:
    """A symmetric two-country world (equal TFP 1 and labor, iceberg cost ``d`` both ways),
    for the "Trade Elasticities by HH-Level State" figure."""
    if not (np.isfinite(d) and d >= 1.0):
        raise ParameterError(f"d = {d!r} is not allowed: trade costs must be >= 1.")
    return World(
        countries=tuple(countries),
        tfp=[1.0, 1.0],
        labor=[labor, labor],
        d=[[1.0, d], [d, 1.0]],
        financial=financial,
    )
