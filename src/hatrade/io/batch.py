r"""Batch runs: many counterfactuals at once, through a Dask client.

A batch file (:mod:`hatrade.io.batch_spec`, read by :func:`load_batch`) lists runs; each
run is a counterfactual of a baseline world, optionally with other household parameters,
and the welfare of some countries.

Execution (:func:`run_batch`): the baseline equilibria (one per distinct calibration /
household) are solved once and shared; each run is a task on a Dask cluster (a
``LocalCluster`` by default, or ``scheduler="tcp://host:port"``). Each run's results are
written as soon as it finishes, to ``OUT/runs/<name>/`` (a counterfactual folder,
:func:`hatrade.io.results.save_counterfactual`, swapped in whole), and
``OUT/batch_summary.json`` / ``.csv`` are rewritten after every run. The output folder
follows :mod:`hatrade.io.folders` (kind ``"batch"``). A run whose equilibrium fails is
recorded as failed, with its diagnostics, and the others go on. Re-running the same batch
into the same folder resumes: finished runs (same specification, computed by the same
code revision, :func:`hatrade.io.fingerprint.code_revision`) are skipped; failed ones are
retried only with ``retry_failed``.

Dask is optional (``pip install 'dask[distributed]'``); without it ``executor="serial"``
runs everything in this process.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from hatrade.core.params import ParameterError
from hatrade.io.atomic import atomic_dir, write_json
from hatrade.io.batch_spec import (
    BatchError,
    BatchRun,
    BatchSpec,
    base_config,
    load_batch,
    loads_batch,
    parse_batch,
    plain_baseline_key,
)
from hatrade.io.batch_transition import solve_transition_run
from hatrade.io.fingerprint import code_revision
from hatrade.io.folders import OutputFolder, prepare_output
from hatrade.io.tasks import completed_rows, dask_available, dask_client, dask_missing

__all__ = [
    "BatchRun",
    "BatchSpec",
    "BatchError",
    "load_batch",
    "loads_batch",
    "parse_batch",
    "run_batch",
    "execute_run",
    "dask_available",
    "RUN_STATUS_OK",
    "RUN_STATUS_FAILED",
]

log = logging.getLogger(__name__)

RUN_STATUS_OK = "ok"
RUN_STATUS_FAILED = "failed"


def _need_dask():
    if not dask_available():
        raise BatchError(dask_missing("batch runs on a Dask cluster"))


# ----------------------------------------------------------------------------- running


def _solve_baseline(spec_dict: dict, key: str, base=None):
    """Solve one baseline (a task). ``key`` is BatchRun.baseline_key(); ``base`` the solved
    plain baseline (no household overrides) used as the starting point of the others."""
    from hatrade.solve.equilibrium import solve_equilibrium

    k = json.loads(key)
    cal = k["calibration"] or spec_dict["calibration"]
    world, hh, kw, cfg = base_config(cal, spec_dict["config_path"])
    kw = dict(kw)
    kw["tol"] = spec_dict["options"]["tol"]
    kw["max_iter"] = spec_dict["options"]["max_iter"]
    over = {kk: (int(v) if kk == "n_a" else float(v)) for kk, v in k["household"].items()}
    if not over:
        return solve_equilibrium(world, hh, **kw)
    # a new household, starting from the unchanged baseline's prices
    if base is None:
        base = solve_equilibrium(world, hh, **kw)
    if isinstance(base, BaseException):
        raise base
    hh2 = hh.replace(beta=None, **over)
    start = dict(
        wages=base.prices.w, tol=kw["tol"], max_iter=kw["max_iter"], income=kw.get("income")
    )
    start = {a: b for a, b in start.items() if b is not None}
    if k["recalibrate_beta"]:
        return solve_equilibrium(
            world,
            hh2,
            solve_for="beta",
            R=float(base.prices.R[0]),
            beta_guess=float(base.beta),
            **start,
        )
    return solve_equilibrium(
        world,
        hh2.replace(beta=float(base.beta)),
        solve_for="R",
        R_guess=float(base.prices.R[0]),
        **start,
    )


def _run_row(run: BatchRun, spec_dict: dict) -> dict:
    return {
        "name": run.name,
        "status": RUN_STATUS_FAILED,
        "fingerprint": spec_dict["fp"][run.name],
        "code_revision": spec_dict["code_revision"],
        "scenario": run.scenario.to_dict(),
        "household": run.household,
        "recalibrate_beta": run.recalibrate_beta,
        "calibration": run.calibration,
        **({"transition": _transition_spec(run.transition)} if run.transition else {}),
    }


def _transition_spec(t: dict) -> dict:
    """A transition run's fields for its row (the path table as its number of rows)."""
    return {**{k: v for k, v in t.items() if k != "table"}, "table_rows": len(t["table"] or [])}


