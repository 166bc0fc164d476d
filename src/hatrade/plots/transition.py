r"""Transition figures: the path after a shock and who gains along it.

* :func:`paths_figure` - wages, the return R and import shares over the periods, one line
  per country (the reported country bold, the others thin and grey, or coloured when there
  are few), the new steady state's value dotted;
* :func:`transition_gains_figure` - the mean gain (equivalent variation at t = 0, percent)
  by expenditure quintile and the population mean, the transition against the
  steady-state comparison, bars side by side;
* :func:`save_transition_figures` - both, for a transition folder.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, without
``pyplot`` (nothing global is touched); :func:`~hatrade.plots.style.save_figure` writes
atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from hatrade.plots.style import new_figure, save_figure
from hatrade.plots.welfare import grouped_bars

__all__ = ["paths_figure", "transition_gains_figure", "save_transition_figures"]

log = logging.getLogger(__name__)

_COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000")
#: (column of paths.csv, axis label) of the panels of :func:`paths_figure`.
_PANELS = (
    ("wage", "wage (mean one)"),
    ("R", "R (return on assets carried in)"),
    ("import_share", "import share"),
)
#: Countries drawn in colour (more: grey lines).
_COLOURED = 5


def paths_figure(paths: pd.DataFrame, focus: str | None = None, title: str | None = None):
    """Wages, R and import shares over the periods (``paths.csv``'s table).

    Parameters
    ----------
    paths : pandas.DataFrame
        Columns ``period``, ``country``, ``wage``, ``R``, ``import_share``.
    focus : str, optional
        The country drawn bold (e.g. the shocked or reported one).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure((6.5, 7.5))
    axes = fig.subplots(len(_PANELS), 1, sharex=True)
    countries = list(dict.fromkeys(paths["country"]))
    few = len(countries) <= _COLOURED
    for ax, (col, label) in zip(axes, _PANELS):
        wide = paths.pivot(index="period", columns="country", values=col)
        for k, c in enumerate(countries):
            bold = c == focus
            if bold:
                style = dict(color="black", lw=2.0, zorder=3)
            elif few:
                style = dict(color=_COLORS[k % len(_COLORS)], lw=1.0)
            else:
                style = dict(color="0.6", lw=0.7)
            ax.plot(wide.index, wide[c], label=c if (bold or few) else None, **style)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("period")
    if few or focus is not None:
        axes[0].legend(frameon=False, fontsize=7, ncol=min(len(countries), 5))
    fig.suptitle(title or "Transition paths", fontsize=10)
    return fig


def transition_gains_figure(summary: dict, title: str | None = None):
    """Mean gains by expenditure quintile and the mean, transition against steady state.

    Parameters
    ----------
    summary : dict
        A country's welfare summary (``summary.json``'s ``welfare[code]``, i.e.
        ``TransitionWelfare.summary``): ``transition`` and ``steady_state``, each with
        ``quintile_gain_percent`` (Q1..Q5) and ``mean_gain_percent``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    groups = ["Q1\n(poorest)", "Q2", "Q3", "Q4", "Q5\n(richest)", "Mean"]
    series = {}
    for key, label in (("transition", "transition (t = 0)"), ("steady_state", "steady state")):
        s = summary[key]
        q = s["quintile_gain_percent"]
        series[label] = [_num(q.get(f"Q{k}")) for k in range(1, 6)] + [_num(s["mean_gain_percent"])]
    fig = new_figure((6.5, 4.2))
    ax = fig.add_subplot()
    grouped_bars(ax, groups, series, "welfare gain, % (equivalent variation)")
    ax.set_xlabel("expenditure quintile (old steady state), population mean")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "Welfare gains: transition against steady state", fontsize=10)
    return fig


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def save_transition_figures(folder, paths: pd.DataFrame, summary: dict) -> list[Path]:
    """Draw and save the figures of a transition folder (``paths.png``, and
    ``gains_by_quintile_<C>.png`` for each country of ``summary['welfare']``).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(folder)
    welfare = summary.get("welfare") or {}
    focus = next(iter(welfare), None)
    name = summary.get("name") or "transition"
    out = []
    fig = paths_figure(paths, focus=focus, title=f"Transition paths: {name}")
    out.append(save_figure(fig, folder / "paths.png"))
    for c, s in welfare.items():
        fig = transition_gains_figure(s, title=f"{c} welfare gains by expenditure quintile: {name}")
        out.append(save_figure(fig, folder / f"gains_by_quintile_{c}.png"))
    return out
