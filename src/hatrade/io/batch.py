r"""Batch runs: many counterfactuals at once, through a Dask client.

A batch file (TOML) lists runs; each run is a counterfactual :class:`~hatrade.analysis.counterfactual.Scenario`
of a baseline world, optionally with other household parameters (a new baseline, with beta
recalibrated or held), and the welfare of some countries::

    name = "unilateral-cuts"
    calibration = "baseline"      # a shipped calibration, or:  config = "world.toml"
                                  # (a solve configuration, path relative to this file)

    [options]                     # all optional
    welfare = "importer"          # "importer" (default), "all", "none" or a list of codes
    verify_ev = false             # evaluate every state's EV residual (slow, see welfare.py)
    n_nodes = 8                   # lambda nodes of the batched EV solve
    tol = 1e-10                   # equilibrium tolerance
    max_iter = 30                 # Newton iterations per equilibrium

    [defaults]                    # merged into every run
    trade_cost_change = -0.10
    allow_d_below_one = true

    [[runs]]                      # explicit runs: Scenario keys, plus
    name = "USA-cut"              #   household = {sigma_eps = 0.25, ...}
    importer = "USA"              #   recalibrate_beta = true  (solve beta at the baseline R)
                                  #   calibration = "log"      (per-run shipped calibration)

    [[sweep]]                     # generated runs, one per value
    over = "importer"             # importer | exporter | a household parameter
    values = "all"                # "all" countries, or a list
    # over = "sigma_eps"; values = [0.25, 0.33, 0.40]; recalibrate_beta = true

Everything is checked when the file is read (:func:`load_batch`), before any solve: unknown
keys, unknown countries, changes that make :math:`d_{ij} < 1` (unless allowed) or TFP
non-positive, invalid household parameters, duplicate run names. The error names the entry.

Execution (:func:`run_batch`): the baseline equilibria (one per distinct calibration /
household) are solved once and shared; each run is a task on a Dask cluster (a
``LocalCluster`` by default, or ``scheduler="tcp://host:port"``). Each run's results are
written atomically as soon as it finishes, to ``OUT/runs/<name>/`` (``summary.json``,
``welfare.csv``, ``changes.csv``), and ``OUT/batch_summary.json`` / ``.csv`` are
rewritten after every run. A run whose equilibrium fails is recorded as failed, with its
diagnostics, and the others go on. Re-running the same batch into the same folder resumes:
finished runs (same specification) are skipped; failed ones are retried only with
``retry_failed``.

Dask is optional (``pip install 'dask[distributed]'``); without it ``executor="serial"``
runs everything in this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hatrade.io.atomic import jsonable
from hatrade.io.validate import (BOOLEAN, FRACTION, check_keys, check_table, integer, loads_toml,
                        option_problems)
from hatrade.analysis.counterfactual import Scenario, _SCENARIO_KEYS, apply_scenario
from hatrade.core.params import ParameterError

__all__ = ["BatchRun", "BatchSpec", "BatchError", "load_batch", "loads_batch", "run_batch",
           "execute_run", "dask_available", "RUN_STATUS_OK", "RUN_STATUS_FAILED"]

log = logging.getLogger(__name__)

RUN_STATUS_OK = "ok"
RUN_STATUS_FAILED = "failed"

_TOP = ("name", "calibration", "config", "options", "defaults", "runs", "sweep")
_OPTIONS = ("welfare", "verify_ev", "n_nodes", "tol", "max_iter", "workers")
#: Typed checks of [options] (welfare is checked against the world's countries).
_OPTION_RULES = {"verify_ev": BOOLEAN, "n_nodes": integer(0), "max_iter": integer(1),
                 "tol": FRACTION, "workers": integer(1).or_none()}
_RUN_EXTRA = ("household", "recalibrate_beta", "calibration")
_HOUSEHOLD_KEYS = ("gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class BatchError(ParameterError):
    """A batch file is malformed, or describes an invalid run (the message names it)."""


def dask_available() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _need_dask():
    if not dask_available():
        raise BatchError("batch runs on a Dask cluster need dask.distributed, which is not "
                         "installed: pip install 'dask[distributed]' (or the hatrade extra "
                         "'batch'), or run serially (executor='serial', CLI --serial).")


def completed_rows(futures, items, failed_row):
    """The result rows of Dask ``futures`` (one per ``items`` entry), in completion order.

    A future that raises (worker died, unpicklable result, ...) gives
    ``failed_row(item, "<ExceptionType>: <message>")`` instead, so one failure never stops
    the others.
    """
    from dask.distributed import as_completed

    by_key = {f.key: it for f, it in zip(futures, items)}
    for fut in as_completed(futures):
        item = by_key[fut.key]
        try:
            row = fut.result()
        except Exception as err:  # worker died, unpicklable result, ...
            row = failed_row(item, f"{type(err).__name__}: {err}")
        yield row


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, n_tasks: int = 1, *,
                processes: bool = True, error: type[Exception] = ParameterError):
    """A Dask client for independent tasks, closed (with its cluster) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); None starts a
        ``LocalCluster`` of ``workers`` single-threaded workers (default: half the cores),
        never more than ``n_tasks``.
    processes : bool
        Local workers as processes (True) or threads.
    error : exception class raised when the scheduler cannot be reached.
    """
    _need_dask()
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        n = max(1, min(int(workers or max(1, (os.cpu_count() or 2) // 2)), int(n_tasks)))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise error(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _key(calibration, household, recalibrate_beta) -> str:
    return json.dumps({"calibration": calibration, "household": household,
                       "recalibrate_beta": recalibrate_beta}, sort_keys=True)


def _plain_key(key: str) -> str:
    return _key(json.loads(key)["calibration"], {}, False)


@dataclass(frozen=True)
class BatchRun:
    """One run: a scenario, household overrides and the countries whose welfare to compute."""

    name: str
    scenario: Scenario
    household: dict = field(default_factory=dict)
    recalibrate_beta: bool = False
    calibration: str | None = None
    welfare: tuple = ()

    def baseline_key(self) -> str:
        return _key(self.calibration, self.household,
                    self.recalibrate_beta if self.household else False)

    def fingerprint(self, spec: "BatchSpec") -> str:
        d = {"scenario": self.scenario.to_dict(), "household": self.household,
             "recalibrate_beta": self.recalibrate_beta, "calibration": self.calibration,
             "welfare": list(self.welfare), "source": spec.source_fingerprint,
             "options": {k: spec.options[k] for k in ("verify_ev", "n_nodes", "tol")}}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BatchSpec:
    """A validated batch: the base world source, options and runs."""

    name: str
    runs: tuple
    calibration: str | None = None
    config_path: str | None = None
    options: dict = field(default_factory=dict)
    source: str = "<string>"

    @property
    def source_fingerprint(self) -> str:
        if self.config_path is not None:
            try:
                text = Path(self.config_path).read_bytes()
            except OSError:
                text = self.config_path.encode()
            return hashlib.sha256(text).hexdigest()[:16]
        return f"calibration:{self.calibration}"


# ----------------------------------------------------------------------------- reading

def _base_config(calibration, config_path):
    """(world, household, solve kwargs) of the base world; cheap (no solve)."""
    if config_path is not None:
        from hatrade.io.config import load_config
        cfg = load_config(config_path)
        kw = cfg.solve_kwargs()
        return cfg.world, cfg.household, kw, cfg
    from hatrade.io.config import calibration_config
    cfg = calibration_config(calibration)
    return cfg.world, cfg.household, cfg.solve_kwargs(), cfg


def loads_batch(text: str, source: str = "<string>", base_dir: Path | None = None) -> BatchSpec:
    """Parse and validate a batch file's text (see the module docstring)."""
    return parse_batch(loads_toml(text, source, BatchError), source=source, base_dir=base_dir)


