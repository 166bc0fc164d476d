r"""``hatrade replicate``: everything the paper reports, from the shipped data, in one run.

The run is a sequence of *stages*; each computes one group of results for the baseline
model (:math:`\gamma = 1.45`) and the log model (:math:`\gamma = 1`), writes its result
files into ``OUT/<stage>/`` and returns what the report shows:

``equilibrium``
    The stationary equilibrium of each model: 18 wages and :math:`\beta` at
    :math:`R = 1.01`, solved from the published prices (a solve folder per model, see
    :mod:`hatrade.io.results`).
``table1``
    Table 1: the gravity regression on the data (the moments), on model-generated trade
    (the model fit) and the trade-cost parameters; all 46 moments.
``trade_fit``
    Model against data log normalized trade :math:`\log(X_{ij}/X_{ii})` (Figure 2).
``elasticities``
    Proposition 1 trade elasticities of the home country (the US) by partner, impact and
    long run (MODEL.md 5).
``micro``
    The micro table (import share, trade elasticity, MPC by income group and expenditure
    quintile) and household elasticities by state, for the US and for the paper's
    symmetric two-country world.
``unilateral``, ``global``
    A 10% cut of the US's import costs and of all trade costs: new equilibria with
    :math:`\beta` fixed, and the equivalent-variation gains of US households by
    expenditure quintile, baseline against log model.
``efficient``
    The efficient allocation (Proposition 4) against the decentralized one.

Then ``OUT/report.html`` (self-contained), ``OUT/replicate.json`` (all key numbers, stage
statuses and times), ``OUT/reproduction.csv`` and ``OUT/reproduction.md`` (published
numbers next to ours; the published numbers are the only constants here, each with its
source; every other number comes from the run).

A stage that fails is reported as failed, with its error, and the others go on (stages
that need its results report that). Solved equilibria and household results go through
the results cache (:mod:`hatrade.io.cache`): a rerun loads them instead of solving.

``quick=True`` uses a coarse asset grid (30 points instead of 100) and re-solves
:math:`\beta` and the wages on it from the published prices; its numbers are approximate
and labeled so everywhere.

Speed: counterfactual equilibria start from the baseline's Jacobian (see
:func:`_start_jacobian`); about half of a cold ``--quick`` run is JAX compilation, which
the command line keeps between processes with :func:`jax_compilation_cache` (never
switched on for a program that merely imports hatrade). Times per stage:
``benchmarks/bench_replicate.py``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from hatrade.io.cache import Cache, fingerprint
from hatrade.io.equilibrium_store import cached_equilibrium
from hatrade.core.params import Household, ParameterError, World
from hatrade.replicate.report import Figure, StageResult, Table, figure_png

__all__ = ["ModelSpec", "Setup", "paper_setup", "replicate", "ReplicateResult", "ProgressSink",
           "STAGE_NAMES", "PUBLISHED", "QUICK_N_A", "reproduction_table", "check_output_dir",
           "ReplicateError", "jax_compilation_cache"]

log = logging.getLogger(__name__)

#: Asset grid of ``--quick`` runs.
QUICK_N_A = 30

#: Stages in order (the report stage runs last, after these).
STAGE_NAMES: tuple[str, ...] = ("equilibrium", "table1", "trade_fit", "elasticities", "micro",
                                "unilateral", "global", "efficient")

_KIND = "replicate"

#: The paper's published numbers that are not in the shipped data files, with their source.
#: (beta and wages are read from ``data/calibration/*-prices.csv`` at run time.)
PUBLISHED: dict[str, dict] = {
    "table1_moments": {
        "source": "MODEL.md section 4 (Table 1, 'Moment' = 'Model fit' column)",
        "decimals": 2,
        "values": {"dist_[0,375)": -3.10, "dist_[375,750)": -3.67, "dist_[750,1500)": -4.03,
                   "dist_[1500,3000)": -4.22, "dist_[3000,6000)": -6.06,
                   "dist_[6000,max)": -6.56, "border": 0.30, "language": 0.51, "ec": 0.04,
                   "efta": 0.54},
    },
    "theta_us_impact": {"source": "MODEL.md section 5 (Proposition 1, US, impact)",
                        "value": -4.230, "decimals": 3},
    "theta_us_longrun": {"source": "MODEL.md section 5 (US, distribution re-solved)",
                         "value": -4.246, "decimals": 3},
    "theta_log": {"source": "MODEL.md section 5, Proposition 3: -1/sigma_eps "
                            "(sigma_eps of MODEL.md 1.3)"},
    # US welfare of a 10% cut of trade costs (MODEL.md 5 describes the experiments; the
    # paper's numbers are listed in the hatrade.welfare.ev docstring, "Published numbers").
    "welfare": {
        "source": "the paper: US welfare of a 10% trade-cost cut (hatrade.welfare.ev docstring)",
        "trade_cost_change": -0.10,
        # (value, decimals, tolerance): the paper gives these as "about"; the tolerances
        # are those of tests/test_welfare.py (the published ACR, a function of trade shares
        # only, is itself 0.02 from ours). Log-model means: half-digit tolerance.
        "values": {
            "unilateral": {"baseline": {"mean": (1.35, 2, 0.05), "Q1": (2.9, 1, 0.15),
                                        "Q5": (0.65, 2, 0.05), "ACR": (0.45, 2, 0.03),
                                        "R/w": (4.6, 1, 0.1)},
                           "log": {"mean": (0.21, 2)}},
            "global": {"baseline": {"mean": (1.97, 2, 0.05), "ACR": (0.73, 2, 0.01)},
                       "log": {"mean": (0.44, 2)}},
        },
        "note": ("known gap (the log model's published gains lie below its own ACR): see "
                 "'Published numbers' in src/hatrade/welfare.py and "
                 "tests/test_welfare.py::test_published_log_model_gains"),
    },
}


class ReplicateError(ValueError):
    """The output folder cannot be used, or the setup is invalid."""


class StageDependencyError(RuntimeError):
    """A stage needs a result of an earlier stage that failed."""


# ----------------------------------------------------------------------------- setup

@dataclass(frozen=True, eq=False)
class ModelSpec:
    """One model of the run.

    Attributes
    ----------
    name : str
        ``"baseline"`` or ``"log"`` (file and column names).
    title : str
        For tables and legends.
    world : World
    household : Household
        With ``beta=None`` (solved at ``R``).
    wages, beta : starting prices (the published equilibrium).
    params : the calibration vector (Table 1's parameter column), or None.
    calibration : name of the shipped calibration it comes from (published numbers).
    """

    name: str
    title: str
    world: World
    household: Household
    wages: np.ndarray
    beta: float
    params: np.ndarray | None = None
    calibration: str | None = None


@dataclass(frozen=True, eq=False)
class Setup:
    """What a replication computes.

    Attributes
    ----------
    models : the models (the first is the reference for single-model results).
    home : the country whose elasticities, households and welfare are reported.
    trade_cost_change : the counterfactual change, d' = (1 + change) d.
    R : world interest rate at which beta is solved.
    tol, hh_tol : equilibrium and household tolerances.
    quick : a ``--quick`` run (approximate).
    paper : the paper's full world (the published numbers apply).
    ev_nodes : lambda nodes of the batched equivalent-variation solve (None: the default
        of :func:`hatrade.welfare.ev.country_welfare`).
    planner_weights : 'matched' or 'equal'.
    efficient_elasticities : compute Proposition 1 elasticities of every pair for the
        efficient-vs-decentralized comparison (19 country problems).
    two_country_d : trade cost of the symmetric two-country world of the micro figure.
    transfer : the MPC's one-time transfer.
    """

    models: tuple
    home: str = "USA"
    trade_cost_change: float = -0.10
    R: float = 1.01
    tol: float = 1e-10
    hh_tol: float = 1e-10
    quick: bool = False
    paper: bool = True
    ev_nodes: int | None = None
    planner_weights: str = "matched"
    efficient_elasticities: bool = True
    two_country_d: float = 1.5
    transfer: float = 0.008

    def __post_init__(self):
        if not self.models:
            raise ParameterError("a setup needs at least one model.")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ParameterError(f"model names must be unique, got {names}.")
        for m in self.models:
            m.world.index(self.home)
        if not (-1.0 < self.trade_cost_change < 1.0) or self.trade_cost_change == 0.0:
            raise ParameterError(f"trade_cost_change = {self.trade_cost_change} is not allowed: "
                                 "use a non-zero number in (-1, 1), e.g. -0.10.")

    def resolved_ev_nodes(self) -> int:
        """``ev_nodes``, or the welfare module's default when it is None."""
        if self.ev_nodes is not None:
            return int(self.ev_nodes)
        import inspect

        from hatrade.welfare.ev import country_welfare
        return int(inspect.signature(country_welfare).parameters["n_nodes"].default)

    @property
    def n_a(self) -> int:
        return self.models[0].household.n_a

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ParameterError(f"unknown model {name!r}; models: {[m.name for m in self.models]}.")

    def describe(self) -> dict:
        return {
            "models": {m.name: {"title": m.title, "countries": list(m.world.countries),
                                "household": m.household.to_dict(),
                                "calibration": m.calibration} for m in self.models},
            "home": self.home, "trade_cost_change": self.trade_cost_change, "R": self.R,
            "tol": self.tol, "hh_tol": self.hh_tol, "quick": self.quick, "paper": self.paper,
            "ev_nodes": self.resolved_ev_nodes(), "planner_weights": self.planner_weights,
            "efficient_elasticities": self.efficient_elasticities,
            "two_country_d": self.two_country_d, "transfer": self.transfer,
        }


def _sub_world(world: World, countries: Sequence[str]) -> World:
    idx = [world.index(c) for c in countries]
    return World(countries=tuple(countries), tfp=world.tfp[idx], labor=world.labor[idx],
                 d=world.d[np.ix_(idx, idx)], tariffs=None, financial=world.financial,
                 meta={**world.meta, "subset_of": list(world.countries)})


def paper_setup(*, quick: bool = False, n_a: int | None = None,
                countries: Sequence[str] | None = None, household: dict | None = None,
                models: Sequence[str] = ("baseline", "log"), **options) -> Setup:
    """The paper's replication: the 19-country world with the baseline and log calibrations.

    Parameters
    ----------
    quick : bool
        Coarse asset grid (:data:`QUICK_N_A` points) and beta and wages re-solved on it
        from the published prices: approximate numbers, labeled as such.
    n_a : int, optional
        Asset grid points (overrides the default: 100, or 30 when quick).
    countries : sequence of str, optional
        A subset of the 19 countries (TFP, labor and trade costs restricted to them): for
        experiments and tests; the published numbers do not apply to it.
    household : dict, optional
        Other household fields (e.g. a smaller income process ``n_perm=3``); the
        published numbers do not apply then either.
    models : which shipped calibrations to include (default both).
    **options
        Other :class:`Setup` fields (``home``, ``trade_cost_change``, ``tol``, ...).
    """
    from hatrade.data import load_calibration
    from hatrade.core.worlds import ek_world, published_household

    if n_a is None:
        n_a = QUICK_N_A if quick else 100
    titles = {"baseline": "Baseline (γ = 1.45)", "log": "Log model (γ = 1)"}
    specs = []
    for name in models:
        cal = load_calibration(name)
        world = ek_world(name)
        hh = published_household(name, n_a=int(n_a), **(household or {}))
        wages = cal.wages.reindex(list(world.countries)).to_numpy(float)
        if countries is not None:
            world = _sub_world(world, countries)
            wages = cal.wages.reindex(list(countries)).to_numpy(float)
            if np.any(~np.isfinite(wages)):
                raise ParameterError(f"countries {list(countries)} include codes that are not "
                                     "in the shipped calibration.")
        specs.append(ModelSpec(name=name, title=titles.get(name, name), world=world,
                               household=hh, wages=wages, beta=float(cal.beta),
                               params=np.asarray(cal.params, float), calibration=name))
    # the paper's world and households (on the quick grid: approximately)
    paper = countries is None and not household and n_a in (100, QUICK_N_A if quick else 100)
    if quick:
        options.setdefault("ev_nodes", 5)
    return Setup(models=tuple(specs), quick=quick, paper=paper, **options)


# ----------------------------------------------------------------------------- progress

class ProgressSink:
    """Receives progress; the default logs. The CLI draws one rich display from it."""

    def run_start(self, stages: Sequence[tuple[str, str]]) -> None:
        log.info("replicate: %d stages", len(stages))

    def stage_start(self, index: int, name: str, title: str) -> None:
        log.info("stage %d %s: %s", index + 1, name, title)

    def step(self, text: str) -> None:
        log.info("  %s", text)

    def stage_end(self, index: int, result: StageResult) -> None:
        log.info("stage %s: %s in %.1f s", result.name, result.status, result.seconds)


# ----------------------------------------------------------------------------- context

@dataclass
class _Ctx:
    setup: Setup
    cache: Cache
    out: Path
    progress: ProgressSink
    dir: Path | None = None  # the current stage's (temporary) folder
    stage: str = ""
    eq: dict = field(default_factory=dict)
    eq_key: dict = field(default_factory=dict)
    elast: dict = field(default_factory=dict)
    elast_key: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    jacobians: dict = field(default_factory=dict)
    background: dict = field(default_factory=dict)  # name -> _Background (started early)

    # --- helpers
    def step(self, text: str) -> None:
        self.progress.step(text)

    def newton(self, prefix: str):
        def report(iteration: int, residual: float) -> None:
            self.progress.step(f"{prefix}: Newton {iteration}, max excess demand {residual:.2e}")
        return report

    def need_eq(self, spec: ModelSpec):
        if spec.name not in self.eq:
            raise StageDependencyError(f"the {spec.name} equilibrium is not available (stage "
                                       "'equilibrium' failed for it).")
        return self.eq[spec.name]

    def path(self, *parts) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def rel(self, *parts) -> str:
        return "/".join((self.stage,) + tuple(str(p) for p in parts))

    def write_text(self, text: str, *parts) -> str:
        from hatrade.io.atomic import write_text
        write_text(self.path(*parts), text)
        return self.rel(*parts)

    def write_csv(self, df: pd.DataFrame, *parts, index: bool = False) -> str:
        return self.write_text(df.to_csv(index=index, float_format="%.17g"), *parts)

    def write_json(self, obj, *parts) -> str:
        from hatrade.io.atomic import jsonable
        return self.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n",
                               *parts)

    def figure(self, fig, fid: str, title: str, caption: str, *parts) -> Figure:
        png = figure_png(fig)
        p = self.path(*parts)
        p.write_bytes(png)
        return Figure(id=fid, title=title, png=png, caption=caption, file=self.rel(*parts))

    def memo(self, kind: str, inputs: dict, compute: Callable, label: str, **kw):
        result, _ = self.cache.memo(kind, inputs, compute, label=label, **kw)
        return result


