r"""Robustness grids: independent calibrations over a grid of household parameters.

:func:`calibration_grid` runs the inner calibration
(:func:`hatrade.calibration.calibrate.calibrate`) at every point of the Cartesian product
of a grid (e.g. ``sigma_eps = 0.30, 0.33, 0.36`` and ``gamma = 1.2, 1.45``;
:func:`parse_grid`, :func:`grid_points`), as tasks on a Dask client: a ``LocalCluster`` by
default, ``scheduler="tcp://host:port"`` for a real one, or ``executor="serial"``.

Each point is written as soon as it finishes, as a folder swapped in whole:
``OUT/points/<name>/result.json`` (and ``parameters.csv`` in the published layout), and
``OUT/grid_summary.csv`` and ``OUT/grid.json`` are rewritten. Running the same grid into the
same folder again skips the finished points: those of the same specification (the
fingerprint of the point, :func:`hatrade.io.fingerprint.fingerprint`) computed by the same
code (:func:`hatrade.io.fingerprint.code_revision`). The output folder follows
:mod:`hatrade.io.folders` (kind ``"calibration-grid"``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from hatrade.calibration.calibrate import CalibrationError, GravitySetup, calibrate, ek_setup
from hatrade.calibration.micro_targets import MICRO_PARAMS, check_calibrate_options
from hatrade.core.errors import EquilibriumError
from hatrade.core.params import Household, ParameterError
from hatrade.io.atomic import atomic_dir, write_json
from hatrade.io.fingerprint import code_revision, fingerprint
from hatrade.io.folders import OutputFolder, prepare_output
from hatrade.io.parameters import write_parameter_file
from hatrade.io.tasks import completed_rows, dask_client

__all__ = ["GRID_PARAMS", "parse_grid", "grid_points", "calibration_grid"]

log = logging.getLogger(__name__)

#: Household parameters a robustness grid may vary.
GRID_PARAMS = ("gamma", "sigma_eps", "psi_slope", "phi", "a_max")

_STATUS_OK, _STATUS_FAILED = "ok", "failed"

#: Columns of a point's row kept when it is resumed.
_ROW_KEYS = (
    "name",
    "status",
    "converged",
    "iterations",
    "residual",
    "beta",
    "psi_slope",
    "equilibrium_solves",
    "seconds",
    "error",
    "fingerprint",
    "code_revision",
)


def parse_grid(specs) -> dict[str, list[float]]:
    """Parse grid specifications ``"name=v1,v2,..."`` (or a dict name -> values).

    Raises
    ------
    ParameterError
        A malformed specification, an unknown or repeated parameter, a non-number, or a
        value out of range (the message names the parameter).
    """
    if isinstance(specs, str):
        specs = [specs]
    out: dict[str, list[float]] = {}
    items = specs.items() if isinstance(specs, Mapping) else None
    if items is None:
        parsed = []
        for s in specs:
            if not isinstance(s, str) or s.count("=") != 1:
                raise ParameterError(
                    f"grid {s!r} is malformed: write NAME=V1,V2,... (e.g. "
                    "sigma_eps=0.30,0.33,0.36)."
                )
            name, vals = (a.strip() for a in s.split("="))
            parsed.append((name, [v.strip() for v in vals.split(",")]))
        items = parsed
    for name, vals in items:
        if name not in GRID_PARAMS:
            raise ParameterError(
                f"grid parameter {name!r} is not allowed: use one of {', '.join(GRID_PARAMS)}."
            )
        if name in out:
            raise ParameterError(f"grid parameter {name!r} is given twice.")
        if isinstance(vals, (int, float)):
            vals = [vals]
        values = []
        for v in vals:
            try:
                if isinstance(v, bool) or v == "":
                    raise ValueError
                f = float(v)
            except (TypeError, ValueError):
                raise ParameterError(
                    f"grid {name}: {v!r} is not a number (write {name}=V1,V2,...)."
                ) from None
            if not math.isfinite(f):
                raise ParameterError(f"grid {name}: {v!r} is not a finite number.")
            values.append(f)
        if not values:
            raise ParameterError(f"grid {name}: no values.")
        if len(set(values)) != len(values):
            raise ParameterError(f"grid {name}: repeated values {values}.")
        out[name] = values
    if not out:
        raise ParameterError("grid is empty: give NAME=V1,V2,... (e.g. sigma_eps=0.30,0.33).")
    return out


def _point_name(point: dict) -> str:
    return "_".join(f"{k}-{float(v)!r}" for k, v in point.items())


def grid_points(grid, household: Household) -> list[tuple[str, Household]]:
    """The Cartesian product of a grid (:func:`parse_grid`) as (name, Household) pairs; each
    household is validated (the error names the point and the field)."""
    grid = parse_grid(grid)
    pts = []
    names = list(grid)
    for combo in itertools.product(*(grid[n] for n in names)):
        point = dict(zip(names, combo))
        name = _point_name(point)
        try:
            hh = household.replace(beta=None, **point)
        except ParameterError as err:
            raise ParameterError(f"grid point {name}: {err}") from None
        for p, v in point.items():
            if p in MICRO_PARAMS:
                lo, hi = MICRO_PARAMS[p]
                if not lo < v < hi:
                    raise ParameterError(
                        f"grid point {name}: {p} = {v!r} is out of range: {p} "
                        f"must be in ({lo}, {hi})."
                    )
        pts.append((name, hh))
    return pts


def _grid_point(task: dict, out_dir: str) -> dict:
    """One grid point (a task): calibrate, write the point's folder, return its row."""
    t0 = time.perf_counter()
    folder = Path(out_dir) / "points" / task["name"]
    hh = Household(**task["household"])
    row = {
        "name": task["name"],
        "fingerprint": task["fingerprint"],
        "code_revision": task["code_revision"],
        **task["point"],
    }
    res = None
    try:
        res = calibrate(
            np.asarray(task["theta0"]),
            hh,
            setup=task["setup"],
            targets=None if task["targets"] is None else np.asarray(task["targets"]),
            labor=None if task["labor"] is None else np.asarray(task["labor"]),
            wages=None if task["wages"] is None else np.asarray(task["wages"]),
            **task["calibrate"],
        )
        row.update(
            status=_STATUS_OK,
            converged=res.converged,
            iterations=res.iterations,
            residual=res.residual,
            beta=res.equilibrium.beta,
            psi_slope=res.household.psi_slope,
            equilibrium_solves=res.equilibrium_solves,
            seconds=time.perf_counter() - t0,
        )
        detail = {
            **row,
            "params": res.params,
            "wages": res.equilibrium.prices.w,
            "moments": res.moments,
            "targets": res.targets,
            "household": res.household.to_dict(),
        }
    except (
        CalibrationError,
        EquilibriumError,
        ParameterError,
        FloatingPointError,
        np.linalg.LinAlgError,
    ) as err:
        row.update(
            status=_STATUS_FAILED,
            error=f"{type(err).__name__}: {err}",
            seconds=time.perf_counter() - t0,
        )
        detail = row
        log.warning("grid point %s failed: %s", task["name"], err)
    with atomic_dir(folder) as tmp:
        if res is not None and row["status"] == _STATUS_OK and len(res.params) == 46:
            write_parameter_file(tmp / "parameters.csv", res.params)
        write_json(tmp / "result.json", detail)
    return row


