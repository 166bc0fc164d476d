"""``hatrade calibrate --data FILE --formula ...``: calibrate to own data and write a world
folder (:mod:`hatrade.io.world_folder`); ``hatrade table1 --data FILE --formula ...``: the
gravity table of any specification. Helpers of :mod:`.calibrate` and :mod:`.gravity`."""

from __future__ import annotations

import datetime
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from ._common import console, fail, progress

__all__ = [
    "calibrate_to_data",
    "gravity_table",
    "write_world_folder",
    "data_option",
    "countries_option",
    "formula_option",
    "estimator_option",
]

log = logging.getLogger(__name__)

_HH_KEYS = ("gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a")
_INCOME_KEYS = ("rho_perm", "var_perm", "n_perm", "var_iid", "n_iid")


def data_option(what: str):
    """``--data FILE``: own trade data (``hatrade data check``)."""
    return typer.Option(
        None, "--data", dir_okay=False, help=f"Own trade data (see hatrade data check): {what}."
    )


def countries_option():
    """``--countries FILE``: the country table of ``--data``."""
    return typer.Option(
        None, "--countries", dir_okay=False, help="With --data: the country table (labor)."
    )


def formula_option():
    """``--formula TEXT``: the gravity specification of ``--data``."""
    return typer.Option(
        None, "--formula", help="With --data: the specification, e.g. 'lndist + pta'."
    )


def estimator_option():
    """``--estimator ols|ppml``."""
    return typer.Option("ols", "--estimator", help="With --data: ols or ppml.")


def _param_table(res, cs) -> pd.DataFrame:
    c = cs.setup.countries[:-1]
    names = [f"log_tfp_{x}" for x in c] + [f"theta_m_{x}" for x in c] + list(cs.setup.names)
    return pd.DataFrame({"parameter": names, "value": np.asarray(res.params, float)})


def write_world_folder(folder, res, cs, source: dict, name: str) -> None:
    """All files of a world folder (module docstring of :mod:`hatrade.io.world_folder`)."""
    from hatrade import __version__
    from hatrade.calibration.generic import fit_table
    from hatrade.io.world_folder import WORLD_FILE, world_toml

    eq, hh = res.equilibrium, res.household
    world = eq.world
    folder.write_text(
        WORLD_FILE,
        world_toml(
            name,
            world.countries,
            world.tfp,
            world.labor,
            world.d,
            {k: getattr(hh, k) for k in _HH_KEYS},
            R=float(np.asarray(eq.R).ravel()[0]),
            beta=eq.beta,
            wages=np.asarray(eq.prices.w, float),
            income={k: getattr(hh, k) for k in _INCOME_KEYS},
        ),
    )
    folder.write_text("parameters.csv", _param_table(res, cs).to_csv(index=False))
    mt = res.moment_table(cs.setup)
    folder.write_text("moments.csv", mt.to_csv(index=False, float_format="%.17g"))
    folder.write_text("fit.csv", fit_table(res, cs).to_csv(index=False, float_format="%.17g"))
    folder.write_text("data/trade.csv", cs.data.trade.to_csv(index=False))
    folder.write_text("data/countries.csv", cs.data.countries.reset_index().to_csv(index=False))
    folder.write_json(
        "specification.json",
        {
            "formula": cs.spec.formula,
            "estimator": cs.estimator,
            "regressors": list(cs.spec.names),
            "n_bins": cs.spec.n_bins,
            "countries": list(cs.spec.countries),
            "trade_cost": "log d_ij = max(0, -(x_ij' delta + theta_m_i)/4), d_ii = 1",
        },
    )
    folder.write_json(
        "calibration.json",
        {
            "converged": res.converged,
            "max_moment_error": res.residual,
            "iterations": res.iterations,
            "equilibrium_solves": res.equilibrium_solves,
            "seconds": res.seconds,
            "beta": eq.beta,
            "household": hh.to_dict(),
            "history": res.history,
        },
    )
    folder.write_json(
        "provenance.json",
        dict(
            source,
            labor=cs.data.labor_source,
            command=" ".join(["hatrade", *sys.argv[1:]]),
            hatrade_version=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        ),
    )


def calibrate_to_data(data, data_file: Path, formula, estimator, hh, out, tol, max_iter, resume):
    """Validate, check the formula (before any solve), calibrate, write the world folder."""
    from hatrade.calibration.calibrate import CalibrationError
    from hatrade.calibration.generic import calibrate_data, prepare
    from hatrade.io.folders import prepare_output
    from hatrade.io.world_folder import file_sha256

    cs = prepare(data, formula, estimator)
    folder = prepare_output(out, "world", update=True)
    ckpt = out / "checkpoint.json"
    if resume and not ckpt.is_file():
        fail(f"--resume: no checkpoint at {ckpt}; run without --resume first.")
    source = {"data": str(data_file), "sha256": file_sha256(data_file)}
    with folder.session(), progress() as prog:
        folder.claim("checkpoint.json")
        task = prog.add_task(
            f"Solving the {cs.setup.M}-country equilibrium at the start...", total=None
        )

        def report(it, r):
            prog.update(task, description=f"Iteration {it}: max |moment - target| {r:.2e}")

        try:
            res, _ = calibrate_data(
                cs,
                household=hh,
                tol=tol,
                max_iter=max_iter,
                checkpoint=ckpt,
                resume=resume,
                progress=report,
            )
        except CalibrationError as err:
            fail(str(err))
        write_world_folder(folder, res, cs, source, Path(out).name)
    console.print(
        f"Calibrated {cs.setup.M} countries ({formula}, {estimator}) in {res.iterations} "
        f"iterations ({res.equilibrium_solves} equilibrium solves, {res.seconds:.0f} s): max "
        f"|moment - target| {res.residual:.2e}, beta {res.equilibrium.beta:.8f}. Wrote {out}; "
        f"use it with --world {out}."
    )


def gravity_table(data, formula: str, estimator: str) -> pd.DataFrame:
    """Gravity coefficients of ``formula`` on ``data`` (normalized as in the calibration),
    with OLS standard errors for ``ols``."""
    from hatrade.calibration.generic import prepare

    cs = prepare(data, formula, estimator)
    K = len(cs.setup.names)
    out = pd.DataFrame({"regressor": list(cs.setup.names), "coefficient": cs.targets[-K:]})
    if estimator == "ols":
        G = cs.setup.G[-K:]
        X = cs.data.matrix()
        i, j = cs.setup.importer, cs.setup.exporter
        y = np.log(X[i, j] / X[i, i])
        resid = y - _fitted(cs.setup, y)
        dof = len(y) - cs.setup.n_params
        s2 = float(resid @ resid) / dof
        out["std_error"] = np.sqrt(s2 * np.sum(G * G, axis=1))
    return out


def _fitted(setup, y):
    """Fitted values of the least-squares regression (projection on the design)."""
    from hatrade.calibration.generic import design_matrix

    D = design_matrix(setup)
    return D @ np.linalg.lstsq(D, y, rcond=None)[0]
