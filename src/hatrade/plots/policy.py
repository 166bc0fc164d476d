"""Figures of a policy optimization: every criterion against the tariff, and the gains by
expenditure quintile at the optimal policy (``hatrade policy optimal``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hatrade.plots.style import new_figure, save_figure

__all__ = ["criteria_figure", "quintile_gains_figure", "save_policy_figures"]


def criteria_figure(history: list, optimum: float | None = None, title: str | None = None):
    """Each criterion (percent against the baseline) at the evaluated tariffs.

    ``history``: evaluations with ``theta`` (the tariff first) and ``criteria``
    (``{"ce": {criterion: percent}, "real_income": percent}``).
    """
    fig = new_figure((7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    pts = sorted({float(e["theta"][0]): e["criteria"] for e in history if "criteria" in e}.items())
    if pts:
        t = np.array([p[0] for p in pts])
        for name in pts[0][1]["ce"]:
            ax.plot(t, [p[1]["ce"][name] for p in pts], marker="o", ms=3, lw=1, label=name)
        ax.plot(t, [p[1]["real_income"] for p in pts], "k--", lw=1, label="real_income")
    if optimum is not None:
        ax.axvline(optimum, color="0.5", lw=0.8, ls=":")
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xlabel("tariff (evaluated points)")
    ax.set_ylabel("gain against the baseline, % (consumption equivalent)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.set_title(title or "Criteria against the tariff", fontsize=10)
    return fig


def quintile_gains_figure(gains: dict, title: str | None = None):
    """Bars of the mean gain by expenditure quintile: ``gains`` = {label: {Q1: %, ...}}."""
    fig = new_figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    labels = list(gains)
    qs = list(next(iter(gains.values()))) if gains else []
    x = np.arange(len(qs))
    width = 0.8 / max(1, len(labels))
    for k, lab in enumerate(labels):
        ax.bar(x + k * width, [gains[lab][q] for q in qs], width, label=lab)
    ax.set_xticks(x + width * (len(labels) - 1) / 2, qs)
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_ylabel("mean gain, %")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Gains by expenditure quintile at the optimal policy", fontsize=10)
    return fig


def save_policy_figures(folder, history, optimum, gains, title: str = "") -> list[Path]:
    """Write ``criteria.png`` and ``quintile_gains.png`` into ``folder``."""
    folder = Path(folder)
    return [
        save_figure(criteria_figure(history, optimum, title), folder / "criteria.png"),
        save_figure(quintile_gains_figure(gains, title), folder / "quintile_gains.png"),
    ]