def load_batch(path) -> BatchSpec:
    """Read and validate a batch file; every error names the file and the entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BatchError(f"cannot read batch file {path}: {err.strerror or err}") from None
    return loads_batch(text, source=str(path), base_dir=path.parent)


def parse_batch(raw: dict, source: str = "<dict>", base_dir: Path | None = None) -> BatchSpec:
    from hatrade.data import CALIBRATIONS

    errors: list[str] = []
    unknown = sorted(set(raw) - set(_TOP))
    if unknown:
        raise BatchError(f"{source}: unknown top-level key(s) {unknown}; allowed: "
                         f"{', '.join(_TOP)}.")
    name = str(raw.get("name", Path(source).stem if source != "<string>" else "batch"))
    if not _NAME_RE.match(name):
        raise BatchError(f"{source}: name = {name!r} is not allowed: use letters, digits, "
                         "'.', '_', '+' or '-'.")
    cal, cfg_path = raw.get("calibration"), raw.get("config")
    if cal is not None and cfg_path is not None:
        raise BatchError(f"{source}: give either calibration or config, not both.")
    if cfg_path is None and cal is None:
        cal = "baseline"
    if cal is not None and cal not in CALIBRATIONS:
        raise BatchError(f"{source}: calibration = {cal!r} is not allowed; allowed: "
                         f"{', '.join(CALIBRATIONS)}.")
    if cfg_path is not None:
        p = Path(cfg_path)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        cfg_path = str(p)
    try:
        world, household, _, _ = _base_config(cal, cfg_path)
    except ParameterError as err:
        raise BatchError(f"{source}: the base world is invalid: {err}") from None

    opts = {"welfare": "importer", "verify_ev": False, "n_nodes": 8, "tol": 1e-10,
            "max_iter": 30, "workers": None}
    opts.update(check_table(raw.get("options"), _OPTIONS, f"{source}: [options]", BatchError))
    errors += [f"[options] {msg}" for msg in option_problems(opts, _OPTION_RULES)]
    wf = opts["welfare"]
    if isinstance(wf, str):
        if wf not in ("importer", "all", "none"):
            errors.append(f"[options] welfare = {wf!r}: use 'importer', 'all', 'none' or a "
                          "list of country codes")
    elif isinstance(wf, list):
        for c in wf:
            if c not in world.countries:
                errors.append(f"[options] welfare: unknown country {c!r} (allowed: "
                              f"{', '.join(world.countries)})")
    else:
        errors.append(f"[options] welfare = {wf!r}: use 'importer', 'all', 'none' or a list")

    defaults = raw.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        raise BatchError(f"{source}: [defaults] must be a table.")
    entries: list[tuple[str, dict]] = []
    runs_raw = raw.get("runs", []) or []
    if not isinstance(runs_raw, list):
        raise BatchError(f"{source}: runs must be an array of tables ([[runs]]).")
    for k, r in enumerate(runs_raw):
        if not isinstance(r, dict):
            errors.append(f"runs[{k}]: must be a table")
            continue
        entries.append((f"runs[{k}]" + (f" ({r['name']})" if "name" in r else ""),
                        {**defaults, **r}))
    sweeps = raw.get("sweep", []) or []
    if isinstance(sweeps, dict):
        sweeps = [sweeps]
    for k, sw in enumerate(sweeps):
        where = f"sweep[{k}]"
        if not isinstance(sw, dict) or "over" not in sw or "values" not in sw:
            errors.append(f"{where}: needs 'over' and 'values'")
            continue
        over, values = sw["over"], sw["values"]
        rest = {kk: v for kk, v in sw.items() if kk not in ("over", "values")}
        if over in ("importer", "exporter"):
            vals = list(world.countries) if values == "all" else values
            if not isinstance(vals, list):
                errors.append(f"{where}: values must be 'all' or a list of country codes")
                continue
            for c in vals:
                entries.append((f"{where} ({over} = {c})",
                                {**defaults, **rest, over: c,
                                 "name": f"{rest['name']}-{c}" if "name" in rest else str(c)}))
        elif over in _HOUSEHOLD_KEYS:
            if not isinstance(values, list) or not values:
                errors.append(f"{where}: values must be a non-empty list of numbers")
                continue
            for v in values:
                hhd = dict(defaults.get("household", {}) or {})
                hhd.update(rest.get("household", {}) or {})
                hhd[over] = v
                entries.append((f"{where} ({over} = {v})",
                                {**defaults, **rest, "household": hhd,
                                 "name": f"{rest.get('name', over)}-{v}"}))
        else:
            errors.append(f"{where}: over = {over!r} is not allowed; use importer, exporter or "
                          f"one of {', '.join(_HOUSEHOLD_KEYS)}")
    if not entries and not errors:
        errors.append("no runs: add [[runs]] tables or a [[sweep]]")

    runs, names = [], set()
    for where, d in entries:
        try:
            runs.append(_parse_run(where, d, world, household, cal, opts))
        except ParameterError as err:
            errors.append(str(err))
            continue
        if runs[-1].name in names:
            errors.append(f"{where}: duplicate run name {runs[-1].name!r}")
        names.add(runs[-1].name)
    if errors:
        raise BatchError(f"{source}: {len(errors)} error(s) in the batch file (no run was "
                         "started):\n  - " + "\n  - ".join(errors))
    return BatchSpec(name=name, runs=tuple(runs), calibration=cal, config_path=cfg_path,
                     options=opts, source=source)


def _parse_run(where, d, world, household, base_cal, opts) -> BatchRun:
    from hatrade.data import CALIBRATIONS

    d = dict(d)
    if "name" not in d:
        sc = d.get("importer") or d.get("exporter") or ("global" if d.get("all_pairs") else None)
        if sc is None:
            raise ParameterError(f"{where}: give the run a name")
        d["name"] = str(sc)
    name = str(d["name"])
    if not _NAME_RE.match(name):
        raise ParameterError(f"{where}: name = {name!r} is not allowed: use letters, digits, "
                             "'.', '_', '+' or '-' (it names the output folder)")
    hh_over = d.pop("household", {}) or {}
    recal = d.pop("recalibrate_beta", False)
    cal = d.pop("calibration", None)
    if not isinstance(recal, bool):
        raise ParameterError(f"{where}: recalibrate_beta = {recal!r}: must be true or false")
    if not isinstance(hh_over, dict):
        raise ParameterError(f"{where}: household must be a table of parameters")
    check_keys(hh_over, _HOUSEHOLD_KEYS, f"{where}: household", ParameterError, end="")
    if cal is not None:
        if base_cal is None:
            raise ParameterError(f"{where}: calibration per run needs a batch on a shipped "
                                 "calibration (not config)")
        if cal not in CALIBRATIONS:
            raise ParameterError(f"{where}: calibration = {cal!r} is not allowed; allowed: "
                                 f"{', '.join(CALIBRATIONS)}")
    unknown = sorted(set(d) - set(_SCENARIO_KEYS))
    if unknown:
        raise ParameterError(f"{where}: unknown key(s) {unknown}; allowed: "
                             f"{', '.join(_SCENARIO_KEYS + _RUN_EXTRA)}")
    scenario = Scenario.from_dict(d, where=where)
    # validate the change on the world (countries, d >= 1, TFP > 0)
    try:
        apply_scenario(world, scenario)
    except ParameterError as err:
        raise ParameterError(f"{where}: {err}") from None
    try:
        household.replace(beta=None, **{k: (int(v) if k == "n_a" else float(v))
                                         for k, v in hh_over.items()})
    except (ParameterError, TypeError, ValueError) as err:
        raise ParameterError(f"{where}: household: {err}") from None
    wf = opts["welfare"]
    if wf == "importer":
        welfare = tuple(c for c in (scenario.importer,) if c)
        if not welfare and scenario.all_pairs:
            welfare = tuple(world.countries)
        if not welfare and scenario.pairs:
            welfare = tuple(dict.fromkeys(p[0] for p in scenario.pairs))
    elif wf == "all":
        welfare = tuple(world.countries)
    elif wf == "none":
        welfare = ()
    else:
        welfare = tuple(wf)
    return BatchRun(name=name, scenario=scenario, household=dict(hh_over),
                    recalibrate_beta=recal, calibration=cal, welfare=welfare)


# ----------------------------------------------------------------------------- running

def _solve_baseline(spec_dict: dict, key: str, base=None):
    """Solve one baseline (a task). ``key`` is BatchRun.baseline_key(); ``base`` the solved
    plain baseline (no household overrides) used as the starting point of the others."""
    from hatrade.solve.equilibrium import solve_equilibrium

    k = json.loads(key)
    cal = k["calibration"] or spec_dict["calibration"]
    world, hh, kw, cfg = _base_config(cal, spec_dict["config_path"])
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
    start = dict(wages=base.prices.w, tol=kw["tol"], max_iter=kw["max_iter"],
                 income=kw.get("income"))
    start = {a: b for a, b in start.items() if b is not None}
    if k["recalibrate_beta"]:
        return solve_equilibrium(world, hh2, solve_for="beta", R=float(base.prices.R[0]),
                                 beta_guess=float(base.beta), **start)
    return solve_equilibrium(world, hh2.replace(beta=float(base.beta)), solve_for="R",
                             R_guess=float(base.prices.R[0]), **start)


def execute_run(run: BatchRun, baseline, spec_dict: dict, out_dir: str) -> dict:
    """Solve one run and write its folder; returns its summary row (never raises for a
    failed equilibrium: the failure is recorded with its diagnostics)."""
    from hatrade.analysis.counterfactual import run_counterfactual
    from hatrade.io.atomic import write_text
    from hatrade.welfare.ev import country_welfare
    from hatrade.core.errors import EquilibriumError

    t0 = time.perf_counter()
    folder = Path(out_dir) / "runs" / run.name
    row = {"name": run.name, "status": RUN_STATUS_FAILED, "fingerprint": spec_dict["fp"][run.name],
           "scenario": run.scenario.to_dict(), "household": run.household,
           "recalibrate_beta": run.recalibrate_beta, "calibration": run.calibration}
    try:
        if isinstance(baseline, BaseException):
            raise baseline
        opts = spec_dict["options"]
        cf = run_counterfactual(baseline, run.scenario, tol=opts["tol"],
                                max_iter=opts["max_iter"])
        summary = {"kind": "batch-run", **row, **cf.summary(), "beta": float(baseline.beta)}
        wel, tables = {}, []
        for c in run.welfare:
            cw = country_welfare(cf, country=c, verify=opts["verify_ev"], n_nodes=opts["n_nodes"])
            wel[c] = cw.summary
            tables.append(cw.table)
        summary["by_country"] = wel
        summary["status"] = RUN_STATUS_OK
        summary["seconds"] = time.perf_counter() - t0
        import pandas as pd
        if tables:
            write_text(folder / "welfare.csv",
                              pd.concat(tables).to_csv(index=False, float_format="%.17g"))
        write_text(folder / "changes.csv",
                          cf.changes().reset_index().to_csv(index=False, float_format="%.17g"))
        write_text(folder / "summary.json", json.dumps(jsonable(summary), indent=2))
        row.update(status=RUN_STATUS_OK, seconds=summary["seconds"],
                   R_change_percent=summary["R"].get("change_percent")
                   if isinstance(summary["R"], dict) and "change_percent" in summary["R"] else None,
                   newton_iterations=summary["convergence"]["newton_iterations"],
                   mean_gain_percent={c: w["mean_gain_percent"] for c, w in wel.items()},
                   acr_percent={c: w["acr_percent"] for c, w in wel.items()})
        return row
    except (EquilibriumError, ParameterError, FloatingPointError, np.linalg.LinAlgError) as err:
        row.update(status=RUN_STATUS_FAILED, error=f"{type(err).__name__}: {err}",
                   seconds=time.perf_counter() - t0)
    except Exception as err:  # unexpected: record with the traceback, keep the batch going
        row.update(status=RUN_STATUS_FAILED, error=f"{type(err).__name__}: {err}",
                   traceback=traceback.format_exc(), seconds=time.perf_counter() - t0)
    log.warning("run %s failed: %s", run.name, row.get("error"))
    write_text(folder / "summary.json", json.dumps(jsonable({"kind": "batch-run", **row}),
                                                          indent=2))
    return row


def _done_rows(out: Path, spec: BatchSpec, fps: dict, retry_failed: bool) -> dict:
    """Runs already finished in ``out`` with the same specification: {name: row}."""
    done = {}
    for run in spec.runs:
        p = out / "runs" / run.name / "summary.json"
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if s.get("fingerprint") != fps[run.name]:
            log.info("run %s: specification changed since the last batch; it is re-run", run.name)
            continue
        if s.get("status") == RUN_STATUS_FAILED and retry_failed:
            continue
        row = {k: s.get(k) for k in ("name", "status", "fingerprint", "error", "seconds")}
        if s.get("status") == RUN_STATUS_OK:
            row["mean_gain_percent"] = {c: w["mean_gain_percent"]
                                        for c, w in (s.get("by_country") or {}).items()}
            row["acr_percent"] = {c: w["acr_percent"] for c, w in (s.get("by_country") or {}).items()}
            R = s.get("R") or {}
            row["R_change_percent"] = R.get("change_percent") if isinstance(R, dict) else None
            row["newton_iterations"] = (s.get("convergence") or {}).get("newton_iterations")
        row["resumed"] = True
        done[run.name] = row
    return done


def _write_batch_summary(out: Path, spec: BatchSpec, rows: dict, started: str):
    import pandas as pd
    from hatrade.io.atomic import write_text

    ordered = [rows[r.name] for r in spec.runs if r.name in rows]
    n_ok = sum(r["status"] == RUN_STATUS_OK for r in ordered)
    n_fail = sum(r["status"] == RUN_STATUS_FAILED for r in ordered)
    summary = {"kind": "batch", "name": spec.name, "source": spec.source, "started": started,
               "runs_total": len(spec.runs), "runs_done": len(ordered), "runs_ok": n_ok,
               "runs_failed": n_fail, "pending": [r.name for r in spec.runs if r.name not in rows],
               "runs": ordered}
    write_text(out / "batch_summary.json", json.dumps(jsonable(summary), indent=2))
    flat = []
    for r in ordered:
        base = {"name": r["name"], "status": r["status"], "seconds": r.get("seconds"),
                "R_change_percent": r.get("R_change_percent"),
                "newton_iterations": r.get("newton_iterations"), "error": r.get("error")}
        gains = r.get("mean_gain_percent") or {}
        acr = r.get("acr_percent") or {}
        if gains:
            for c in gains:
                flat.append({**base, "country": c, "mean_gain_percent": gains[c],
                             "acr_percent": acr.get(c)})
        else:
            flat.append({**base, "country": None, "mean_gain_percent": None, "acr_percent": None})
    cols = ["name", "status", "country", "mean_gain_percent", "acr_percent", "R_change_percent",
            "newton_iterations", "seconds", "error"]
    write_text(out / "batch_summary.csv",
                      pd.DataFrame(flat, columns=cols).to_csv(index=False, float_format="%.10g"))
    return summary


def _baseline_task(spec_dict, key, base=None):
    try:
        return _solve_baseline(spec_dict, key, base)
    except Exception as err:  # passed on to the runs, which record it as their failure
        log.warning("baseline %s failed: %s", key, err)
        return err


def run_batch(spec: BatchSpec, out_dir, *, scheduler: str | None = None,
              executor: str = "dask", workers: int | None = None, retry_failed: bool = False,
              progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Run every run of ``spec`` (resuming in ``out_dir``); returns the batch summary.

    Parameters
    ----------
    spec : BatchSpec (from :func:`load_batch`)
    out_dir : folder of the batch (created; previous results there are resumed)
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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BatchError(f"output folder {out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / "batch_summary.json").exists():
        raise BatchError(f"output folder {out} holds other files (it is not a batch folder); "
                         "choose a new or empty folder.")
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    fps = {r.name: r.fingerprint(spec) for r in spec.runs}
    spec_dict = {"calibration": spec.calibration, "config_path": spec.config_path,
                 "options": dict(spec.options), "fp": fps}
    rows = _done_rows(out, spec, fps, retry_failed)
    if rows:
        log.info("batch %s: %d of %d runs already done; resuming", spec.name, len(rows),
                 len(spec.runs))
    todo = [r for r in spec.runs if r.name not in rows]
    _write_batch_summary(out, spec, rows, started)
    total = len(spec.runs)
    if progress:
        for r in rows.values():
            progress(len(rows), total, r)
    if not todo:
        return _write_batch_summary(out, spec, rows, started)
    keys = sorted({r.baseline_key() for r in todo})
    plain = sorted({_plain_key(k) for k in keys if k != _plain_key(k)} - set(keys))

    def finish(row):
        rows[row["name"]] = row
        _write_batch_summary(out, spec, rows, started)
        if progress:
            progress(len(rows), total, row)

    if executor == "serial":
        bases = {}

        def get(k):
            if k not in bases:
                pk = _plain_key(k)
                bases[k] = (_baseline_task(spec_dict, k) if k == pk
                            else _baseline_task(spec_dict, k, get(pk)))
            return bases[k]

        for r in todo:
            k = r.baseline_key()
            get(k)
            finish(execute_run(r, bases[k], spec_dict, str(out)))
        return _write_batch_summary(out, spec, rows, started)

    n_default = workers or spec.options.get("workers")
    with dask_client(scheduler, n_default, len(todo), error=BatchError) as client:
        base_f = {k: client.submit(_baseline_task, spec_dict, k, pure=False)
                  for k in keys if k == _plain_key(k)}
        base_f.update({k: client.submit(_baseline_task, spec_dict, k, pure=False)
                       for k in plain})
        base_f.update({k: client.submit(_baseline_task, spec_dict, k, base_f[_plain_key(k)],
                                        pure=False)
                       for k in keys if k != _plain_key(k)})
        futs = [client.submit(execute_run, r, base_f[r.baseline_key()], spec_dict, str(out.absolute()),
                              pure=False, key=f"hatrade-run-{r.name}-{fps[r.name]}")
                for r in todo]
        for row in completed_rows(futs, todo, lambda r, error: {
                "name": r.name, "status": RUN_STATUS_FAILED, "fingerprint": fps[r.name],
                "error": error}):
            finish(row)
    return _write_batch_summary(out, spec, rows, started)
