"""The last stage of ``hatrade replicate``: the report and the run's summary files.

:func:`write_outputs` writes, from the stages' results, ``OUT/reproduction.csv`` and
``OUT/reproduction.md`` (the published numbers next to ours, :mod:`hatrade.replicate.table`),
``OUT/figures/`` (every figure as PNG), ``OUT/report.html`` (self-contained,
:mod:`hatrade.replicate.report`) and ``OUT/replicate.json`` (setup, stage statuses and
times, all key numbers, the reproduction table, and what was computed or loaded).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hatrade.io.cache import Cache
from hatrade.replicate.compilation import jax_cache_dir
from hatrade.replicate.folders import KIND
from hatrade.replicate.report import StageResult, Table
from hatrade.replicate.setup import FULL_N_A, Setup
from hatrade.replicate.table import reproduction_table

__all__ = ["RunRecord", "write_outputs", "parameter_tables", "versions"]

log = logging.getLogger(__name__)

REPORT_TITLE = "Report (HTML, tables, figures)"

_CAPTION = (
    "Published: the paper's numbers (source given); ours: this run. Difference = "
    "ours − published; agrees: |difference| ≤ tolerance (half a unit of the last "
    "published digit, or the precision of the published prices; for the welfare "
    "numbers the paper gives as 'about', the tolerance of the tests)."
)


@dataclass
class RunRecord:
    """What the report stage needs from the run.

    Attributes
    ----------
    setup, out, cache : the run's setup, output folder and results cache.
    numbers : the key numbers.
    stages : the results of the stages that ran (the report stage not included).
    work : every cached result: stage, result, kind, outcome, seconds, key.
    started : start time (UTC, ISO format).
    t_start : :func:`time.perf_counter` at the start.
    """

    setup: Setup
    out: Path
    cache: Cache
    numbers: dict
    stages: list
    work: list
    started: str
    t_start: float


def versions() -> dict:
    """Versions of hatrade, Python and the main libraries."""
    import importlib.metadata as md

    from hatrade import __version__

    out = {"hatrade": __version__, "python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "pandas", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            pass
    return out


def parameter_tables(setup: Setup) -> list:
    """The report's parameter tables: households, run settings and countries."""
    rows = []
    fields = [
        "gamma",
        "sigma_eps",
        "psi_slope",
        "phi",
        "a_max",
        "n_a",
        "rho_perm",
        "var_perm",
        "n_perm",
        "var_iid",
        "n_iid",
    ]
    data = {"parameter": fields}
    for m in setup.models:
        d = m.household.to_dict()
        data[m.name] = [d.get(f) for f in fields]
    hh = pd.DataFrame(data)
    rows.append(Table("parameters-household", "Household parameters (beta is solved)", hh))
    run = pd.DataFrame(
        [
            ("countries", ", ".join(setup.models[0].world.countries)),
            ("world interest rate R (beta solved)", f"{setup.R}"),
            ("financial regime", setup.models[0].world.financial),
            ("home country (elasticities, households, welfare)", setup.home),
            ("counterfactual trade-cost change", f"{setup.trade_cost_change:+.0%}"),
            ("equilibrium tolerance (max relative excess demand)", f"{setup.tol:g}"),
            ("household tolerance", f"{setup.hh_tol:g}"),
            ("asset grid points", f"{setup.n_a}"),
            ("EV lambda nodes", f"{setup.resolved_ev_nodes()}"),
            ("planner weights", setup.planner_weights),
            ("MPC transfer", f"{setup.transfer:g}"),
            ("starting prices", "published equilibrium (data/calibration/*-prices.csv)"),
            (
                "paper's setup (published numbers apply)",
                "yes"
                if setup.paper and not setup.quick
                else "approximately (quick)"
                if setup.paper
                else "no",
            ),
        ],
        columns=["setting", "value"],
    )
    rows.append(Table("parameters-run", "Run settings", run))
    tfp = pd.DataFrame({"country": list(setup.models[0].world.countries)})
    for m in setup.models:
        tfp[f"TFP ({m.name})"] = m.world.tfp
        tfp[f"labor ({m.name})"] = m.world.labor
    rows.append(
        Table(
            "parameters-countries",
            "Country parameters (from the calibration vector and the labor data)",
            tfp,
            formats={c: ".5f" for c in tfp.columns if c != "country"},
        )
    )
    return rows


def _reproduction_report_table(setup: Setup, repro: pd.DataFrame) -> Table:
    """The reproduction table as the report shows it (its caption says what applies)."""
    caption = _CAPTION
    if setup.quick:
        caption = "APPROXIMATE (--quick run, coarse grid). " + caption
    if not setup.paper:
        caption = (
            "This run is not the paper's setup (other countries or household "
            "parameters): the differences are not a reproduction check. "
        ) + caption
    return Table(
        "reproduction",
        "Published numbers next to ours",
        repro,
        caption,
        formats={"published": ".6g", "ours": ".6g", "difference": ".3g", "tolerance": ".1g"},
    )