def _grid_tasks(points, gridd: dict, setup: GravitySetup, common: dict) -> list[dict]:
    """One task per point: the common inputs, the household and the point's fingerprint
    (of everything that determines its calibration, with the code revision)."""
    tasks = []
    revision = code_revision()
    for (name, hh), combo in zip(points, itertools.product(*gridd.values())):
        spec = {**common, "household": hh.to_dict(), "setup": setup}
        tasks.append(
            {
                **common,
                "name": name,
                "household": hh.to_dict(),
                "setup": setup,
                "point": dict(zip(gridd, combo)),
                "code_revision": revision,
                "fingerprint": fingerprint("calibration-grid-point", spec, length=16),
            }
        )
    return tasks


def _finished_points(out: Path, tasks: list[dict], retry_failed: bool) -> dict:
    """Points already finished in ``out`` with the same specification and code revision:
    {name: row}."""
    rows: dict = {}
    for tk in tasks:
        try:
            saved = json.loads((out / "points" / tk["name"] / "result.json").read_text())
        except (OSError, ValueError):
            continue
        if saved.get("code_revision") != tk["code_revision"]:
            log.info(
                "grid point %s was computed by other code (revision %s); it is re-run",
                tk["name"],
                str(saved.get("code_revision"))[:12],
            )
            continue
        if saved.get("fingerprint") != tk["fingerprint"]:
            log.info("grid point %s: specification changed; it is re-run", tk["name"])
            continue
        if saved.get("status") == _STATUS_FAILED and retry_failed:
            continue
        rows[tk["name"]] = {
            **{c: saved.get(c) for c in _ROW_KEYS if c in saved},
            **tk["point"],
            "resumed": True,
        }
    return rows