def execute_run(run: BatchRun, baseline, spec_dict: dict, out_dir: str) -> dict:
    """Solve one run and write its folder ``OUT/runs/<name>/`` (a counterfactual folder,
    :func:`hatrade.io.results.save_counterfactual`, or for a transition run a transition
    folder, :func:`hatrade.io.transition_results.save_transition`; swapped in whole);
    returns its summary row. Never raises for a failed equilibrium: the failure is recorded
    with its diagnostics (the folder then holds only ``summary.json``)."""
    from hatrade.core.errors import EquilibriumError

    t0 = time.perf_counter()
    folder = Path(out_dir) / "runs" / run.name
    row = _run_row(run, spec_dict)
    try:
        if isinstance(baseline, BaseException):
            raise baseline
        solve = _transition_run if run.transition else _counterfactual_run
        row.update(solve(run, baseline, spec_dict["options"], folder, row, t0))
        return row
    except (EquilibriumError, ParameterError, FloatingPointError, np.linalg.LinAlgError) as err:
        row.update(
            status=RUN_STATUS_FAILED,
            error=f"{type(err).__name__}: {err}",
            seconds=time.perf_counter() - t0,
        )
    except Exception as err:  # unexpected: record with the traceback, keep the batch going
        row.update(
            status=RUN_STATUS_FAILED,
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(),
            seconds=time.perf_counter() - t0,
        )
    log.warning("run %s failed: %s", run.name, row.get("error"))
    with atomic_dir(folder) as tmp:
        write_json(tmp / "summary.json", {"kind": "batch-run", **row}, indent=2)
    return row


def _counterfactual_run(run: BatchRun, baseline, opts: dict, folder: Path, row: dict, t0) -> dict:
    """A counterfactual run: solve, write its folder; the row's updates."""
    import pandas as pd

    from hatrade.analysis.counterfactual import run_counterfactual
    from hatrade.io.results import counterfactual_summary, save_counterfactual
    from hatrade.welfare.summary import country_welfare

    cf = run_counterfactual(  # warn=False: load_batch warned about d < 1 already
        baseline, run.scenario, tol=opts["tol"], max_iter=opts["max_iter"], warn=False
    )
    wel, tables = {}, []
    for c in run.welfare:
        cw = country_welfare(cf, country=c, verify=opts["verify_ev"], n_nodes=opts["n_nodes"])
        wel[c] = cw.summary
        tables.append(cw.table)
    summary = counterfactual_summary(cf, wel, **{**row, "kind": "batch-run"})
    summary.update(
        beta=float(baseline.beta), status=RUN_STATUS_OK, seconds=time.perf_counter() - t0
    )
    with atomic_dir(folder) as tmp:
        save_counterfactual(tmp, cf, pd.concat(tables) if tables else None, summary)
    R = summary["R"]
    return dict(
        status=RUN_STATUS_OK,
        seconds=summary["seconds"],
        R_change_percent=R.get("change_percent") if "change_percent" in R else None,
        newton_iterations=summary["convergence"]["newton_iterations"],
        mean_gain_percent={c: w["mean_gain_percent"] for c, w in wel.items()},
        acr_percent={c: w["acr_percent"] for c, w in wel.items()},
    )


def _transition_run(run: BatchRun, baseline, opts: dict, folder: Path, row: dict, t0) -> dict:
    """A transition run (:mod:`hatrade.io.batch_transition`): solve, write its folder; the
    row's updates (``newton_iterations``: the path's iterations; ``mean_gain_percent``:
    the transition's mean gain at t = 0)."""
    from hatrade.io.transition_results import save_transition, transition_summary

    tr, wel, table = solve_transition_run(run, baseline, opts)
    summary = transition_summary(tr, wel, **{**row, "kind": "batch-run"})
    summary.update(status=RUN_STATUS_OK, seconds=time.perf_counter() - t0)
    with atomic_dir(folder) as tmp:
        save_transition(tmp, tr.paths, table, summary)
    return dict(status=RUN_STATUS_OK, seconds=summary["seconds"], **_transition_numbers(summary))