def _each(ctx: _Ctx, fn: Callable[[ModelSpec], Any]) -> tuple[dict, dict]:
    """Run ``fn`` for every model; failures are collected, the other models go on."""
    done, errors = {}, {}
    for spec in ctx.setup.models:
        try:
            done[spec.name] = fn(spec)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported in the report
            log.warning("stage %s, model %s failed: %s", ctx.stage, spec.name, err,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            errors[spec.name] = (err, traceback.format_exc())
    return done, errors


def _status(result: StageResult, done: dict, errors: dict) -> StageResult:
    if errors:
        msgs = [f"{name}: {type(e).__name__}: {e}" for name, (e, _) in errors.items()]
        result.error = "\n".join(msgs)
        result.details = "\n\n".join(tb for _, tb in errors.values())
        result.status = "failed" if not done else "partial"
    return result


# ----------------------------------------------------------------------------- stages

def _stage_equilibrium(ctx: _Ctx) -> StageResult:
    from hatrade.io.results import save_solve
    from hatrade.solve.equilibrium import solve_equilibrium

    s = ctx.setup
    res = StageResult("equilibrium", "")
    rows = []

    def one(spec: ModelSpec):
        hh = spec.household
        options = {"solve_for": "beta", "R": s.R, "tol": s.tol, "hh_tol": s.hh_tol}

        def solve():
            ctx.step(f"{spec.name}: solving wages and beta from the published prices "
                     "(the first solve compiles)")
            # Broyden updates between exact Jacobians (from the published prices: one exact
            # Jacobian, then one or two steps)
            return solve_equilibrium(spec.world, hh, solve_for="beta", R=s.R, wages=spec.wages,
                                     beta_guess=spec.beta, tol=s.tol, hh_tol=s.hh_tol,
                                     method="broyden", progress=ctx.newton(spec.name))

        eq, hit = cached_equilibrium(ctx.cache, spec.world, hh, solve, options=options,
                                     label=f"{spec.name} equilibrium")
        ctx.eq[spec.name] = eq
        ctx.eq_key[spec.name] = fingerprint("equilibrium", _eq_inputs(spec.world, hh, options))
        ctx.step(f"{spec.name}: writing the solve folder")
        save_solve(eq, ctx.path(spec.name), spec.name, data_fit="ek",
                   parameters={"household": hh.to_dict(),
                               "solve": {**options, "wages_start": "published"}})
        res.files.extend(ctx.rel(spec.name, f) for f in
                         ("summary.json", "trade.csv", "households.nc", "trade_fit.png"))
        w = eq.wages
        ctx.numbers.setdefault("beta", {})[spec.name] = float(eq.beta)
        ctx.numbers.setdefault("wages", {})[spec.name] = {k: float(v) for k, v in w.items()}
        rows.append({"model": spec.title, "beta": float(eq.beta), "R": float(eq.prices.R[0]),
                     f"wage {s.home}": float(w[s.home]),
                     f"import share {s.home}": float(eq.import_share[s.home]),
                     "max excess demand": float(eq.residual),
                     "Newton steps": int(eq.iterations),
                     "solved or loaded": ("loaded from cache" if hit
                                          else f"solved in {eq.seconds:.1f} s")})
        return eq

    done, errors = _each(ctx, one)
    if rows:
        res.tables.append(Table("equilibrium", "Equilibrium prices", pd.DataFrame(rows),
                                "beta clears the world bond market at R; wages have mean one.",
                                formats={"beta": ".6f", "R": ".4f", f"wage {s.home}": ".6f",
                                         f"import share {s.home}": ".4f",
                                         "max excess demand": ".2e"}))
        wt = pd.DataFrame({"country": list(s.models[0].world.countries)})
        for spec in s.models:
            if spec.name in ctx.eq:
                eq = ctx.eq[spec.name]
                wt[f"wage ({spec.name})"] = eq.wages.reindex(wt["country"]).to_numpy()
                wt[f"import share ({spec.name})"] = \
                    eq.import_share.reindex(wt["country"]).to_numpy()
        res.tables.append(Table("wages", "Wages and import shares by country", wt,
                                formats={c: ".5f" for c in wt.columns if c != "country"}))
        res.files.append(ctx.write_csv(wt, "wages.csv"))
    return _status(res, done, errors)


def _eq_inputs(world, hh, options, income=None):
    from hatrade.io.equilibrium_store import equilibrium_inputs
    return equilibrium_inputs(world, hh, income, **options)


def _stage_table1(ctx: _Ctx) -> StageResult:
    from hatrade.data import load_trade_data
    from hatrade.analysis.gravity import COEFFICIENT_NAMES, gravity_regression, model_trade_table, table1

    s = ctx.setup
    res = StageResult("table1", "")
    countries = tuple(s.models[0].world.countries)
    data = load_trade_data()
    data = data[data["importer"].isin(countries) & data["exporter"].isin(countries)]
    data = data[data["importer"] != data["exporter"]].reset_index(drop=True)
    ctx.step("gravity regression on the data")
    g_data = gravity_regression(data, countries=countries)
    base = table1(g_data)
    out = base[["barrier", "moment"]].copy()
    if s.paper:
        out.insert(2, "published", [PUBLISHED["table1_moments"]["values"][k]
                                    for k in out.index])
    moments = pd.DataFrame({"moment": [f"S_{c}" for c in countries[:-1]]
                            + [f"theta_m_{c}" for c in countries[:-1]]
                            + list(COEFFICIENT_NAMES)})
    fits = {}

    def one(spec: ModelSpec):
        eq = ctx.need_eq(spec)
        ctx.step(f"{spec.name}: gravity regression on model trade")
        g_model = gravity_regression(model_trade_table(eq.trade_shares, countries),
                                     countries=countries)
        t = table1(g_data, g_model, spec.params)
        out[f"model fit ({spec.name})"] = t["model_fit"]
        if "parameter" in t:
            out[f"parameter ({spec.name})"] = t["parameter"]
        fits[spec.name] = {k: float(v) for k, v in t["model_fit"].items()}
        moments[f"model ({spec.name})"] = np.asarray(g_model.moments, float)
        return g_model

    done, errors = _each(ctx, one)
    moments.insert(1, "data", np.asarray(g_data.moments, float))
    ctx.numbers["table1_model_fit"] = fits
    ctx.numbers["table1_data"] = {k: float(v) for k, v in out["moment"].items()}
    out = out.reset_index(drop=True)
    fmt = {c: ".3f" for c in out.columns if c != "barrier"}
    res.tables.append(Table("table1", "Table 1: estimation results", out,
                            "Moment: the gravity regression on the Eaton-Kortum data. Model fit: "
                            "the same regression on model-generated trade. Parameter: the trade "
                            "cost exp(-x/4) of each calibrated coefficient x (before the "
                            "importer term and the floor at 1).", formats=fmt))
    res.files.append(ctx.write_csv(out, "table1.csv"))
    res.files.append(ctx.write_csv(moments, "moments.csv"))
    return _status(res, done, errors)


def _stage_trade_fit(ctx: _Ctx) -> StageResult:
    from hatrade.plots.trade_fit import trade_fit_figure
    from hatrade.io.results import trade_fit, trade_table_with_data

    res = StageResult("trade_fit", "")
    rows = []

    def one(spec: ModelSpec):
        eq = ctx.need_eq(spec)
        table = trade_table_with_data(eq, "ek")
        fit = trade_fit(table)
        fig = trade_fit_figure(table, fit=fit, title=f"Bilateral trade: model vs. data, "
                                                     f"{spec.title}")
        res.figures.append(ctx.figure(
            fig, f"trade-fit-{spec.name}", f"Model vs. data trade, {spec.title}",
            "Each point is an ordered pair i≠j: data log(X_ij/X_ii) against the model's "
            "log(s_ij/s_ii), with the 45-degree line.", f"trade_fit_{spec.name}.png"))
        res.files.append(ctx.write_csv(table, f"trade_{spec.name}.csv"))
        fit = fit or {}
        rows.append({"model": spec.title, "corr(model, data)": fit.get("corr"),
                     "RMSE": fit.get("rmse"), "pairs": fit.get("n_pairs")})
        ctx.numbers.setdefault("trade_fit", {})[spec.name] = fit

    done, errors = _each(ctx, one)
    if rows:
        res.tables.append(Table("trade-fit", "Fit of log normalized trade", pd.DataFrame(rows),
                                formats={"corr(model, data)": ".4f", "RMSE": ".4f"}))
    return _status(res, done, errors)


def _elasticity_bundle(lr) -> dict:
    imp = lr.impact
    return {"impact_table": imp.table, "longrun_table": lr.table, "micro": imp.micro,
            "theta": imp.theta, "theta_extensive": imp.theta_extensive,
            "theta_intensive": imp.theta_intensive, "theta_longrun": lr.theta_longrun,
            "method": imp.method, "residual": imp.residual, "seconds": imp.seconds,
            "country": imp.country}


def _elasticity_objects(b: dict):
    from hatrade.analysis.elasticity import ElasticityResult, LongRunResult

    imp = ElasticityResult(country=b["country"], table=b["impact_table"], theta=b["theta"],
                           theta_extensive=b["theta_extensive"],
                           theta_intensive=b["theta_intensive"], micro=b["micro"],
                           method=b["method"], residual=b["residual"], seconds=b["seconds"])
    lr = LongRunResult(country=b["country"], table=b["longrun_table"], theta_impact=b["theta"],
                       theta_longrun=b["theta_longrun"], impact=imp)
    return imp, lr


def _elasticities(ctx: _Ctx, key: str, eq, country: str, label: str):
    from hatrade.analysis.elasticity import longrun_elasticities

    def compute():
        ctx.step(f"{label}: elasticities of {country} (exact derivatives)")
        return _elasticity_bundle(longrun_elasticities(eq, country))

    b = ctx.memo("elasticity", {"equilibrium": key, "country": country, "kind": "longrun",
                                "method": "direct"}, compute, label=f"{label} {country}")
    return _elasticity_objects(b)


def _stage_elasticities(ctx: _Ctx) -> StageResult:
    from hatrade.plots.elasticity import partner_elasticities_figure

    s = ctx.setup
    res = StageResult("elasticities", "")
    summary = []
    by_partner = None

    def one(spec: ModelSpec):
        nonlocal by_partner
        eq = ctx.need_eq(spec)
        imp, lr = _elasticities(ctx, ctx.eq_key[spec.name], eq, s.home, spec.name)
        ctx.elast[spec.name] = (imp, lr)
        fig = partner_elasticities_figure(imp, longrun=lr, title=f"{s.home} trade elasticities "
                                                                 f"by partner, {spec.title}")
        res.figures.append(ctx.figure(
            fig, f"elasticities-{spec.name}", f"{s.home} trade elasticities by partner, "
            f"{spec.title}", "Proposition 1 impact elasticity θ_ij (w, R and the distribution "
            "fixed) against the partner's price; open markers: long run (distribution "
            "re-solved). Marker size: trade weight.", f"elasticities_{spec.name}.png"))
        t = lr.table.copy()
        res.files.append(ctx.write_csv(t, f"elasticities_{spec.name}.csv"))
        imp.micro.to_netcdf(ctx.path(f"micro_elasticities_{spec.name}.nc"), engine="h5netcdf")
        res.files.append(ctx.rel(f"micro_elasticities_{spec.name}.nc"))
        bp = t.set_index("partner")
        cols = {f"θ impact ({spec.name})": bp["theta_impact"],
                f"θ long run ({spec.name})": bp["theta_longrun"]}
        if by_partner is None:
            by_partner = pd.DataFrame({"partner": bp.index, f"trade share ({spec.name})":
                                       bp["trade_share"].to_numpy()}).set_index("partner")
        for k, v in cols.items():
            by_partner[k] = v
        row = {"model": spec.title, "θ impact": imp.theta, "extensive": imp.theta_extensive,
               "intensive": imp.theta_intensive, "θ long run": lr.theta_longrun,
               "min over partners": float(t["theta_impact"].min()),
               "max over partners": float(t["theta_impact"].max())}
        if spec.household.gamma == 1.0:
            row["−1/σ_ε (Prop. 3)"] = -1.0 / spec.household.sigma_eps
        summary.append(row)
        ctx.numbers.setdefault("theta", {})[spec.name] = {
            "impact": imp.theta, "longrun": lr.theta_longrun,
            "extensive": imp.theta_extensive, "intensive": imp.theta_intensive,
            "by_partner": {p: float(v) for p, v in zip(t["partner"], t["theta_impact"])}}

    done, errors = _each(ctx, one)
    if summary:
        res.tables.append(Table("elasticity-summary", f"{s.home} aggregate trade elasticity",
                                pd.DataFrame(summary),
                                "Trade-share-weighted over partners; impact = extensive + "
                                "intensive margin.", formats={}))
    if by_partner is not None:
        bp = by_partner.reset_index()
        res.tables.append(Table("elasticity-partners", f"{s.home} elasticities by partner", bp,
                                formats={c: ".4f" for c in bp.columns if c != "partner"}))
        res.files.append(ctx.write_csv(bp, "elasticities_by_partner.csv"))
    res.files.append(ctx.write_json(ctx.numbers.get("theta", {}), "summary.json"))
    return _status(res, done, errors)


def _two_country_elasticities(ctx: _Ctx):
    """The micro figure's symmetric two-country world (baseline preferences): its
    equilibrium and the home country's elasticities, through the cache. Needs none of the
    19-country results, so :func:`replicate` starts it in the background at once."""
    from hatrade.plots.elasticity import symmetric_two_country
    from hatrade.solve.equilibrium import solve_equilibrium

    s = ctx.setup
    spec = s.models[0]
    world2 = symmetric_two_country(s.two_country_d)
    hh = spec.household
    options = {"solve_for": "beta", "R": s.R, "tol": s.tol, "hh_tol": s.hh_tol}

    def solve():
        ctx.step("symmetric two-country world: solving beta")
        return solve_equilibrium(world2, hh, solve_for="beta", R=s.R, beta_guess=spec.beta,
                                 tol=s.tol, hh_tol=s.hh_tol, progress=ctx.newton("two-country"))

    eq2, _ = cached_equilibrium(ctx.cache, world2, hh, solve, options=options,
                                label="symmetric two-country equilibrium")
    key2 = fingerprint("equilibrium", _eq_inputs(world2, hh, options))
    imp2, _ = _elasticities(ctx, key2, eq2, world2.countries[0], "two-country")
    return imp2


def _stage_micro(ctx: _Ctx) -> StageResult:
    from hatrade.analysis.cross_section import cross_section, micro_table
    from hatrade.plots.elasticity import micro_by_assets_figure, micro_table_figure

    s = ctx.setup
    res = StageResult("micro", "")
    tables = {}

    def one(spec: ModelSpec):
        eq = ctx.need_eq(spec)
        if spec.name not in ctx.elast:
            raise StageDependencyError(f"the {spec.name} elasticities are not available "
                                       "(stage 'elasticities' failed for it).")
        imp, _ = ctx.elast[spec.name]

        def compute():
            ctx.step(f"{spec.name}: household cross-section of {s.home} (MPCs)")
            xs = cross_section(eq, s.home, transfer=s.transfer, elasticities=imp)
            return {"table": xs.table}

        xs_table = ctx.memo("cross_section", {"equilibrium": ctx.eq_key[spec.name],
                                              "country": s.home, "transfer": s.transfer},
                            compute, label=f"{spec.name} {s.home}")["table"]
        mt = micro_table(xs_table)
        tables[spec.name] = mt
        res.files.append(ctx.write_csv(mt, f"micro_table_{spec.name}.csv"))
        res.files.append(ctx.write_csv(xs_table, f"cross_section_{spec.name}.csv"))
        shown = mt[["grouping", "group", "import_share", "elasticity", "mpc", "mass"]].copy()
        res.tables.append(Table(f"micro-{spec.name}", f"{s.home} households, {spec.title}: "
                                "import shares, trade elasticities and MPCs", shown,
                                "Exact weights of the stationary distribution; income groups "
                                "by labor income w z, quintiles by expenditure. MPC: marginal "
                                f"propensity to spend out of a one-time transfer of {s.transfer}.",
                                formats={"import_share": ".4f", "elasticity": ".3f",
                                         "mpc": ".3f", "mass": ".3f"}))
        fig = micro_table_figure(mt, title=f"{s.home} households, {spec.title}")
        res.figures.append(ctx.figure(fig, f"micro-table-{spec.name}",
                                      f"Micro table, {spec.title}",
                                      "Import share, trade elasticity and MPC by group.",
                                      f"micro_table_{spec.name}.png"))
        if spec is s.models[0]:
            fig = micro_by_assets_figure(imp, title=f"{s.home} household trade elasticities by "
                                                    f"state, {spec.title}")
            res.figures.append(ctx.figure(fig, f"micro-assets-{spec.name}",
                                          f"{s.home} household elasticities by state",
                                          "Household trade elasticity against assets, one "
                                          "line per income state.",
                                          f"micro_elasticity_{spec.name}.png"))
        ctx.numbers.setdefault("micro", {})[spec.name] = mt.to_dict(orient="records")

    done, errors = _each(ctx, one)

    # the paper's figure: a symmetric two-country world with the baseline preferences
    spec = s.models[0]
    try:
        bg = ctx.background.pop("two_country", None)
        imp2 = bg.result(into=ctx.cache) if bg is not None else _two_country_elasticities(ctx)
        fig = micro_by_assets_figure(
            imp2, title=f"Trade elasticities by household state (symmetric two countries, "
                        f"d = {s.two_country_d})")
        res.figures.append(ctx.figure(
            fig, "micro-assets-two-country", "Trade elasticities by household state",
            f"The paper's figure: a symmetric two-country world (TFP 1, d = {s.two_country_d}) "
            f"with the {spec.name} preferences; household elasticity against assets.",
            "micro_elasticity_two_country.png"))
        res.files.append(ctx.write_csv(imp2.micro["household_elasticity"].to_dataframe()
                                       .reset_index(), "micro_elasticity_two_country.csv"))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001
        errors["two-country figure"] = (err, traceback.format_exc())
        log.warning("micro: two-country figure failed: %s", err)
    return _status(res, done, errors)


def _scenario(ctx: _Ctx, kind: str):
    from hatrade.analysis.counterfactual import Scenario

    s = ctx.setup
    if kind == "unilateral":
        return Scenario(name=f"unilateral-{s.home}", trade_cost_change=s.trade_cost_change,
                        importer=s.home, allow_d_below_one=True)
    return Scenario(name="global", trade_cost_change=s.trade_cost_change, all_pairs=True,
                    allow_d_below_one=True)


def _start_jacobian(eq):
    r"""A starting Jacobian for a counterfactual of ``eq`` (unknowns: wages and R).

    The baseline equilibrium was solved for wages and :math:`\beta` at fixed R; its
    (Broyden-updated) Jacobian has the same wage columns. The last column, the derivative
    in :math:`\beta`, is turned into one in R through the Euler equation, where only
    :math:`\beta R` enters: :math:`\partial/\partial R \approx (\beta/R)\,
    \partial/\partial\beta` (the income effect of R on :math:`R a` is left out; Broyden's
    updates correct it). Measured on the ``--quick`` grid, this saves one exact Jacobian
    (19 forward-mode directions) and one compilation per counterfactual against starting
    without a Jacobian. None when the baseline has no Jacobian of that shape (e.g. it was
    solved under financial autarky or with tariffs).
    """
    J = getattr(eq, "jacobian", None)
    M = eq.world.M
    if (J is None or eq.world.financial != "globalization" or np.shape(J) != (M, M)
            or eq.world.has_tariffs):
        return None
    J = np.array(J, float)
    J[:, -1] *= float(eq.beta) / float(np.asarray(eq.prices.R).ravel()[0])
    return J if np.all(np.isfinite(J)) else None


def _welfare_bundle(r) -> dict:
    return {"table": r.table, "summary": r.summary}


def _stage_counterfactual(ctx: _Ctx, kind: str) -> StageResult:
    from hatrade.analysis.counterfactual import Counterfactual, apply_scenario, run_counterfactual
    from hatrade.plots.welfare import heatmap_figure, income_group_figure, quintile_figure
    from hatrade.welfare.ev import country_welfare

    s = ctx.setup
    res = StageResult(kind, "")
    scenario = _scenario(ctx, kind)
    n_nodes = s.resolved_ev_nodes()
    summaries, rows, by_country = {}, [], []

    def one(spec: ModelSpec):
        eq = ctx.need_eq(spec)
        world_new = apply_scenario(eq.world, scenario)
        hh = eq.household.replace(beta=float(eq.beta))
        options = {"solve_for": "R", "beta": float(eq.beta), "tol": s.tol, "hh_tol": s.hh_tol}

        def solve():
            ctx.step(f"{spec.name}: new equilibrium (beta fixed; wages and R adjust)")
            # Broyden updates between exact Jacobians, starting from the Jacobian of this
            # model's other counterfactual (same unknowns: wages and R) when there is one,
            # else from the baseline's (see _start_jacobian). (Another model's Jacobian was
            # measured to be a poor start: more exact ones.)
            J = ctx.jacobians.get(("R", spec.name))
            if J is None:
                J = _start_jacobian(eq)
            return run_counterfactual(eq, world_new, progress=ctx.newton(f"{spec.name} {kind}"),
                                      tol=s.tol, hh_tol=s.hh_tol, method="broyden",
                                      jacobian=J).new

        new, _ = cached_equilibrium(ctx.cache, world_new, hh, solve, options=options,
                                    income=eq.income, label=f"{spec.name} {kind} equilibrium")
        if new.jacobian is not None:
            ctx.jacobians[("R", spec.name)] = new.jacobian
        cf = Counterfactual(scenario=scenario, baseline=eq, new=new)
        new_key = fingerprint("equilibrium", _eq_inputs(world_new, hh, options, eq.income))

        def compute():
            ctx.step(f"{spec.name}: equivalent variation of every {s.home} household")
            return _welfare_bundle(country_welfare(cf, country=s.home, n_nodes=n_nodes))

        w = ctx.memo("welfare", {"baseline": ctx.eq_key[spec.name], "new": new_key,
                                 "country": s.home, "n_nodes": n_nodes, "verify": False},
                     compute, label=f"{spec.name} {kind} {s.home}")
        summ = w["summary"]
        summaries[spec.title] = summ
        folder = {"kind": "counterfactual", "name": scenario.name, "label": spec.title,
                  "created": _now(), "source": f"replicate:{spec.name}", **cf.summary(),
                  "by_country": {s.home: summ}}
        res.files.append(ctx.write_json(folder, spec.name, "summary.json"))
        res.files.append(ctx.write_csv(w["table"], spec.name, "welfare.csv"))
        res.files.append(ctx.write_csv(cf.changes().reset_index(), spec.name, "changes.csv"))
        res.files.append(ctx.write_csv(cf.trade_share_changes(), spec.name, "trade.csv"))
        q = summ["quintile_gain_percent"]
        i = eq.world.index(s.home)
        row = {"model": spec.title, **{k: q[k] for k in sorted(q)},
               "mean": summ["mean_gain_percent"], "median": summ["median_gain_percent"],
               "ACR": summ["acr_percent"], "share losing": summ["share_losers"],
               "R change %": float(cf.R_change_percent()[i]),
               f"wage change {s.home} %": float(100 * (new.prices.w[i] / eq.prices.w[i] - 1))}
        rows.append(row)
        ev_info = summ.get("ev") or {}
        if ev_info.get("undefined_states"):
            res.text.append(
                f"{spec.title}: the equivalent variation is undefined for "
                f"{ev_info['undefined_states']} household states (mass "
                f"{ev_info.get('undefined_mass', float('nan')):.2e}): borrowers for whom no "
                "feasible scaling of income above 1 makes them as well off; they are left "
                "out of the means.")
        ch = cf.changes()
        by_country.append(pd.DataFrame({
            "country": ch.index, "model": spec.name,
            "wage change %": ch["wage_change_percent"].to_numpy(),
            "import share old": ch["import_share_old"].to_numpy(),
            "import share new": ch["import_share_new"].to_numpy()}))
        if spec is s.models[0]:
            fig = heatmap_figure(w["table"], title=f"{s.home}: welfare gain by assets and income "
                                                   f"({spec.title})")
            res.figures.append(ctx.figure(fig, f"{kind}-heatmap-{spec.name}",
                                          f"Gains by household state, {spec.title}",
                                          "Equivalent variation (percent) by assets and income "
                                          "state.", f"gains_heatmap_{spec.name}.png"))
        ctx.numbers.setdefault("welfare", {}).setdefault(kind, {})[spec.name] = {
            "quintile_gain_percent": q, "mean_gain_percent": summ["mean_gain_percent"],
            "acr_percent": summ["acr_percent"], "share_losers": summ["share_losers"],
            "R_over_w_change_percent": float(cf.R_over_w_change_percent()[i])}

    done, errors = _each(ctx, one)
    what = (f"a {abs(s.trade_cost_change):.0%} {'cut' if s.trade_cost_change < 0 else 'rise'} "
            + (f"of {s.home}'s import costs" if kind == "unilateral" else "of all trade costs"))
    if summaries:
        fig = quintile_figure(summaries, title=f"{s.home} welfare gains by expenditure quintile: "
                                               f"{what}")
        res.figures.insert(0, ctx.figure(
            fig, f"{kind}-quintiles", f"{s.home} welfare gains by expenditure quintile",
            "Equivalent variation in percent (Proposition 2), baseline against log model; "
            "mean over the stationary distribution; ACR benchmark 100 (1/4.22) log(s_ii/s_ii').",
            "gains_by_quintile.png"))
        fig = income_group_figure(summaries, title=f"{s.home} welfare gains by income group: "
                                                   f"{what}")
        res.figures.insert(1, ctx.figure(fig, f"{kind}-income", f"{s.home} welfare gains by "
                                         "income group", "Equivalent variation by labor-income "
                                         "group.", "gains_by_income.png"))
        df = pd.DataFrame(rows)
        res.tables.append(Table(f"{kind}-welfare", f"{s.home} welfare gains (%), {what}", df,
                                "Q1..Q5: expenditure quintiles of the baseline distribution "
                                "(Q1 poorest). Beta fixed; wages and R adjust.",
                                formats={c: ".3f" for c in df.columns
                                         if c not in ("model", "share losing")}
                                | {"share losing": ".3f"}))
        res.files.append(ctx.write_csv(df, "welfare_summary.csv"))
    if by_country:
        bc = pd.concat(by_country, ignore_index=True)
        res.files.append(ctx.write_csv(bc, "changes_by_country.csv"))
        if kind == "global":
            wide = bc.pivot(index="country", columns="model", values="wage change %")
            wide.columns = [f"wage change % ({c})" for c in wide.columns]
            wide = wide.reindex(list(s.models[0].world.countries)).reset_index()
            res.tables.append(Table("global-wages", "Wage changes by country (%)", wide,
                                    formats={c: ".3f" for c in wide.columns if c != "country"}))
    res.text.append(f"Counterfactual: {what} (d' = {1 + s.trade_cost_change:g} d, no new floor), "
                    "new stationary equilibrium with beta at its baseline value.")
    return _status(res, done, errors)


def _efficient_bundle(table, summary) -> dict:
    return {"table": table, "summary": summary}


def _stage_efficient(ctx: _Ctx) -> StageResult:
    from hatrade.analysis.efficient import efficient_report, solve_planner
    from hatrade.plots.efficient import efficient_trade_figure

    s = ctx.setup
    res = StageResult("efficient", "")
    shares, rows = None, []

    def one(spec: ModelSpec):
        nonlocal shares
        eq = ctx.need_eq(spec)

        def compute():
            ctx.step(f"{spec.name}: planner's problem ({s.planner_weights} weights)")
            planner = solve_planner(eq.world, eq.household, s.planner_weights, eq)
            ctx.step(f"{spec.name}: comparing with the decentralized allocation")
            table, summary = efficient_report(planner, eq,
                                              decentralized_theta=s.efficient_elasticities)
            return _efficient_bundle(table, summary)

        b = ctx.memo("efficient", {"equilibrium": ctx.eq_key[spec.name],
                                   "weights": s.planner_weights,
                                   "elasticities": s.efficient_elasticities},
                     compute, label=f"{spec.name} planner")
        table, summ = b["table"], b["summary"]
        res.files.append(ctx.write_csv(table, spec.name, "efficient_trade.csv"))
        res.files.append(ctx.write_json({"kind": "efficient", "label": spec.title, **summ},
                                        spec.name, "summary.json"))
        fig = efficient_trade_figure(table, title=f"Efficient vs. decentralized trade, "
                                                  f"{spec.title}")
        res.figures.append(ctx.figure(
            fig, f"efficient-{spec.name}", f"Efficient vs. decentralized trade, {spec.title}",
            "Left: log(s_ij/s_ii) in the decentralized equilibrium against the efficient "
            "allocation (planner with weights that give each country its decentralized "
            "spending). Right: import shares.", f"efficient_trade_{spec.name}.png"))
        comp = summ["comparison"]
        imp = comp["import_share"]
        sh = pd.DataFrame({"country": list(imp),
                           f"efficient ({spec.name})": [v["efficient"] for v in imp.values()],
                           f"decentralized ({spec.name})": [v["decentralized"]
                                                            for v in imp.values()]})
        shares = sh if shares is None else shares.merge(sh, on="country", how="outer")
        row = {"model": spec.title, "pairs": comp["pairs"],
               "pairs trading more (efficient)": comp["pairs_trading_more_efficient"],
               "mean log(s_eff/s_dec), i≠j": comp["mean_log_ratio_offdiagonal"],
               "corr with log d_ij": comp.get("corr_log_ratio_log_trade_costs")}
        agg = comp.get("aggregate_elasticity") or {}
        for col, label in (("theta_efficient_prop4", f"θ {s.home} efficient (Prop. 4)"),
                           ("theta_decentralized_prop1", f"θ {s.home} decentralized (Prop. 1)")):
            if col in agg and s.home in agg[col]:
                row[label] = agg[col][s.home]
        rows.append(row)
        ctx.numbers.setdefault("efficient", {})[spec.name] = {
            "pairs_trading_more_efficient": comp["pairs_trading_more_efficient"],
            "mean_log_ratio_offdiagonal": comp["mean_log_ratio_offdiagonal"],
            "import_share": imp}

    done, errors = _each(ctx, one)
    if rows:
        df = pd.DataFrame(rows)
        res.tables.append(Table("efficient-summary", "Efficient against decentralized trade", df,
                                formats={c: ".4f" for c in df.columns
                                         if c not in ("model", "pairs",
                                                      "pairs trading more (efficient)")}))
    if shares is not None:
        res.tables.append(Table("efficient-import-shares", "Import shares by country", shares,
                                formats={c: ".4f" for c in shares.columns if c != "country"}))
        res.files.append(ctx.write_csv(shares, "import_shares.csv"))
    return _status(res, done, errors)


_STAGE_FUNCS = {
    "equilibrium": _stage_equilibrium,
    "table1": _stage_table1,
    "trade_fit": _stage_trade_fit,
    "elasticities": _stage_elasticities,
    "micro": _stage_micro,
    "unilateral": lambda ctx: _stage_counterfactual(ctx, "unilateral"),
    "global": lambda ctx: _stage_counterfactual(ctx, "global"),
    "efficient": _stage_efficient,
}


#: Stages that run in threads of their own when ``parallel``, each tuple in order in one
#: thread (the counterfactuals share a Jacobian); the other stages after ``equilibrium`` run
#: in one more thread.
LANES: tuple[tuple[str, ...], ...] = (("unilateral", "global"),)


def _lanes(names: Sequence[str], parallel: bool) -> list[list[str]]:
    """Split the stages that follow the equilibria into lanes (one lane unless parallel)."""
    names = list(names)
    if not parallel:
        return [names] if names else []
    lanes = [[n for n in names if n in lane] for lane in LANES]
    rest = [n for n in names if not any(n in lane for lane in LANES)]
    return [lane for lane in [rest] + lanes if lane]


def _lane_view(ctx: _Ctx) -> _Ctx:
    """A context for another thread: the same results dicts, its own view of the cache
    (so that cache events are attributed to the right stage)."""
    import copy

    lcache = copy.copy(ctx.cache)
    lcache.events = []
    return replace(ctx, cache=lcache)


class _Background:
    """``fn(view)`` started in a daemon thread (64-bit JAX on: the setting is per thread;
    daemon: an interrupt stops the run at once, and finished results are in the cache for a
    rerun) with its own view of the context (:func:`_lane_view`), collected later."""

    def __init__(self, fn: Callable, ctx: _Ctx, name: str):
        import jax

        self.ctx = _lane_view(ctx)
        self.value, self.error = None, None

        def main():
            try:
                with jax.enable_x64(True):
                    self.value = fn(self.ctx)
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self.error = err

        self.thread = threading.Thread(target=main, daemon=True, name=f"hatrade-{name}")
        self.thread.start()

    def wait(self) -> None:
        """Wait for the thread (in short joins, so that Ctrl-C reaches the caller)."""
        while self.thread.is_alive():
            self.thread.join(0.2)

    def result(self, into: Cache | None = None):
        """Wait for the value (or raise the error); its cache events go to ``into``."""
        self.wait()
        if into is not None:
            into.events.extend(self.ctx.cache.events)
        if self.error is not None:
            raise self.error
        return self.value


def stage_titles(setup: Setup) -> dict:
    """Titles of the stages for a setup."""
    names = " and ".join(m.title.split(" (")[0].lower() for m in setup.models)
    pct = f"{abs(setup.trade_cost_change):.0%}"
    return {
        "equilibrium": f"Stationary equilibria ({names})",
        "table1": "Table 1: gravity moments, model fit and trade-cost parameters",
        "trade_fit": "Bilateral trade: model vs. data",
        "elasticities": f"Trade elasticities of {setup.home} by partner",
        "micro": f"{setup.home} households: micro table and micro elasticities",
        "unilateral": f"Welfare: {pct} cut of {setup.home} import costs (unilateral)",
        "global": f"Welfare: {pct} cut of all trade costs (global)",
        "efficient": "Efficient vs. decentralized allocation",
    }


# ----------------------------------------------------------------------------- reproduction

def _fmt_g(x, digits=6):
    return f"{x:.{digits}g}"


def reproduction_table(setup: Setup, numbers: dict) -> pd.DataFrame:
    """Published numbers next to this run's, with the difference (ours - published).

    Columns: quantity, source, published, ours, difference, tolerance, agrees. Published
    beta and wages are read from the shipped price files; the other published numbers are
    :data:`PUBLISHED`. Rows whose number this run did not produce (a failed stage) show
    "not computed".
    """
    from hatrade.data import load_calibration

    rows = []

    def add(quantity, source, published, ours, tol, note=""):
        if ours is None:
            rows.append({"quantity": quantity, "source": source, "published": published,
                         "ours": "not computed", "difference": None, "tolerance": tol,
                         "agrees": "–", "note": note})
            return
        diff = None
        agrees = "–"
        if isinstance(published, (int, float)) and isinstance(ours, (int, float)):
            diff = float(ours) - float(published)
            agrees = "yes" if abs(diff) <= tol else "no"
        rows.append({"quantity": quantity, "source": source, "published": published,
                     "ours": ours, "difference": diff, "tolerance": tol, "agrees": agrees,
                     "note": note})

    home = setup.home
    for spec in setup.models:
        name = spec.name
        if spec.calibration is None:
            continue
        cal = load_calibration(spec.calibration)
        src = f"data/calibration/{spec.calibration}-prices.csv"
        add(f"β, {name} (R = 1.01)", src, float(cal.beta),
            numbers.get("beta", {}).get(name), 1e-6)
        wages = numbers.get("wages", {}).get(name)
        pub_w = cal.wages
        if home in pub_w.index:
            add(f"wage of {home}, {name} (mean wage 1)", src, float(pub_w[home]),
                None if wages is None else wages.get(home), 1.5e-5 * float(pub_w[home]))
        if wages is not None:
            common = [c for c in wages if c in pub_w.index]
            rel = {c: abs(wages[c] / pub_w[c] - 1.0) for c in common}
            worst = max(rel, key=rel.get) if rel else None
            if worst is not None:
                add(f"largest relative wage difference, {name} ({len(common)} wages)",
                    src, 0.0, float(rel[worst]), 1.5e-5, note=f"at {worst}")
    pub = PUBLISHED["table1_moments"]
    tol_t1 = 0.5 * 10 ** -pub["decimals"]
    from hatrade.analysis.gravity import BARRIER_LABELS
    fits = numbers.get("table1_model_fit", {})
    first = setup.models[0].name
    for k, v in pub["values"].items():
        add(f"Table 1 model fit: {BARRIER_LABELS.get(k, k)} ({first})", pub["source"], v,
            fits.get(first, {}).get(k), tol_t1)
    for spec in setup.models[1:]:
        f = fits.get(spec.name)
        worst = None
        if f:
            d = {k: abs(f[k] - v) for k, v in pub["values"].items() if k in f}
            worst = max(d, key=d.get)
        add(f"Table 1 model fit, {spec.name}: largest |difference| over the 10 coefficients",
            pub["source"], 0.0, None if worst is None else float(d[worst]), tol_t1,
            note="" if worst is None else f"at {BARRIER_LABELS.get(worst, worst)}")
    theta = numbers.get("theta", {})
    p = PUBLISHED["theta_us_impact"]
    add(f"{home} trade elasticity, impact ({first})", p["source"], p["value"],
        theta.get(first, {}).get("impact"), 0.5 * 10 ** -p["decimals"])
    p = PUBLISHED["theta_us_longrun"]
    add(f"{home} trade elasticity, long run ({first})", p["source"], p["value"],
        theta.get(first, {}).get("longrun"), 0.5 * 10 ** -p["decimals"])
    for spec in setup.models:
        if spec.household.gamma == 1.0:
            add(f"{home} trade elasticity, {spec.name} (exact: −1/σ_ε)",
                PUBLISHED["theta_log"]["source"], -1.0 / spec.household.sigma_eps,
                theta.get(spec.name, {}).get("impact"), 1e-6)
    pw = PUBLISHED["welfare"]
    welfare = numbers.get("welfare", {})
    labels = {"mean": "mean", "Q1": "poorest expenditure quintile (Q1)",
              "Q5": "richest expenditure quintile (Q5)", "ACR": "ACR benchmark",
              "R/w": "change of R/w"}
    for kind, by_model in pw["values"].items():
        for name, stats in by_model.items():
            if not any(m.name == name for m in setup.models):
                continue
            got = welfare.get(kind, {}).get(name)
            for stat, (value, decimals, *given) in stats.items():
                ours = None
                if got is not None:
                    ours = {"mean": got.get("mean_gain_percent"),
                            "Q1": got.get("quintile_gain_percent", {}).get("Q1"),
                            "Q5": got.get("quintile_gain_percent", {}).get("Q5"),
                            "ACR": got.get("acr_percent"),
                            "R/w": got.get("R_over_w_change_percent")}[stat]
                tol = given[0] if given else 0.5 * 10 ** -decimals
                if stat == "R/w":
                    quantity = f"{home} change of R/w (%), {kind}, {name}"
                else:
                    quantity = f"{home} {labels[stat]} welfare gain (%), {kind}, {name}"
                source = pw["source"]
                if setup.trade_cost_change != pw["trade_cost_change"]:
                    source += f" (this run: a {setup.trade_cost_change:+.0%} change)"
                agrees = ours is not None and abs(float(ours) - value) <= tol
                add(quantity, source, value, None if ours is None else float(ours), tol,
                    note="" if ours is None or agrees else pw["note"])
    df = pd.DataFrame(rows, columns=["quantity", "source", "published", "ours", "difference",
                                     "tolerance", "agrees", "note"])
    return df


# ----------------------------------------------------------------------------- driver

@dataclass
class ReplicateResult:
    """The outcome of :func:`replicate`.

    Attributes
    ----------
    out : the output folder.
    report : path of ``report.html``.
    stages : the :class:`~hatrade.replicate.report.StageResult` of every stage (report last).
    numbers : the key numbers (as in ``replicate.json``).
    reproduction : the reproduction table.
    cache : counts of results loaded (``hit``) and computed (``miss``) by kind.
    seconds : total wall time.
    """

    out: Path
    report: Path
    stages: list
    numbers: dict
    reproduction: pd.DataFrame
    cache: dict
    seconds: float
    quick: bool = False

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.stages)

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def solves(self) -> int:
        """Equilibria solved (not loaded) in this run."""
        return int(self.cache.get("miss", {}).get("equilibrium", 0))