def _write_grid_summary(
    folder: OutputFolder, tasks: list[dict], rows: dict, gridd: dict
) -> pd.DataFrame:
    """Rewrite ``grid_summary.csv`` and ``grid.json``; returns the summary table."""
    df = _grid_table(tasks, rows, gridd)
    folder.write_text("grid_summary.csv", df.to_csv(index=False, float_format="%.12g"))
    folder.write_json(
        "grid.json",
        {
            "kind": "calibration-grid",
            "grid": gridd,
            "points": [t["name"] for t in tasks],
            "done": [n for n in rows],
            "pending": [t["name"] for t in tasks if t["name"] not in rows],
        },
    )
    return df


def _check_grid_inputs(
    grid, theta0, household: Household, setup: GravitySetup, home_share_gap, executor: str
):
    """(parsed grid, points, theta0 as an array), every input checked before any solve."""
    if executor not in ("dask", "serial"):
        raise ParameterError(f"executor = {executor!r} is not allowed: use 'dask' or 'serial'.")
    gridd = parse_grid(grid)
    points = grid_points(gridd, household)
    if home_share_gap is not None and "psi_slope" in gridd:
        raise ParameterError(
            "grid over psi_slope with home_share_gap: psi_slope is then "
            "calibrated; vary it or target the gap, not both."
        )
    theta0 = np.asarray(theta0, float)
    if theta0.shape != (setup.n_params,):
        raise ParameterError(
            f"parameter vector has {theta0.size} entries; this setup needs {setup.n_params}."
        )
    return gridd, points, theta0


