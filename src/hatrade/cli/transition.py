"""``hatrade transition``: the perfect-foresight path after a shock, and who gains along it.

The shock is the counterfactual's scenario options (a permanent change from period
``--news-date`` on, announced at t = 0; ``--rebate`` and ``--labor-tax`` hold from period 0
on) or a per-period table (``--path FILE.csv``, the
columns of :data:`hatrade.analysis.transition.PATH_COLUMNS`). The economy starts in the
baseline stationary equilibrium and ends in the new one by period ``--periods``
(:func:`hatrade.analysis.transition.run_transition`); the welfare of one country's
households at t = 0 is computed beside the steady-state comparison
(:func:`hatrade.welfare.transition.transition_welfare`).

The folder (``summary.json``, ``paths.csv``, ``welfare.csv``, ``paths.png``,
``gains_by_quintile_<C>.png``) is written by
:func:`hatrade.io.transition_results.save_transition`, whole or not at all, under the
output-folder policy of :mod:`hatrade.io.folders` (kind ``"transition"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from hatrade.core.errors import EquilibriumError, ParameterError

from ._common import err_console, fail, handle_errors, out_option, print_table, progress
from .scenario_options import (
    ScenarioOptions,
    allow_d_below_one_option,
    base_world,
    baseline_calibration_option,
    baseline_config_option,
    baseline_equilibrium_of,
    check_n_nodes,
    exporter_option,
    financial_option,
    forbid_d_below_one_option,
    global_option,
    importer_option,
    labor_option,
    labor_tax_option,
    n_nodes_option,
    name_option,
    pair_option,
    rebate_option,
    run_folder,
    run_label,
    symmetric_option,
    tariff_change_option,
    tfp_option,
    trade_cost_change_option,
)
from .solve import CalibrationName

__all__ = ["register", "transition_command"]

log = logging.getLogger(__name__)

_KIND = "transition"


def register(app: typer.Typer) -> None:
    """Add ``transition`` to ``app``."""
    app.command("transition")(transition_command)


def _path_option():
    return typer.Option(
        None,
        "--path",
        dir_okay=False,
        help="A per-period shock table (CSV: period, importer, exporter, trade_cost_change, "
        "tariff_change, country, labor_change, tfp_change) instead of the scenario options.",
    )


@handle_errors
def transition_command(
    importer: Optional[str] = importer_option(),
    exporter: Optional[str] = exporter_option(),
    pair: Optional[List[str]] = pair_option(),
    symmetric: bool = symmetric_option(),
    all_pairs: bool = global_option(),
    trade_cost_change: float = trade_cost_change_option(),
    tariff_change: float = tariff_change_option(),
    tfp: Optional[List[str]] = tfp_option(),
    labor: Optional[List[str]] = labor_option(),
    financial: Optional[str] = financial_option(),
    rebate: Optional[str] = rebate_option(),
    labor_tax: Optional[List[str]] = labor_tax_option(),
    path: Optional[Path] = _path_option(),
    periods: int = typer.Option(
        300, "--periods", "-T", help="Horizon T: the new steady state holds from T on."
    ),
    news_date: int = typer.Option(
        0, "--news-date", help="The scenario's change holds from this period on, announced at 0."
    ),
    linear: bool = typer.Option(
        False, "--linear", help="The first-order (impulse-response) path instead."
    ),
    calibration: Optional[CalibrationName] = baseline_calibration_option(),
    config: Optional[Path] = baseline_config_option(),
    country: Optional[str] = typer.Option(
        None, "--country", help="Whose welfare (default: the importer, else USA or the first)."
    ),
    out: Optional[Path] = out_option(
        "Output folder (default results/transition-<calibration or config>-<name>)."
    ),
    n_nodes: int = n_nodes_option(),
    forbid_d_below_one: bool = forbid_d_below_one_option(),
    allow_d_below_one: bool = allow_d_below_one_option(),
    name: Optional[str] = name_option(),
) -> None:
    """Solve the transition after a shock (perfect foresight) and who gains along it."""
    from hatrade.io.folders import prepare_output

    # ---- everything (options, files, folders) is checked before any solve
    cal_name, cfg, world0, source = base_world(calibration, config)
    options = ScenarioOptions(
        importer=importer,
        exporter=exporter,
        pair=pair,
        symmetric=symmetric,
        all_pairs=all_pairs,
        trade_cost_change=trade_cost_change,
        tariff_change=tariff_change,
        tfp=tfp,
        labor=labor,
        financial=financial,
        rebate=rebate,
        labor_tax=labor_tax,
        forbid_d_below_one=forbid_d_below_one,
        allow_d_below_one=allow_d_below_one,
    )
    check_horizon(periods, news_date)
    shock, name = _shock(path, name, options, world0, periods, news_date)
    who = welfare_country(country, world0, shock)
    check_n_nodes(n_nodes)
    out = run_folder(out, _KIND, cal_name, config, name)
    folder = prepare_output(out, _KIND, what="transition")
    err_console.print(
        f"[bold]{escape(name)}[/bold]: {world0.M} countries ({escape(source)}), T = {periods}"
        f"{', linear' if linear else ''}; welfare of {who} at t = 0."
    )
    with progress() as prog:
        tr, wel = _solve(prog, cal_name, cfg, shock, who, periods, news_date, linear, n_nodes)
        header = dict(name=name, label=run_label(cal_name, config), source=source)
        if path is not None:
            header["path_file"] = str(path)
        summary = _write_folder(folder, tr, wel, **header)
    _print_summary(summary, out)


def check_horizon(periods: int, news_date: int) -> None:
    """``--periods`` (at least 2) and ``--news-date`` (in [0, periods)), before any solve."""
    if periods < 2:
        raise ParameterError(f"--periods {periods} is not allowed: an integer >= 2 (e.g. 300).")
    if not 0 <= news_date < periods:
        raise ParameterError(
            f"--news-date {news_date} is not allowed: an integer in [0, --periods) = "
            f"[0, {periods})."
        )


def _shock(path, name, options: ScenarioOptions, world0, periods: int, news_date: int):
    """(the shock for :func:`~hatrade.analysis.transition.run_transition`, the run's name):
    the path table (read and checked) or the scenario (checked on the world)."""
    from hatrade.analysis.counterfactual import apply_scenario
    from hatrade.analysis.transition import path_shocks
    from hatrade.io.transition_results import check_transition_scenario, read_path_table

    from .scenario_options import check_name

    if path is None:
        scenario = options.scenario(name)
        check_transition_scenario(
            scenario, world0, financial="--financial", news_date=news_date,
            news_field="--news-date",
        )  # fmt: skip
        apply_scenario(world0, scenario)  # raises, or warns once, before solving
        return scenario, scenario.name
    given = options.given()
    if given:
        fail(f"give either --path or scenario options ({', '.join(given)}), not both.")
    if news_date:
        fail("--news-date is not allowed with --path: the table's periods are the dates.")
    table = read_path_table(path, world0.countries, periods)
    path_shocks(world0, table, periods)  # the engine's checks (pairs, ranges), no solve
    if name is None:
        name = f"path-{Path(path).stem}"
    check_name(name)
    return table, name


def welfare_country(country: str | None, world, shock) -> str:
    """``--country`` checked, or the default: the scenario's importer (or first pair's
    importer; for a path table the first importer listed), else USA when in the world,
    else the first country."""
    from hatrade.analysis.counterfactual import Scenario

    if country is not None:
        world.index(country)
        return country
    if isinstance(shock, Scenario):
        first = shock.importer or next((p[0] for p in shock.pairs), None)
    else:
        listed = [c for c in shock.get("importer", []) if isinstance(c, str) and c]
        first = listed[0] if listed else None
    if first:
        return first
    return "USA" if "USA" in world.countries else world.countries[0]


def _solve(prog, cal_name, cfg, shock, who, periods, news_date, linear, n_nodes):
    """The baseline, the transition and the welfare of ``who``, with progress."""
    from hatrade.analysis.transition import run_transition
    from hatrade.welfare.transition import transition_welfare

    task = prog.add_task("Baseline equilibrium (the first call compiles)...", total=None)
    base_eq = baseline_equilibrium_of(cal_name, cfg)
    prog.finish(
        task,
        description=f"Baseline: beta {base_eq.beta:.6f}, R "
        f"{float(base_eq.prices.R[0]):.6f}, {base_eq.seconds:.0f} s",
    )
    t2 = prog.add_task(
        f"Transition: new steady state, Jacobians, path (T = {periods})...", total=None
    )
    try:
        tr = run_transition(base_eq, shock, periods=periods, news_date=news_date, linear=linear)
    except EquilibriumError as err:
        if "settled" in str(err):
            raise EquilibriumError(f"{err} (hatrade transition --periods N)") from None
        raise
    prog.finish(
        t2,
        description=f"Transition: {tr.iterations} iterations, max excess demand {tr.residual:.1e}",
    )
    t3 = prog.add_task(f"Welfare of {who}: all states, transition and steady state", total=None)
    wel = transition_welfare(tr, who, n_nodes=n_nodes)
    prog.finish(t3, description=f"Welfare of {who}")
    return tr, wel


def _write_folder(folder, tr, wel, **header) -> dict:
    """Write the transition folder in one swap (``header``: name, label, source, ...);
    returns its summary."""
    from hatrade.io.transition_results import save_transition, transition_summary

    summary = transition_summary(tr, {wel.country: wel.summary}, **header)
    with folder.replace() as tmp:
        save_transition(tmp, tr.paths, wel.table, summary, figures=True)
    return summary


def _print_summary(summary: dict, out: Path) -> None:
    conv = summary["convergence"]
    head = Table(
        title=f"Transition: {escape(str(summary['name']))}", show_header=False, title_justify="left"
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row(
        "convergence",
        f"{conv['iterations']} iterations, max excess demand {conv['residual']:.1e}, "
        f"end gap {conv['end_gap']:.1e}",
    )
    head.add_row("periods", f"{summary['periods']} (news date {summary['news_date']})")
    head.add_row("output", str(out))
    print_table(head)
    tab = Table(title="Who gains at t = 0 (percent, equivalent variation)", title_justify="left")
    for col in ("country", "", "mean", "Q1", "Q2", "Q3", "Q4", "Q5", "losers"):
        tab.add_column(col, justify="left" if col in ("country", "") else "right")
    for c, s in summary["welfare"].items():
        for key, what in (("transition", "transition"), ("steady_state", "steady state")):
            g = s[key]
            q = g["quintile_gain_percent"]
            tab.add_row(
                c,
                what,
                _fmt(g["mean_gain_percent"]),
                *(_fmt(q.get(f"Q{k}")) for k in range(1, 6)),
                f"{100 * s[f'share_losers_{key}']:.1f}%",
            )
    print_table(tab)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