#: Written into the output folder when a run starts, so that a run that was interrupted
#: before writing ``replicate.json`` can be rerun into the same folder (and resumed from the
#: results cache).
MARKER = ".hatrade-replicate"


def _is_replicate_dir(path: Path) -> bool:
    for name in ("replicate.json", MARKER):
        try:
            doc = json.loads((path / name).read_text(encoding="utf-8"))
            if doc.get("kind") == _KIND:
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return False


def _prepare_output_dir(out: Path) -> None:
    """Mark ``out`` as a replicate folder and remove the temporary folders that an
    interrupted run left (``.<stage>.*.tmp`` / ``.old``)."""
    import shutil

    from hatrade.io.atomic import write_text

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, json.dumps({"kind": _KIND, "started": _now()}) + "\n")
    for p in out.iterdir():
        if (p.is_dir() and p.name.startswith(".") and p.name.endswith((".tmp", ".old"))
                and p.name[1:].split(".", 1)[0] in _STAGE_FUNCS):
            shutil.rmtree(p, ignore_errors=True)


def check_output_dir(out) -> Path:
    """A new or empty folder, or a previous replicate folder (updated stage by stage).

    Raises
    ------
    ReplicateError
        ``out`` is a file, or a non-empty folder that is not a previous replicate folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplicateError(f"output folder {out} exists and is not a folder; choose another "
                             "--out.")
    if out.is_dir() and any(out.iterdir()) and not _is_replicate_dir(out):
        raise ReplicateError(f"output folder {out} exists and holds other files (it is not a "
                             "previous 'hatrade replicate' folder, which would be updated); "
                             "choose a new or empty folder.")
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    import importlib.metadata as md

    from hatrade import __version__
    out = {"hatrade": __version__, "python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "pandas", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            pass
    return out


def _jax_cache_dir() -> str | None:
    import jax
    return jax.config.jax_compilation_cache_dir


def _parameter_tables(setup: Setup) -> list:
    rows = []
    fields = ["gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a", "rho_perm", "var_perm",
              "n_perm", "var_iid", "n_iid"]
    data = {"parameter": fields}
    for m in setup.models:
        d = m.household.to_dict()
        data[m.name] = [d.get(f) for f in fields]
    hh = pd.DataFrame(data)
    rows.append(Table("parameters-household", "Household parameters (beta is solved)", hh))
    run = pd.DataFrame([
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
        ("paper's setup (published numbers apply)", "yes" if setup.paper and not setup.quick
         else "approximately (quick)" if setup.paper else "no"),
    ], columns=["setting", "value"])
    rows.append(Table("parameters-run", "Run settings", run))
    tfp = pd.DataFrame({"country": list(setup.models[0].world.countries)})
    for m in setup.models:
        tfp[f"TFP ({m.name})"] = m.world.tfp
        tfp[f"labor ({m.name})"] = m.world.labor
    rows.append(Table("parameters-countries", "Country parameters (from the calibration vector "
                      "and the labor data)", tfp, formats={c: ".5f" for c in tfp.columns
                                                          if c != "country"}))
    return rows


#: JAX options set by :func:`jax_compilation_cache` (restored afterwards).
_JAX_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                      "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def jax_compilation_cache(path, *, min_compile_seconds: float = 0.5):
    """Use JAX's persistent compilation cache in ``path`` inside the ``with`` block only.

    ``hatrade replicate`` compiles the same functions (the world residual and Jacobian, the
    household elasticities, the welfare solves, ...) in every new process: about half of a
    cold ``--quick`` run. With this cache a later process loads the compiled executables
    instead (the results are the same: only compilation is skipped). The command line
    enables it (``--compile-cache``, the default) in ``<results cache>/jax``; a program that
    imports hatrade is not affected unless it uses this context manager, which restores
    JAX's previous settings (and resets its cache handle) on exit.

    Parameters
    ----------
    path : path-like
        Folder of the compiled executables (created when needed).
    min_compile_seconds : float
        Only compilations that took at least this long are stored.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    old = {k: getattr(jax.config, k) for k in _JAX_CACHE_OPTIONS}
    Path(path).mkdir(parents=True, exist_ok=True)
    cc.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:
        yield Path(path)
    finally:
        for k, v in old.items():
            jax.config.update(k, v)
        cc.reset_cache()