def calibration_grid(
    grid,
    theta0,
    household: Household,
    out_dir,
    *,
    setup: GravitySetup | None = None,
    targets=None,
    labor=None,
    R: float = 1.01,
    wages=None,
    beta_guess: float = 0.93,
    tol: float = 1e-8,
    max_iter: int = 15,
    home_share_gap: float | None = None,
    gap_country: str | None = None,
    scheduler: str | None = None,
    executor: str = "dask",
    workers: int | None = None,
    processes: bool = True,
    retry_failed: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> pd.DataFrame:
    """Independent calibrations over a grid of household parameters (module docstring).

    Parameters
    ----------
    grid : list of "name=v1,v2" strings or dict name -> values (:func:`parse_grid`)
    theta0, household, setup, targets, labor, R, wages, beta_guess, tol, max_iter,
    home_share_gap, gap_country : as :func:`hatrade.calibration.calibrate.calibrate`
        (every point starts from the same ``theta0`` and prices).
    out_dir : folder of the grid (created; finished points there are skipped).
    scheduler : Dask scheduler address; None: a LocalCluster of ``workers`` workers
        (``processes=False``: threads in this process).
    executor : "dask" or "serial".
    retry_failed : re-run points recorded as failed.
    progress : callable(done, total, row) after each finished point.

    Returns
    -------
    pandas.DataFrame
        ``grid_summary.csv``: one row per point (name, the grid values, status, converged,
        iterations, residual, beta, psi_slope, seconds, error).
    """
    setup = setup or ek_setup()
    check_calibrate_options(tol=tol, max_iter=max_iter, R=R, beta_guess=beta_guess)
    gridd, points, theta0 = _check_grid_inputs(
        grid, theta0, household, setup, home_share_gap, executor
    )
    folder = prepare_output(out_dir, "calibration-grid", what="calibration grid", update=True)
    common = _common_inputs(
        theta0,
        targets,
        labor,
        wages,
        R=R,
        beta_guess=beta_guess,
        tol=tol,
        max_iter=max_iter,
        home_share_gap=home_share_gap,
        gap_country=gap_country,
    )
    tasks = _grid_tasks(points, gridd, setup, common)
    with folder.session():
        rows = _finished_points(folder.path, tasks, retry_failed)
        todo = [tk for tk in tasks if tk["name"] not in rows]
        folder.claim(*(f"points/{tk['name']}/" for tk in todo))
        total = len(tasks)
        _write_grid_summary(folder, tasks, rows, gridd)
        if progress:
            for r in rows.values():
                progress(len(rows), total, r)
        if rows:
            log.info("calibration grid: %d of %d points already done", len(rows), total)

        def finished(row):
            rows[row["name"]] = row
            _write_grid_summary(folder, tasks, rows, gridd)
            if progress:
                progress(len(rows), total, row)

        if todo and executor == "serial":
            for tk in todo:
                finished(_grid_point(tk, str(folder.path)))
        elif todo:
            _run_on_dask(todo, folder.path, finished, scheduler, workers, processes)
        return _write_grid_summary(folder, tasks, rows, gridd)


def _common_inputs(
    theta0, targets, labor, wages, *, R, beta_guess, tol, max_iter, home_share_gap, gap_country
) -> dict:
    """The inputs every point shares, as plain lists and numbers (a task's payload and part
    of its fingerprint); ``"calibrate"`` holds the options of
    :func:`hatrade.calibration.calibrate.calibrate`."""
    return {
        "theta0": theta0.tolist(),
        "targets": None if targets is None else np.asarray(targets, float).tolist(),
        "labor": None if labor is None else np.asarray(labor, float).tolist(),
        "wages": None if wages is None else np.asarray(wages, float).tolist(),
        "calibrate": {
            "R": float(R),
            "beta_guess": float(beta_guess),
            "tol": float(tol),
            "max_iter": int(max_iter),
            "home_share_gap": home_share_gap,
            "gap_country": gap_country,
        },
    }


def _run_on_dask(todo, out: Path, finished, scheduler, workers, processes: bool) -> None:
    """Run the points ``todo`` as tasks on a Dask client (:func:`hatrade.io.tasks.dask_client`),
    handing each finished row (a failed row for a task that raised) to ``finished``."""
    with dask_client(scheduler, workers, len(todo), processes=processes) as client:
        futs = [
            client.submit(
                _grid_point,
                tk,
                str(out.absolute()),
                pure=False,
                key=f"hatrade-grid-{tk['name']}-{tk['fingerprint']}",
            )
            for tk in todo
        ]
        for row in completed_rows(
            futs,
            todo,
            lambda tk, error: {
                "name": tk["name"],
                "fingerprint": tk["fingerprint"],
                "code_revision": tk["code_revision"],
                **tk["point"],
                "status": _STATUS_FAILED,
                "error": error,
            },
        ):
            finished(row)


def _grid_table(tasks, rows, gridd) -> pd.DataFrame:
    cols = [
        "name",
        *gridd,
        "status",
        "converged",
        "iterations",
        "residual",
        "beta",
        "psi_slope",
        "equilibrium_solves",
        "seconds",
        "resumed",
        "error",
    ]
    recs = []
    for tk in tasks:
        r = rows.get(tk["name"])
        if r is None:
            recs.append({"name": tk["name"], **tk["point"], "status": "pending"})
        else:
            recs.append({**tk["point"], "resumed": False, **{c: r.get(c) for c in cols if c in r}})
    return pd.DataFrame(recs, columns=cols)
