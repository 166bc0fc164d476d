"""``hatrade solve``: solve a world equilibrium and write a results folder."""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from hatrade.data import CALIBRATIONS

from ._common import (
    calibration_option,
    config_option,
    err_console,
    handle_errors,
    load_world_config,
    out_option,
    print_table,
    progress,
)

__all__ = ["register", "solve", "CalibrationName"]

log = logging.getLogger(__name__)

CalibrationName = enum.Enum("CalibrationName", {k: k for k in CALIBRATIONS}, type=str)


SOLVE_HELP = (
    "Solve the stationary world equilibrium and write summary.json, trade.csv, "
    "households.nc and trade_fit.png."
)


def register(app: typer.Typer) -> None:
    """Add ``solve`` to ``app``."""
    app.command("solve", help=SOLVE_HELP)(solve)


@handle_errors
def solve(
    calibration: Optional[CalibrationName] = calibration_option(
        "A shipped calibration of the 19-country world: solve beta at R = 1.01 "
        "(default: baseline, when --config is not given)."
    ),
    config: Optional[Path] = config_option(
        "A TOML file describing a world (see examples/two_country.toml)."
    ),
    out: Optional[Path] = out_option(
        "Output folder (default results/solve-<name>). A previous solve folder there is "
        "replaced; a folder with other files is refused."
    ),
    from_initial: bool = typer.Option(
        False,
        "--from-initial",
        help="With --calibration: start from the author's initial prices (beta 0.93) instead "
        "of the published equilibrium prices (slower, same equilibrium).",
    ),
    correct_germany: bool = typer.Option(
        False,
        "--correct-germany",
        help="With --calibration: use Germany's corrected labor force 0.225 instead of the "
        "published 0.0225 (the calibration vector is not re-estimated).",
    ),
) -> None:
    """Solve the stationary world equilibrium and write a results folder (see SOLVE_HELP)."""
    from hatrade import solve_equilibrium
    from hatrade.io.folders import prepare_output
    from hatrade.io.results import check_writers, save_solve

    # ---- everything is checked before any work
    cfg = load_world_config(
        calibration, config, from_initial=from_initial, correct_germany=correct_germany
    )
    out = Path(out) if out is not None else Path("results") / f"solve-{cfg.name}"
    folder = prepare_output(out, "solve")
    check_writers()

    world, hh = cfg.world, cfg.household
    what = (
        f"beta given R = {cfg.R:.4g}"
        if cfg.solve_for == "beta"
        else f"R given beta = {hh.beta:.4g}"
    )
    err_console.print(
        f"[bold]{cfg.name}[/bold]: {world.M} countries, {world.financial}, "
        f"solving {('beta' if cfg.solve_for == 'beta' else 'R')} and wages "
        f"({what}), {hh.n_a} asset points."
    )

    with progress() as prog:
        task = prog.add_task(
            "Solving households at the starting prices (the first call compiles)...", total=None
        )

        def report(iteration: int, residual: float) -> None:
            prog.update(
                task,
                description=f"Newton {iteration}: max excess demand "
                f"{residual:.2e} (tol {cfg.tol:.0e})",
            )

        eq = solve_equilibrium(world, hh, progress=report, **cfg.solve_kwargs())
        prog.finish(
            task,
            description=f"Converged: {eq.iterations} Newton iterations, max "
            f"excess demand {eq.residual:.2e}, {eq.seconds:.1f} s",
        )
        write = prog.add_task(f"Writing {escape(str(out))}...", total=None)
        summary = save_solve(eq, folder, cfg.name, data_fit="ek", parameters=cfg.to_dict())
        prog.finish(write, description=f"Wrote {escape(str(out))}")

    print_summary(summary, out)


def print_summary(summary: dict, out: Path) -> None:
    """The solve summary as rich tables on stdout."""
    head = Table(title=f"Equilibrium: {summary['name']}", show_header=False, title_justify="left")
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row("beta", f"{summary['beta']:.6f}")
    R = summary["R"]
    if isinstance(R, dict):
        head.add_row("R", "by country (financial autarky), below")
    else:
        head.add_row("R", f"{R:.6f}")
    conv = summary["convergence"]
    head.add_row(
        "max excess demand",
        f"{conv['max_excess_demand']:.2e} ({conv['newton_iterations']} Newton iterations)",
    )
    fit = summary.get("fit")
    if fit:
        corr = "n/a" if fit.get("corr") is None else f"{fit['corr']:.4f}"
        head.add_row("fit: corr (model, data)", f"{corr}  [{fit['n_pairs']} pairs, log s_ij/s_ii]")
        head.add_row("fit: RMSE", f"{fit['rmse']:.4f}")
    else:
        head.add_row("fit", "no trade data for these countries")
    head.add_row("output", str(out))
    print_table(head)

    tab = Table(title="By country", title_justify="left")
    tab.add_column("country")
    tab.add_column("wage", justify="right")
    tab.add_column("import share", justify="right")
    if isinstance(R, dict):
        tab.add_column("R", justify="right")
    for c, w in summary["wages"].items():
        row = [c, f"{w:.6f}", f"{summary['import_share'][c]:.4f}"]
        if isinstance(R, dict):
            row.append(f"{R[c]:.6f}")
        tab.add_row(*row)
    print_table(tab)