def _transition_numbers(s: dict) -> dict:
    """The batch summary's numbers of a transition run's summary."""
    R_old, R_new = s.get("R_old") or {}, s.get("R_new") or {}
    c0 = next(iter(R_old), None)
    R_change = 100 * (R_new[c0] / R_old[c0] - 1) if c0 in R_new and R_old.get(c0) else None
    return dict(
        R_change_percent=R_change,
        newton_iterations=(s.get("convergence") or {}).get("iterations"),
        mean_gain_percent={
            c: w["transition"]["mean_gain_percent"] for c, w in (s.get("welfare") or {}).items()
        },
        acr_percent={},
    )


def _resumed_row(s: dict) -> dict:
    """The summary row of a finished run, from its ``summary.json``."""
    row = {
        k: s.get(k) for k in ("name", "status", "fingerprint", "code_revision", "error", "seconds")
    }
    if s.get("status") == RUN_STATUS_OK and s.get("transition"):
        row.update(_transition_numbers(s))
    elif s.get("status") == RUN_STATUS_OK:
        by_country = s.get("by_country") or {}
        row["mean_gain_percent"] = {c: w["mean_gain_percent"] for c, w in by_country.items()}
        row["acr_percent"] = {c: w["acr_percent"] for c, w in by_country.items()}
        R = s.get("R") or {}
        row["R_change_percent"] = R.get("change_percent") if isinstance(R, dict) else None
        row["newton_iterations"] = (s.get("convergence") or {}).get("newton_iterations")
    row["resumed"] = True
    return row


def _done_rows(out: Path, spec: BatchSpec, fps: dict, retry_failed: bool) -> dict:
    """Runs already finished in ``out`` with the same specification, computed by this
    code revision: {name: row}."""
    done = {}
    revision = code_revision()
    for run in spec.runs:
        p = out / "runs" / run.name / "summary.json"
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if s.get("code_revision") != revision:
            log.info(
                "run %s was computed by other code (revision %s); it is re-run",
                run.name,
                str(s.get("code_revision"))[:12],
            )
            continue
        if s.get("fingerprint") != fps[run.name]:
            log.info("run %s: specification changed since the last batch; it is re-run", run.name)
            continue
        if s.get("status") == RUN_STATUS_FAILED and retry_failed:
            continue
        done[run.name] = _resumed_row(s)
    return done


def _write_batch_summary(folder: OutputFolder, spec: BatchSpec, rows: dict, started: str):
    """Rewrite ``batch_summary.json`` and ``batch_summary.csv``; returns the summary."""
    import pandas as pd

    ordered = [rows[r.name] for r in spec.runs if r.name in rows]
    n_ok = sum(r["status"] == RUN_STATUS_OK for r in ordered)
    n_fail = sum(r["status"] == RUN_STATUS_FAILED for r in ordered)
    summary = {
        "kind": "batch",
        "name": spec.name,
        "source": spec.source,
        "started": started,
        "runs_total": len(spec.runs),
        "runs_done": len(ordered),
        "runs_ok": n_ok,
        "runs_failed": n_fail,
        "pending": [r.name for r in spec.runs if r.name not in rows],
        "runs": ordered,
    }
    folder.write_json("batch_summary.json", summary, indent=2)
    flat = []
    for r in ordered:
        base = {
            "name": r["name"],
            "status": r["status"],
            "seconds": r.get("seconds"),
            "R_change_percent": r.get("R_change_percent"),
            "newton_iterations": r.get("newton_iterations"),
            "error": r.get("error"),
        }
        gains = r.get("mean_gain_percent") or {}
        acr = r.get("acr_percent") or {}
        if gains:
            for c in gains:
                flat.append(
                    {**base, "country": c, "mean_gain_percent": gains[c], "acr_percent": acr.get(c)}
                )
        else:
            flat.append({**base, "country": None, "mean_gain_percent": None, "acr_percent": None})
    cols = [
        "name",
        "status",
        "country",
        "mean_gain_percent",
        "acr_percent",
        "R_change_percent",
        "newton_iterations",
        "seconds",
        "error",
    ]
    folder.write_text(
        "batch_summary.csv",
        pd.DataFrame(flat, columns=cols).to_csv(index=False, float_format="%.10g"),
    )
    return summary


def _baseline_task(spec_dict, key, base=None):
    try:
        return _solve_baseline(spec_dict, key, base)
    except Exception as err:  # passed on to the runs, which record it as their failure
        log.warning("baseline %s failed: %s", key, err)
        return err