def replicate(out=None, *, quick: bool = False, setup: Setup | None = None,
              cache: Cache | None | bool = None, progress: ProgressSink | None = None,
              stages: Sequence[str] | None = None, parallel: bool = True) -> ReplicateResult:
    """Run the replication and write the results and the report into ``out``.

    Parameters
    ----------
    out : path-like, optional
        Output folder (default ``results/replicate`` or ``results/replicate-quick``); new,
        empty, or a previous replicate folder (its stage folders are replaced one by one).
    quick : bool
        Coarse grid (see :func:`paper_setup`); ignored when ``setup`` is given.
    setup : Setup, optional
        What to compute (default :func:`paper_setup`).
    cache : Cache, None or False
        The results cache (None: :class:`~hatrade.io.cache.Cache` at its default location;
        False: no cache at all).
    progress : ProgressSink, optional
    stages : names of the stages to run (default all, :data:`STAGE_NAMES`); stages that
        others need must be included (e.g. ``equilibrium``).
    parallel : bool
        After the equilibria, run the stages in threads (:data:`LANES`: the counterfactuals
        in one, the rest in another): JAX compiles and computes outside Python's
        lock, so on two or more cores the run takes about the longest lane instead of the
        sum. False: one stage at a time, in order.

    Returns
    -------
    ReplicateResult
    """
    from hatrade import __version__
    from hatrade.replicate.report import render_report, write_report
    from hatrade.io.atomic import atomic_dir, write_text

    t_start = time.perf_counter()
    setup = setup or paper_setup(quick=quick)
    if out is None:
        out = Path("results") / ("replicate-quick" if setup.quick else "replicate")
    names = list(STAGE_NAMES if stages is None else stages)
    unknown = [n for n in names if n not in _STAGE_FUNCS]
    if unknown:
        raise ReplicateError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGE_NAMES)}.")
    out = check_output_dir(out)
    _prepare_output_dir(out)
    if cache is None:
        cache = Cache()
    elif cache is False:
        cache = Cache(read=False, write=False)
    progress = progress or ProgressSink()
    titles = stage_titles(setup)
    ctx = _Ctx(setup=setup, cache=cache, out=out, progress=progress)
    started = _now()
    progress.run_start([(n, titles[n]) for n in names] + [("report", "Report")])
    by_name: dict[str, tuple[StageResult, list]] = {}

    def run_stage(k: int, name: str, lctx: _Ctx) -> None:
        progress.stage_start(k, name, titles[name])
        t0 = time.perf_counter()
        n_events = len(lctx.cache.events)
        sctx = replace(lctx, stage=name)
        with atomic_dir(out / name) as tmp:
            sctx.dir = tmp
            try:
                res = _STAGE_FUNCS[name](sctx)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - reported, the run goes on
                log.warning("stage %s failed: %s", name, err,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                res = StageResult(name, titles[name], status="failed",
                                  error=f"{type(err).__name__}: {err}",
                                  details=traceback.format_exc())
            if res.status != "ok" and res.error:
                write_text(tmp / "error.txt", res.error + "\n\n" + (res.details or ""))
                res.files.append(f"{name}/error.txt")
        res.title = titles[name]
        res.seconds = time.perf_counter() - t0
        ev = lctx.cache.events[n_events:]
        res.cache = {"hit": sum(e["outcome"] == "hit" for e in ev),
                     "miss": sum(e["outcome"] != "hit" for e in ev)}
        if setup.quick:
            res.text.insert(0, "Approximate (--quick): coarse asset grid.")
        by_name[name] = (res, list(ev))
        progress.stage_end(k, res)

    if parallel and "micro" in names:
        ctx.background["two_country"] = _Background(_two_country_elasticities, ctx,
                                                    "two-country")
    index = {n: k for k, n in enumerate(names)}

    def run_lane(lane: list[str], lctx: _Ctx) -> None:
        for name in lane:
            run_stage(index[name], name, lctx)

    first = [n for n in names if n == "equilibrium"]
    run_lane(first, _lane_view(ctx))  # every other stage needs the equilibria
    lanes = _lanes([n for n in names if n not in first], parallel)
    if len(lanes) == 1:
        run_lane(lanes[0], _lane_view(ctx))
    else:
        threads = [_Background(lambda lctx, lane=lane: run_lane(lane, lctx), ctx,
                               f"replicate-{lane[0]}") for lane in lanes]
        for t in threads:
            t.wait()
        for t in threads:
            t.result()
    results: list[StageResult] = [by_name[n][0] for n in names]
    work: list[dict] = []  # every cached result: computed or loaded, and how long it took
    for name in names:  # each stage ran on a view of the cache: collect its events
        ev = by_name[name][1]
        cache.events.extend(ev)
        work.extend({"stage": name, "result": e["label"], "kind": e["kind"],
                     "outcome": "loaded" if e["outcome"] == "hit" else "computed",
                     "seconds": e["seconds"], "key": e["key"][:12]} for e in ev)

    # ---- report
    progress.stage_start(len(names), "report", "Report (HTML, tables, figures)")
    t0 = time.perf_counter()
    repro = reproduction_table(setup, ctx.numbers)
    total = time.perf_counter() - t_start
    quick_note = (f"Coarse asset grid: {setup.n_a} points instead of 100; beta and wages are "
                  "re-solved on it from the published prices, so every number here "
                  "approximates the full replication (run without --quick for it).")
    caption = ("Published: the paper's numbers (source given); ours: this run. Difference = "
               "ours − published; agrees: |difference| ≤ tolerance (half a unit of the last "
               "published digit, or the precision of the published prices; for the welfare "
               "numbers the paper gives as 'about', the tolerance of the tests).")
    if setup.quick:
        caption = "APPROXIMATE (--quick run, coarse grid). " + caption
    if not setup.paper:
        caption = ("This run is not the paper's setup (other countries or household "
                   "parameters): the differences are not a reproduction check. ") + caption
    repro_table = Table("reproduction", "Published numbers next to ours", repro, caption,
                        formats={"published": ".6g", "ours": ".6g", "difference": ".3g",
                                 "tolerance": ".1g"})
    run_info = {"hatrade version": __version__, "started (UTC)": started,
                "total wall time (s)": f"{total:.1f}",
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                "cache": f"{cache.root} (read {'on' if cache.read else 'off'}, write "
                         f"{'on' if cache.write else 'off'})",
                "JAX compilation cache": _jax_cache_dir() or "off (every function compiled)",
                **{f"{k} version": v for k, v in _versions().items() if k != "hatrade"}}
    title = "Heterogeneous Agent Trade (Waugh 2023): replication report"
    intro = [f"Everything below is computed by this run from the shipped data "
             f"(hatrade {__version__}): {len(setup.models[0].world.countries)} countries, "
             f"models: {', '.join(m.title for m in setup.models)}."]
    report_stage = StageResult("report", "Report (HTML, tables, figures)", section=False)
    report_path = out / "report.html"
    summary = {"kind": _KIND, "hatrade_version": __version__, "created": started,
               "quick": setup.quick, "paper": setup.paper, "setup": setup.describe(),
               "stages": [{"name": s.name, "title": s.title, "status": s.status,
                           "seconds": s.seconds, "error": s.error, "cache": s.cache,
                           "files": s.files} for s in results],
               "numbers": ctx.numbers,
               "reproduction": repro.to_dict(orient="records"),
               "cache": cache.summary(), "work": work, "versions": _versions()}
    try:
        repro_csv = repro.to_csv(index=False, float_format="%.10g")
        write_text(out / "reproduction.csv", repro_csv)
        from hatrade.replicate.report import readme_section
        md = readme_section(repro, run={"version": __version__, "date": started[:10],
                                        "quick": setup.quick, "seconds": total,
                                        "stages": [(s.name, s.seconds) for s in results]})
        write_text(out / "reproduction.md", md)
        figdir = out / "figures"
        figdir.mkdir(exist_ok=True)
        for s in results:
            for f in s.figures:
                (figdir / f"{f.id}.png").write_bytes(f.png)
        report_stage.seconds = time.perf_counter() - t0
        all_stages = results + [report_stage]
        summary["stages"].append({"name": "report", "title": report_stage.title, "status": "ok",
                                  "seconds": report_stage.seconds, "error": None, "cache": {},
                                  "files": ["report.html"]})
        work_table = Table("work", "Results computed or loaded from the cache",
                           pd.DataFrame(work, columns=["stage", "result", "kind", "outcome",
                                                       "seconds", "key"]),
                           "seconds: time to compute the result (including JAX compilation "
                           "the first time a function runs), or to load and verify it.",
                           formats={"seconds": ".1f"})
        html_text = render_report(all_stages, title=title, quick=setup.quick,
                                  quick_note=quick_note, parameters=_parameter_tables(setup),
                                  reproduction=repro_table, run_info=run_info, intro=intro,
                                  timings=[work_table])
        write_report(report_path, html_text)
        report_stage.seconds = time.perf_counter() - t0
        summary["stages"][-1]["seconds"] = report_stage.seconds
        summary["total_seconds"] = time.perf_counter() - t_start
        from hatrade.io.atomic import jsonable
        write_text(out / "replicate.json",
                          json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n")
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001
        report_stage.status = "failed"
        report_stage.error = f"{type(err).__name__}: {err}"
        report_stage.details = traceback.format_exc()
        log.error("writing the report failed: %s", err)
    results.append(report_stage)
    progress.stage_end(len(names), report_stage)
    return ReplicateResult(out=out, report=report_path, stages=results, numbers=ctx.numbers,
                           reproduction=repro, cache=cache.summary(),
                           seconds=time.perf_counter() - t_start, quick=setup.quick)
