"""``hatrade calibrate``: gravity as a guide, the 46 parameters and beta."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ._common import console, err_console, fail, handle_errors

__all__ = ["register"]

log = logging.getLogger(__name__)

HELP = ("Calibrate the 46 trade-cost/TFP parameters (and beta at R = 1.01) so that the gravity "
        "regression on model trade reproduces the data; writes parameters.csv (published "
        "layout), table1.csv, calibration_log.csv and checkpoint.json.")


def register(app: typer.Typer) -> None:
    app.command("calibrate", help=HELP)(calibrate_cmd)


@handle_errors
def calibrate_cmd(
    start: Optional[Path] = typer.Option(
        None, "--start", "-s", dir_okay=False, exists=True,
        help="Starting parameters: a 46-number file in the published layout (default: the "
             "published baseline, data/calibration/baseline-parameters.csv)."),
    calibration: str = typer.Option(
        "baseline", "--calibration", "-c",
        help="Household parameters (gamma, sigma_eps, psi_slope) of this shipped calibration; "
             "also the default start and starting prices."),
    out: Path = typer.Option(Path("results/calibrate"), "--out", "-o", file_okay=False,
                             help="Output folder."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue from OUT/checkpoint.json (best point so far)."),
    tol: float = typer.Option(1e-8, "--tol", help="Max |model moment - data moment|."),
    max_iter: int = typer.Option(15, "--max-iter", help="Newton iterations in the parameters."),
) -> None:
    import numpy as np
    import pandas as pd

    from .. import __version__
    from ..calibrate import CalibrationError, calibrate, data_moments, ek_setup
    from ..data import (CALIBRATIONS, load_calibration, read_parameter_file,
                        write_parameter_file)
    from ..ek import published_household
    from ..gravity import gravity_regression, model_trade_table, table1
    from ..data import load_trade_data
    from ..results import atomic_write_text

    if calibration not in CALIBRATIONS:
        fail(f"--calibration {calibration!r} is not allowed: use one of {', '.join(CALIBRATIONS)}.")
    if tol <= 0 or max_iter < 1:
        fail("--tol must be > 0 and --max-iter >= 1.")
    cal = load_calibration(calibration)
    theta0 = read_parameter_file(start) if start is not None else cal.params
    hh = published_household(calibration)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.json"
    if resume and not ckpt.exists():
        fail(f"--resume: no checkpoint at {ckpt}; run without --resume first.")

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console) as prog:
        task = prog.add_task("Solving the equilibrium at the starting parameters...", total=None)

        def report(it, res):
            prog.update(task, description=f"Iteration {it}: max |moment - target| {res:.2e} "
                                          f"(tol {tol:.0e})")

        try:
            res = calibrate(theta0, hh, wages=cal.wages.to_numpy(), beta_guess=cal.beta,
                            tol=tol, max_iter=max_iter, checkpoint=ckpt, resume=resume,
                            progress=report)
        except CalibrationError as err:
            fail(str(err))

    setup = ek_setup()
    write_parameter_file(out / "parameters.csv", res.params)
    hist = pd.DataFrame(res.history)
    atomic_write_text(out / "calibration_log.csv", hist.to_csv(index=False))
    data_res = gravity_regression(load_trade_data())
    model_res = gravity_regression(model_trade_table(res.equilibrium.trade_shares,
                                                     list(setup.countries)))
    t1 = table1(data_res, model_res, res.params)
    atomic_write_text(out / "table1.csv", t1.to_csv(index=False))
    moments = res.moment_table(setup)
    atomic_write_text(out / "moments.csv", moments.to_csv(index=False))
    import json
    atomic_write_text(out / "summary.json", json.dumps({
        "beta": res.equilibrium.beta, "R": res.equilibrium.R, "converged": res.converged,
        "iterations": res.iterations, "max_moment_error": res.residual,
        "equilibrium_solves": res.equilibrium_solves,
        "household_solves": res.household_solves, "block_jacobians": res.block_jacobians,
        "seconds": res.seconds, "household": hh.to_dict(), "version": __version__,
        "params": np.asarray(res.params).tolist(),
        "data_moments": data_moments().tolist()}, indent=1))
    console.print(f"Calibrated in {res.iterations} iterations ({res.equilibrium_solves} "
                  f"equilibrium solves, {res.seconds:.0f} s): max |moment - target| "
                  f"{res.residual:.2e}, beta {res.equilibrium.beta:.8f}. Wrote {out}.")
    console.print(t1.to_string(index=False))
