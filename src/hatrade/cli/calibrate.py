"""``hatrade calibrate``: gravity as a guide, the 46 parameters and beta; optionally
psi_slope to a home-share gap, household parameters to micro targets (outer loop), or a
robustness grid of independent calibrations on Dask."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn

from ._common import console, err_console, fail, handle_errors, out_option, progress
from .world import countries_option, data_option, estimator_option, formula_option

__all__ = ["register"]

log = logging.getLogger(__name__)

HELP = (
    "Calibrate the 46 trade-cost/TFP parameters (and beta at R = 1.01) so that the gravity "
    "regression on model trade reproduces the data; writes parameters.csv (published "
    "layout), table1.csv, moments.csv, calibration_log.csv and checkpoint.json. "
    "--psi-target also calibrates psi_slope to a rich-minus-poor home-share gap; "
    "--micro-targets FILE runs an outer loop on household parameters (gamma, sigma_eps, "
    "psi_slope) to micro targets; --grid NAME=V1,V2 runs independent calibrations on a "
    "Dask cluster."
)


def register(app: typer.Typer) -> None:
    app.command("calibrate", help=HELP)(calibrate_cmd)


def _write_outputs(folder, res, extra: dict | None = None):
    """parameters.csv, calibration_log.csv, table1.csv, moments.csv, summary.json into
    ``folder`` (an :class:`~hatrade.io.folders.OutputFolder`)."""
    import numpy as np
    import pandas as pd

    from hatrade import __version__
    from hatrade.analysis.gravity import gravity_regression, model_trade_table, table1
    from hatrade.calibration.calibrate import data_moments, ek_setup
    from hatrade.data import load_trade_data
    from hatrade.io.parameters import write_parameter_file

    setup = ek_setup()
    folder.claim("parameters.csv")
    write_parameter_file(folder.path / "parameters.csv", res.params)
    folder.write_text("calibration_log.csv", pd.DataFrame(res.history).to_csv(index=False))
    data_res = gravity_regression(load_trade_data())
    model_res = gravity_regression(
        model_trade_table(res.equilibrium.trade_shares, list(setup.countries))
    )
    t1 = table1(data_res, model_res, res.params)
    folder.write_text("table1.csv", t1.to_csv(index=False))
    folder.write_text("moments.csv", res.moment_table(setup).to_csv(index=False))
    summary = {
        "beta": res.equilibrium.beta,
        "R": res.equilibrium.R,
        "converged": res.converged,
        "iterations": res.iterations,
        "max_moment_error": res.residual,
        "equilibrium_solves": res.equilibrium_solves,
        "household_solves": res.household_solves,
        "block_jacobians": res.block_jacobians,
        "seconds": res.seconds,
        "household": res.household.to_dict(),
        "version": __version__,
        "params": np.asarray(res.params).tolist(),
        "psi_slope_calibrated": res.psi_slope is not None,
        "gap_country": res.gap_country,
        "data_moments": data_moments().tolist(),
    }
    if res.psi_slope is not None:
        summary["home_share_gap"] = {
            "target": float(res.targets[-1]),
            "model": float(res.moments[-1]),
        }
    summary.update(extra or {})
    folder.write_json("summary.json", summary)
    return t1


def _check_options(
    calibration,
    tol,
    max_iter,
    psi_target,
    gap_country,
    micro_targets,
    grid,
    scheduler,
    workers,
    serial,
    retry_failed,
) -> None:
    """The options of ``hatrade calibrate``, checked before any work (:func:`fail`)."""
    from hatrade.data import CALIBRATIONS

    if calibration not in CALIBRATIONS:
        fail(f"--calibration {calibration!r} is not allowed: use one of {', '.join(CALIBRATIONS)}.")
    if not (math.isfinite(tol) and tol > 0):
        fail(f"--tol {tol} is not allowed: it must be a finite number > 0.")
    if max_iter < 1:
        fail(f"--max-iter {max_iter} is not allowed: it must be an integer >= 1.")
    if psi_target is not None and not math.isfinite(psi_target):
        fail(f"--psi-target {psi_target} is not allowed: it must be a finite number.")
    if grid and micro_targets is not None:
        fail("give either --grid or --micro-targets, not both.")
    if not grid and (scheduler or workers or serial or retry_failed):
        fail("--scheduler, --workers, --serial and --retry-failed go with --grid.")
    if serial and scheduler:
        fail("give either --serial or --scheduler, not both.")
    if micro_targets is not None and (psi_target is not None or gap_country is not None):
        fail(
            "with --micro-targets, give the home-share gap as a target in the file "
            '(name = "home_share_gap") and psi_slope in its params, not --psi-target.'
        )
    if gap_country is not None and psi_target is None:
        fail("--gap-country goes with --psi-target.")


def _start_option():
    return typer.Option(
        None,
        "--start",
        "-s",
        dir_okay=False,
        exists=True,
        help="Starting parameters: a 46-number file in the published layout (default: the "
        "published baseline, data/calibration/baseline-parameters.csv).",
    )


def _calibration_option():
    return typer.Option(
        "baseline",
        "--calibration",
        "-c",
        help="Household parameters (gamma, sigma_eps, psi_slope) of this shipped calibration; "
        "also the default start and starting prices.",
    )


def _out_option():
    return out_option(
        "Output folder (default results/calibrate, results/calibrate-micro with "
        "--micro-targets, results/calibrate-grid with --grid)."
    )


def _resume_option():
    return typer.Option(
        False,
        "--resume",
        help="Continue from OUT/checkpoint.json (best point so far), "
        "or OUT/micro_checkpoint.json with --micro-targets.",
    )


def _psi_target_option():
    return typer.Option(
        None,
        "--psi-target",
        help="Also calibrate psi_slope (a 47th parameter) so that the home share of the top "
        "labor-income quintile minus that of the bottom quintile of --gap-country equals "
        "this value.",
    )


def _gap_country_option():
    return typer.Option(None, "--gap-country", help="Country of the home-share gap (default USA).")


def _micro_targets_option():
    return typer.Option(
        None,
        "--micro-targets",
        dir_okay=False,
        exists=True,
        help="TOML file of micro targets (elasticity_gap, elasticity, home_share_gap) and the "
        "household parameters to move (gamma, sigma_eps, psi_slope): an outer Broyden "
        "loop around the calibration.",
    )


def _grid_option():
    return typer.Option(
        None,
        "--grid",
        help="Robustness grid NAME=V1,V2,... over gamma, sigma_eps, psi_slope, phi or a_max "
        "(repeat for a product grid): independent calibrations on Dask, resumable.",
    )


def _scheduler_option():
    return typer.Option(
        None,
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786) for --grid; default: a local cluster.",
    )


def _workers_option():
    return typer.Option(
        None, "--workers", min=1, help="Worker processes of the local cluster (--grid)."
    )


def _retry_failed_option():
    return typer.Option(False, "--retry-failed", help="--grid: re-run points recorded as failed.")


@handle_errors
def calibrate_cmd(
    start: Optional[Path] = _start_option(),
    calibration: str = _calibration_option(),
    out: Optional[Path] = _out_option(),
    resume: bool = _resume_option(),
    tol: float = typer.Option(1e-8, "--tol", help="Max |model moment - data moment|."),
    max_iter: int = typer.Option(15, "--max-iter", help="Newton iterations in the parameters."),
    psi_target: Optional[float] = _psi_target_option(),
    gap_country: Optional[str] = _gap_country_option(),
    micro_targets: Optional[Path] = _micro_targets_option(),
    grid: Optional[List[str]] = _grid_option(),
    scheduler: Optional[str] = _scheduler_option(),
    workers: Optional[int] = _workers_option(),
    serial: bool = typer.Option(False, "--serial", help="--grid in this process, without Dask."),
    retry_failed: bool = _retry_failed_option(),
    data: Optional[Path] = data_option("calibrate to it into a world folder (--out)"),
    countries: Optional[Path] = countries_option(),
    formula: Optional[str] = formula_option(),
    estimator: str = estimator_option(),
) -> None:
    from hatrade.core.worlds import published_household
    from hatrade.data import load_calibration, read_parameter_file

    if data is not None or formula is not None:
        return _data(data, countries, formula, estimator, calibration, out, tol, max_iter, resume)

    opts = (calibration, tol, max_iter, psi_target, gap_country, micro_targets, grid)
    _check_options(*opts, scheduler, workers, serial, retry_failed)
    cal = load_calibration(calibration)
    theta0 = read_parameter_file(start) if start is not None else cal.params
    hh = published_household(calibration)
    kind = "grid" if grid else "micro" if micro_targets is not None else None
    default = "calibrate" if kind is None else f"calibrate-{kind}"
    out = Path(out) if out is not None else Path("results") / default

    if kind == "grid":
        _grid(
            grid,
            theta0,
            hh,
            cal,
            out,
            tol,
            max_iter,
            psi_target,
            gap_country,
            scheduler,
            workers,
            serial,
            retry_failed,
        )
        return
    if kind == "micro":
        _micro(micro_targets, theta0, hh, cal, out, tol, max_iter, resume)
        return

    _plain(theta0, hh, cal, out, tol, max_iter, resume, psi_target, gap_country)


def _data(data, countries, formula, estimator, calibration, out, tol, max_iter, resume):
    """``--data FILE --formula ...``: calibration to own data into a world folder."""
    from hatrade.core.worlds import published_household

    from .data import trade_data_options
    from .world import calibrate_to_data

    if data is None or formula is None:
        fail("--data and --formula go together: give both.")
    if out is None:
        fail("--data needs --out DIR, the world folder to write.")
    d = trade_data_options(data, countries, "exporter", "importer", "trade", None)
    hh = published_household(calibration)
    calibrate_to_data(d, data, formula, estimator, hh, Path(out), tol, max_iter, resume)


def _check_checkpoint(ckpt: Path, keys: tuple[str, ...] = ()) -> None:
    """``--resume``: the checkpoint exists and is a JSON object (with ``best`` holding
    ``keys``), checked before any work."""
    from hatrade.core.params import ParameterError

    if not ckpt.is_file():
        fail(f"--resume: no checkpoint at {ckpt}; run without --resume first.")
    try:
        doc = json.loads(ckpt.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ParameterError(
            f"--resume: cannot read the checkpoint {ckpt} ({err}); run without --resume."
        ) from None
    best = doc.get("best") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or (
        keys and not (isinstance(best, dict) and set(keys) <= set(best))
    ):
        raise ParameterError(
            f"--resume: {ckpt} is not a calibration checkpoint (it needs 'best' with "
            f"{', '.join(keys)}); run without --resume."
        )


def _plain(theta0, hh, cal, out, tol, max_iter, resume, psi_target, gap_country):
    """The gravity calibration (optionally with psi_slope to a home-share gap)."""
    from hatrade.calibration.calibrate import CalibrationError, calibrate
    from hatrade.io.folders import prepare_output

    folder = prepare_output(out, "calibrate", update=True)
    ckpt = out / "checkpoint.json"
    if resume:
        _check_checkpoint(ckpt, ("params", "wages", "beta", "residual"))
    with folder.session(), progress() as prog:
        folder.claim("checkpoint.json")
        task = prog.add_task("Solving the equilibrium at the starting parameters...", total=None)

        def report(it, res):
            prog.update(
                task, description=f"Iteration {it}: max |moment - target| {res:.2e} (tol {tol:.0e})"
            )

        try:
            res = calibrate(
                theta0,
                hh,
                wages=cal.wages.to_numpy(),
                beta_guess=cal.beta,
                tol=tol,
                max_iter=max_iter,
                checkpoint=ckpt,
                resume=resume,
                progress=report,
                home_share_gap=psi_target,
                gap_country=gap_country,
            )
        except CalibrationError as err:
            fail(str(err))
        t1 = _write_outputs(folder, res)
    psi = (
        f", psi_slope {res.psi_slope:.8f} (home-share gap {res.moments[-1]:.6f})"
        if res.psi_slope is not None
        else ""
    )
    console.print(
        f"Calibrated in {res.iterations} iterations ({res.equilibrium_solves} "
        f"equilibrium solves, {res.seconds:.0f} s): max |moment - target| "
        f"{res.residual:.2e}, beta {res.equilibrium.beta:.8f}{psi}. Wrote {out}."
    )
    console.print(t1.to_string(index=False))


def _micro(path, theta0, hh, cal, out, tol, max_iter, resume):
    import pandas as pd

    from hatrade.calibration.calibrate import CalibrationError
    from hatrade.calibration.micro import calibrate_micro, load_micro_targets
    from hatrade.io.folders import prepare_output

    spec = load_micro_targets(path)  # every field checked before any solve
    hh = hh.replace(**spec["start"])
    opts = dict(spec["options"])
    folder = prepare_output(
        out, "calibrate-micro", what="'hatrade calibrate --micro-targets'", update=True
    )
    ckpt = out / "micro_checkpoint.json"
    if resume:
        _check_checkpoint(ckpt)
    opts.setdefault("inner_tol", min(tol, 1e-9))
    opts.setdefault("inner_max_iter", max_iter)
    with folder.session(), progress() as prog:
        folder.claim("micro_checkpoint.json")
        task = prog.add_task(
            "Inner calibration at the starting household parameters...", total=None
        )

        def report(step, res):
            prog.update(
                task, description=f"Outer step {step}: max |micro moment - target| {res:.2e}"
            )

        try:
            res = calibrate_micro(
                theta0,
                hh,
                spec["targets"],
                spec["params"],
                wages=cal.wages.to_numpy(),
                beta_guess=cal.beta,
                checkpoint=ckpt,
                resume=resume,
                progress=report,
                **opts,
            )
        except CalibrationError as err:
            fail(str(err))
        folder.write_text("micro_log.csv", pd.DataFrame(res.history).to_csv(index=False))
        folder.write_text("micro_targets.csv", res.table().to_csv(index=False))
        _write_outputs(folder, res.inner, {"micro": res.summary()})
    console.print(
        f"Micro calibration converged in {res.iterations} outer steps "
        f"({res.evaluations} inner calibrations, {res.seconds:.0f} s): "
        + ", ".join(f"{k} = {v:.8g}" for k, v in res.params.items())
        + f"; beta {res.inner.equilibrium.beta:.8f}. Wrote {out}."
    )
    console.print(res.table().to_string(index=False))


def _grid(
    grid,
    theta0,
    hh,
    cal,
    out,
    tol,
    max_iter,
    psi_target,
    gap_country,
    scheduler,
    workers,
    serial,
    retry_failed,
):
    from hatrade.calibration.grid import calibration_grid, grid_points

    n = len(grid_points(grid, hh))  # every point checked before any solve
    err_console.print(
        f"Calibration grid: {n} points -> {escape(str(out))} "
        f"({'serial' if serial else scheduler or 'local Dask cluster'})"
    )
    with progress(BarColumn(), MofNCompleteColumn()) as prog:
        task = prog.add_task("points", total=n)

        def report(done, total, row):
            extra = " (resumed)" if row.get("resumed") else ""
            prog.update(
                task,
                completed=done,
                description=f"last: {row.get('name')} {row.get('status')}{extra}",
            )
            if row.get("status") != "ok" and not row.get("resumed"):
                err_console.print(
                    f"[red]point {escape(str(row.get('name')))} failed:[/red] "
                    f"{escape(str(row.get('error')))}"
                )

        df = calibration_grid(
            grid,
            theta0,
            hh,
            out,
            wages=cal.wages.to_numpy(),
            beta_guess=cal.beta,
            tol=tol,
            max_iter=max_iter,
            home_share_gap=psi_target,
            gap_country=gap_country,
            scheduler=scheduler,
            executor="serial" if serial else "dask",
            workers=workers,
            retry_failed=retry_failed,
            progress=report,
        )
    cols = [c for c in df.columns if c not in ("error", "resumed")]
    console.print(df[cols].to_string(index=False))
    console.print(f"Wrote {escape(str(out))}/grid_summary.csv")
    if (df["status"] != "ok").any():
        raise typer.Exit(1)