def run_batch(
    spec: BatchSpec,
    out_dir,
    *,
    scheduler: str | None = None,
    executor: str = "dask",
    workers: int | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Run every run of ``spec`` (resuming in ``out_dir``); returns the batch summary.

    Parameters
    ----------
    spec : BatchSpec (from :func:`load_batch`)
    out_dir : folder of the batch (created; previous results there are resumed). The
        output-folder policy is :mod:`hatrade.io.folders` (kind ``"batch"``): a new or empty
        folder, or a previous batch folder.
    scheduler : address of a Dask scheduler (``tcp://host:8786``); None: a LocalCluster.
    executor : "dask" or "serial" (in this process, no Dask needed).
    workers : LocalCluster worker processes (default: options.workers or cpu_count // 2).
    retry_failed : re-run runs recorded as failed.
    progress : callable(done, total, row) after each finished run.
    """
    import datetime as _dt

    if executor not in ("dask", "serial"):
        raise BatchError(f"executor = {executor!r} is not allowed: use 'dask' or 'serial'.")
    if executor == "dask":
        _need_dask()
    folder = prepare_output(out_dir, "batch", what="batch", update=True)
    out = folder.path
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    fps = {r.name: r.fingerprint(spec) for r in spec.runs}
    spec_dict = {
        "calibration": spec.calibration,
        "config_path": spec.config_path,
        "options": dict(spec.options),
        "fp": fps,
        "code_revision": code_revision(),
    }
    with folder.session():
        rows = _done_rows(out, spec, fps, retry_failed)
        if rows:
            log.info(
                "batch %s: %d of %d runs already done; resuming",
                spec.name,
                len(rows),
                len(spec.runs),
            )
        todo = [r for r in spec.runs if r.name not in rows]
        folder.claim(*(f"runs/{r.name}/" for r in todo))
        _write_batch_summary(folder, spec, rows, started)
        total = len(spec.runs)
        if progress:
            for r in rows.values():
                progress(len(rows), total, r)

        def finish(row):
            rows[row["name"]] = row
            _write_batch_summary(folder, spec, rows, started)
            if progress:
                progress(len(rows), total, row)

        if todo and executor == "serial":
            _run_serial(todo, spec_dict, out, finish)
        elif todo:
            _run_dask(
                todo, spec_dict, out, finish, scheduler, workers or spec.options.get("workers")
            )
        return _write_batch_summary(folder, spec, rows, started)


def _run_serial(todo: list, spec_dict: dict, out: Path, finish: Callable[[dict], None]) -> None:
    """The runs one after the other in this process, each baseline solved once."""
    bases: dict = {}

    def get(k):
        if k not in bases:
            pk = plain_baseline_key(k)
            bases[k] = (
                _baseline_task(spec_dict, k) if k == pk else _baseline_task(spec_dict, k, get(pk))
            )
        return bases[k]

    for r in todo:
        finish(execute_run(r, get(r.baseline_key()), spec_dict, str(out)))


def _run_dask(
    todo: list,
    spec_dict: dict,
    out: Path,
    finish: Callable[[dict], None],
    scheduler: str | None,
    workers: int | None,
) -> None:
    """The runs as tasks on a Dask client; the baselines are tasks too (a household
    variant starts from its plain baseline)."""
    fps = spec_dict["fp"]
    keys = sorted({r.baseline_key() for r in todo})
    plain = sorted({plain_baseline_key(k) for k in keys if k != plain_baseline_key(k)} - set(keys))
    with dask_client(scheduler, workers, len(todo), error=BatchError) as client:
        base_f = {
            k: client.submit(_baseline_task, spec_dict, k, pure=False)
            for k in keys
            if k == plain_baseline_key(k)
        }
        base_f.update({k: client.submit(_baseline_task, spec_dict, k, pure=False) for k in plain})
        base_f.update(
            {
                k: client.submit(
                    _baseline_task, spec_dict, k, base_f[plain_baseline_key(k)], pure=False
                )
                for k in keys
                if k != plain_baseline_key(k)
            }
        )
        futs = [
            client.submit(
                execute_run,
                r,
                base_f[r.baseline_key()],
                spec_dict,
                str(out.absolute()),
                pure=False,
                key=f"hatrade-run-{r.name}-{fps[r.name]}",
            )
            for r in todo
        ]
        for row in completed_rows(
            futs,
            todo,
            lambda r, error: {
                "name": r.name,
                "status": RUN_STATUS_FAILED,
                "fingerprint": fps[r.name],
                "code_revision": spec_dict["code_revision"],
                "error": error,
            },
        ):
            finish(row)