def _run_info(run: RunRecord, total: float) -> dict:
    """The report's "run" table: versions, time, machine, caches."""
    from hatrade import __version__

    cache = run.cache
    return {
        "hatrade version": __version__,
        "started (UTC)": run.started,
        "total wall time (s)": f"{total:.1f}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "cache": f"{cache.root} (read {'on' if cache.read else 'off'}, write "
        f"{'on' if cache.write else 'off'})",
        "JAX compilation cache": jax_cache_dir() or "off (every function compiled)",
        **{f"{k} version": v for k, v in versions().items() if k != "hatrade"},
    }


def _summary(run: RunRecord, repro: pd.DataFrame) -> dict:
    """``replicate.json`` (the report stage's entry and the total time are added last)."""
    from hatrade import __version__

    setup = run.setup
    return {
        "kind": KIND,
        "hatrade_version": __version__,
        "created": run.started,
        "quick": setup.quick,
        "paper": setup.paper,
        "setup": setup.describe(),
        "stages": [
            {
                "name": s.name,
                "title": s.title,
                "status": s.status,
                "seconds": s.seconds,
                "error": s.error,
                "cache": s.cache,
                "files": s.files,
            }
            for s in run.stages
        ],
        "numbers": run.numbers,
        "reproduction": repro.to_dict(orient="records"),
        "cache": run.cache.summary(),
        "work": run.work,
        "versions": versions(),
    }


def _write_reproduction(run: RunRecord, repro: pd.DataFrame, total: float) -> None:
    """``reproduction.csv``, ``reproduction.md`` and ``figures/``."""
    from hatrade import __version__
    from hatrade.io.atomic import write_bytes, write_text
    from hatrade.replicate.readme import readme_section

    write_text(run.out / "reproduction.csv", repro.to_csv(index=False, float_format="%.10g"))
    md = readme_section(
        repro,
        run={
            "version": __version__,
            "date": run.started[:10],
            "quick": run.setup.quick,
            "seconds": total,
            "stages": [(s.name, s.seconds) for s in run.stages],
        },
    )
    write_text(run.out / "reproduction.md", md)
    figdir = run.out / "figures"
    figdir.mkdir(exist_ok=True)
    for s in run.stages:
        for f in s.figures:
            write_bytes(figdir / f"{f.id}.png", f.png)


def _render(run: RunRecord, repro: pd.DataFrame, total: float, report_stage: StageResult) -> str:
    """The HTML report."""
    from hatrade import __version__
    from hatrade.replicate.report import render_report

    setup = run.setup
    quick_note = (
        f"Coarse asset grid: {setup.n_a} points instead of {FULL_N_A}; beta and "
        "wages are re-solved on it from the published prices, so every number here "
        "approximates the full replication (run without --quick for it)."
    )
    intro = [
        f"Everything below is computed by this run from the shipped data "
        f"(hatrade {__version__}): {len(setup.models[0].world.countries)} countries, "
        f"models: {', '.join(m.title for m in setup.models)}."
    ]
    work_table = Table(
        "work",
        "Results computed or loaded from the cache",
        pd.DataFrame(run.work, columns=["stage", "result", "kind", "outcome", "seconds", "key"]),
        "seconds: time to compute the result (including JAX compilation "
        "the first time a function runs), or to load and verify it.",
        formats={"seconds": ".1f"},
    )
    return render_report(
        run.stages + [report_stage],
        title="Heterogeneous Agent Trade (Waugh 2023): replication report",
        quick=setup.quick,
        quick_note=quick_note,
        parameters=parameter_tables(setup),
        reproduction=_reproduction_report_table(setup, repro),
        run_info=_run_info(run, total),
        intro=intro,
        timings=[work_table],
    )


def write_outputs(run: RunRecord) -> tuple[StageResult, pd.DataFrame]:
    """The report stage: write the reproduction table, figures, report and summary.

    A failure is reported in the returned stage (status ``failed``), not raised.

    Returns
    -------
    report_stage : StageResult
    reproduction : pandas.DataFrame
        The reproduction table (:func:`hatrade.replicate.table.reproduction_table`).
    """
    from hatrade.io.atomic import jsonable, write_text
    from hatrade.replicate.report import write_report

    t0 = time.perf_counter()
    repro = reproduction_table(run.setup, run.numbers)
    total = time.perf_counter() - run.t_start
    report_stage = StageResult("report", REPORT_TITLE, section=False)
    summary = _summary(run, repro)
    try:
        _write_reproduction(run, repro, total)
        report_stage.seconds = time.perf_counter() - t0
        summary["stages"].append(
            {
                "name": "report",
                "title": report_stage.title,
                "status": "ok",
                "seconds": report_stage.seconds,
                "error": None,
                "cache": {},
                "files": ["report.html"],
            }
        )
        write_report(run.out / "report.html", _render(run, repro, total, report_stage))
        report_stage.seconds = time.perf_counter() - t0
        summary["stages"][-1]["seconds"] = report_stage.seconds
        summary["total_seconds"] = time.perf_counter() - run.t_start
        write_text(
            run.out / "replicate.json",
            json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n",
        )
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - reported in the stage
        report_stage.status = "failed"
        report_stage.error = f"{type(err).__name__}: {err}"
        report_stage.details = traceback.format_exc()
        log.error("writing the report failed: %s", err)
    return report_stage, repro
