r"""Micro moments in the calibration: an outer loop over household parameters, and
robustness grids of independent calibrations on Dask (issue 3).

The inner calibration (:func:`hatrade.calibration.calibrate.calibrate`) fits the 46 trade-cost and TFP
parameters and beta (and psi_slope, when a home-share gap is targeted) to the gravity
moments for *given* household preferences. The paper also targets micro moments with the
household parameters; this module adds:

Outer loop (:func:`calibrate_micro`)
    Unknowns: a few household parameters :math:`x` among ``gamma``, ``sigma_eps`` and
    ``psi_slope``; equations: as many micro targets,

    .. math::

        F(x) = \mu\big(x, \vartheta^*(x)\big) - \mu^* = 0,

    where :math:`\vartheta^*(x)` is the inner calibration at preferences :math:`x` and
    :math:`\mu` are micro moments of its equilibrium (:data:`MICRO_TARGETS`):

    ``elasticity_gap``
        The mean household trade elasticity (Proposition 1's household elasticity, impact:
        w, R and :math:`\lambda` fixed, see :mod:`hatrade.analysis.elasticity`) of the bottom
        labor-income quintile minus that of the top quintile of ``country``, exact group
        means weighted by :math:`\lambda` (the ``elasticity`` column of
        :func:`hatrade.analysis.cross_section.micro_table`, ``bottom_20`` minus ``top_20``). Poor
        households are more price elastic (Auer et al. 2022), so the gap is negative.
    ``elasticity``
        The country's aggregate (trade-weighted, impact) elasticity, about -4.2 for the US.
    ``home_share_gap``
        Top minus bottom quintile home share (:func:`hatrade.calibration.calibrate.home_share_gaps`;
        the home-share gradient across income of Borusyak and Jaravel 2021).

    When ``psi_slope`` moves and ``home_share_gap`` is a target, that pair is handed to the
    inner calibration (psi_slope as its 47th parameter with the exact Newton Jacobian,
    ``inner_psi=True``, the default); the outer loop solves the rest.

    Each outer evaluation runs the inner calibration warm-started from the previous point
    (parameters, psi_slope, wages, beta and the household states). The outer update is a
    **Broyden (secant) quasi-Newton** method: the Jacobian :math:`B \approx dF/dx` starts
    from forward differences (one extra inner calibration per parameter, steps
    ``fd_step * max(1, |x_j|)``) and is then updated by Broyden's rank-one rule
    :math:`B \leftarrow B + (y - Bs)s^\top/s^\top s` after every trial point, with a
    backtracking line search on :math:`\max|F|`. Why not exact derivatives: :math:`F`
    involves the elasticities (derivatives of the household problem) through the whole
    inner calibration, so its exact Jacobian needs second derivatives of the household
    fixed point and an outer implicit-function step; with one to three unknowns, the secant
    method converges superlinearly for one inner calibration per step, and the inner
    calibrations are converged tightly (``inner_tol``) so that the differences are clean.
    When a step fails to reduce the residual after backtracking, the Jacobian is recomputed
    by differences once; if that does not help either, the loop stops with
    :class:`~hatrade.calibration.calibrate.CalibrationError` naming the targets that are off, the best
    point saved. Every outer step is logged and checkpointed (JSON, atomic); ``resume=True``
    continues from the checkpoint (the current point, Jacobian and warm start).

Robustness grids (:func:`calibration_grid`)
    Independent inner calibrations over a grid of household parameters (the Cartesian
    product of e.g. ``sigma_eps = 0.30, 0.33, 0.36`` and ``gamma = 1.2, 1.45``), as tasks
    on a Dask client: a ``LocalCluster`` by default, ``scheduler="tcp://host:port"`` for a
    real one, or ``executor="serial"``. Each point is written atomically to
    ``OUT/points/<name>/result.json`` (and ``parameters.csv`` in the published layout) as
    soon as it finishes, and ``OUT/grid_summary.csv`` is rewritten; running the same grid
    into the same folder again skips the finished points (same specification).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hatrade.io.validate import (BOOLEAN, FRACTION, check_keys, check_table, integer, loads_toml,
                        option_problems)
from hatrade.io.batch import completed_rows, dask_client
from hatrade.calibration.calibrate import (CalibrationError, CalibrationResult, GravitySetup,
                        calibrate, ek_setup, home_share_gaps)
from hatrade.analysis.cross_section import INCOME_GROUPS, group_weights
from hatrade.core.params import Household, ParameterError
from hatrade.io.atomic import jsonable, write_json, write_text
from hatrade.core.errors import EquilibriumError
from hatrade.solve.equilibrium import Equilibrium

__all__ = ["MICRO_TARGETS", "MICRO_PARAMS", "GRID_PARAMS", "MicroTarget",
           "MicroCalibrationResult", "micro_moments", "calibrate_micro", "load_micro_targets",
           "parse_micro_targets", "parse_grid", "grid_points", "calibration_grid"]

log = logging.getLogger(__name__)

#: Micro targets the outer loop knows (module docstring for the definitions).
MICRO_TARGETS = ("elasticity_gap", "elasticity", "home_share_gap")

#: Household parameters the outer loop may move, with the box it searches in (open).
MICRO_PARAMS: dict[str, tuple[float, float]] = {
    "gamma": (0.2, 10.0),
    "sigma_eps": (0.01, 5.0),
    "psi_slope": (-10.0, 10.0),
}

#: Household parameters a robustness grid may vary.
GRID_PARAMS = ("gamma", "sigma_eps", "psi_slope", "phi", "a_max")

_STATUS_OK, _STATUS_FAILED = "ok", "failed"


# ----------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class MicroTarget:
    """One micro target: ``name`` (one of :data:`MICRO_TARGETS`), its ``value`` and the
    ``country`` whose households it describes."""

    name: str
    value: float
    country: str = "USA"

    @property
    def key(self) -> str:
        return f"{self.name}_{self.country}"


def _check_targets(targets, countries, where: str = "targets") -> tuple[MicroTarget, ...]:
    if isinstance(targets, Mapping):
        targets = [MicroTarget(name=k, value=v) for k, v in targets.items()]
    out = []
    for k, t in enumerate(targets):
        if isinstance(t, Mapping):
            unknown = sorted(set(t) - {"name", "value", "country"})
            if unknown:
                raise ParameterError(f"{where}[{k}]: unknown key(s) {unknown}; allowed: name, "
                                     "value, country.")
            if "name" not in t or "value" not in t:
                raise ParameterError(f"{where}[{k}]: needs 'name' and 'value'.")
            t = MicroTarget(name=t["name"], value=t["value"], country=t.get("country", "USA"))
        if not isinstance(t, MicroTarget):
            raise ParameterError(f"{where}[{k}] = {t!r}: give a MicroTarget or a table with "
                                 "name, value, country.")
        if t.name not in MICRO_TARGETS:
            raise ParameterError(f"{where}[{k}]: name = {t.name!r} is not allowed: use one of "
                                 f"{', '.join(MICRO_TARGETS)}.")
        if isinstance(t.value, bool) or not isinstance(t.value, (int, float, np.floating)) \
                or not math.isfinite(float(t.value)):
            raise ParameterError(f"{where}[{k}] ({t.name}): value = {t.value!r} is not allowed: "
                                 "it must be a finite number.")
        if t.name == "home_share_gap" and not -1.0 < float(t.value) < 1.0:
            raise ParameterError(f"{where}[{k}] (home_share_gap): value = {t.value!r} is not "
                                 "allowed: it must be in (-1, 1) (a difference of two shares).")
        if t.country not in countries:
            raise ParameterError(f"{where}[{k}] ({t.name}): country = {t.country!r} is not "
                                 f"allowed: use one of {', '.join(countries)}.")
        out.append(MicroTarget(name=t.name, value=float(t.value), country=t.country))
    keys = [t.key for t in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ParameterError(f"{where}: duplicate target(s) {dup} (one per name and country).")
    if not out:
        raise ParameterError(f"{where}: no targets; give at least one of "
                             f"{', '.join(MICRO_TARGETS)}.")
    return tuple(out)


def _check_params(params, household: Household, where: str = "params") -> tuple[str, ...]:
    if isinstance(params, str):
        params = [params]
    params = tuple(params)
    for p in params:
        if p not in MICRO_PARAMS:
            raise ParameterError(f"{where}: {p!r} is not allowed: the outer loop moves "
                                 f"{', '.join(MICRO_PARAMS)}.")
        lo, hi = MICRO_PARAMS[p]
        v = getattr(household, p)
        if not lo < v < hi:
            raise ParameterError(f"{where}: the start {p} = {v!r} is out of range: {p} must be "
                                 f"in ({lo}, {hi}).")
    dup = sorted({p for p in params if params.count(p) > 1})
    if dup:
        raise ParameterError(f"{where}: duplicate parameter(s) {dup}.")
    if not params:
        raise ParameterError(f"{where}: no parameters; give some of {', '.join(MICRO_PARAMS)}.")
    return params


_MICRO_TOP = ("params", "target", "targets", "start", "options")
_MICRO_OPTIONS = ("tol", "max_iter", "inner_tol", "inner_max_iter", "fd_step", "inner_psi")
#: Typed checks of [options], in the order they are reported (the first failure is raised).
_MICRO_OPTION_RULES = {"tol": FRACTION, "inner_tol": FRACTION, "fd_step": FRACTION,
                       "max_iter": integer(1), "inner_max_iter": integer(1),
                       "inner_psi": BOOLEAN}


def parse_micro_targets(raw: dict, source: str = "<dict>", countries=None) -> dict:
    """Validate a micro-targets table (the TOML layout of :func:`load_micro_targets`).

    Returns a dict with ``params`` (tuple), ``targets`` (tuple of :class:`MicroTarget`),
    ``start`` (dict of starting household values) and ``options`` (keyword arguments of
    :func:`calibrate_micro`). Every error names the file and the field.
    """
    if countries is None:
        from hatrade.data import COUNTRIES
        countries = tuple(COUNTRIES)
    check_keys(raw, _MICRO_TOP, source, ParameterError)
    params = raw.get("params")
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ParameterError(f"{source}: params = {params!r} is not allowed: give a list of "
                             f"parameter names among {', '.join(MICRO_PARAMS)}.")
    for p in params:
        if p not in MICRO_PARAMS:
            raise ParameterError(f"{source}: params: {p!r} is not allowed: use "
                                 f"{', '.join(MICRO_PARAMS)}.")
    tg = raw.get("target", raw.get("targets"))
    if "target" in raw and "targets" in raw:
        raise ParameterError(f"{source}: give [[target]] tables or targets, not both.")
    if not isinstance(tg, list):
        raise ParameterError(f"{source}: targets missing: add [[target]] tables with name, "
                             "value and country.")
    targets = _check_targets(tg, tuple(countries), where=f"{source}: target")
    start = raw.get("start", {}) or {}
    if not isinstance(start, dict):
        raise ParameterError(f"{source}: [start] must be a table of household parameters.")
    for k, v in start.items():
        if k not in MICRO_PARAMS:
            raise ParameterError(f"{source}: [start] {k!r} is not allowed: use "
                                 f"{', '.join(MICRO_PARAMS)}.")
        lo, hi = MICRO_PARAMS[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < float(v) < hi:
            raise ParameterError(f"{source}: [start] {k} = {v!r} is out of range: {k} must be "
                                 f"a number in ({lo}, {hi}).")
    opts = check_table(raw.get("options"), _MICRO_OPTIONS, f"{source}: [options]",
                       ParameterError)
    problems = option_problems(opts, _MICRO_OPTION_RULES)
    if problems:
        raise ParameterError(f"{source}: [options] {problems[0]}.")
    return {"params": tuple(params), "targets": targets,
            "start": {k: float(v) for k, v in start.items()}, "options": dict(opts)}


def load_micro_targets(path, countries=None) -> dict:
    """Read a micro-targets TOML file::

        params = ["gamma", "sigma_eps"]   # household parameters the outer loop moves

        [[target]]
        name = "elasticity_gap"           # elasticity_gap | elasticity | home_share_gap
        country = "USA"                   # default USA
        value = -0.5

        [[target]]
        name = "elasticity"
        value = -4.2

        [start]                           # optional starting values (default: the
        gamma = 1.45                      # calibration's household)

        [options]                         # optional, see calibrate_micro
        tol = 1e-6
        max_iter = 20
        fd_step = 1e-4
        inner_tol = 1e-9
        inner_psi = true

    See :func:`parse_micro_targets` for the returned dict.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParameterError(f"cannot read micro-targets file {path}: "
                             f"{err.strerror or err}") from None
    return parse_micro_targets(loads_toml(text, str(path), ParameterError), source=str(path),
                               countries=countries)


# ----------------------------------------------------------------------------- moments

def _income_group_mean(values, lam, labor_income, group: str) -> float:
    lo, hi = INCOME_GROUPS[group]
    wt = group_weights(labor_income.ravel(), lam.ravel(), lo, hi)
    return float(np.sum(wt * values.ravel()) / np.sum(wt))


def micro_moments(eq: Equilibrium, targets: Sequence[MicroTarget]) -> dict:
    """The model values of micro targets at an equilibrium: ``{target.key: value}``
    (definitions in the module docstring)."""
    from hatrade.analysis.elasticity import trade_elasticities

    out: dict = {}
    elas: dict = {}
    gaps = None
    for t in targets:
        if t.name == "home_share_gap":
            gaps = home_share_gaps(eq) if gaps is None else gaps
            out[t.key] = float(gaps[t.country])
            continue
        if t.country not in elas:
            elas[t.country] = trade_elasticities(eq, t.country)
        r = elas[t.country]
        if t.name == "elasticity":
            out[t.key] = float(r.theta)
        else:  # elasticity_gap
            i = eq.world.index(t.country)
            ds = r.micro
            lam = ds["distribution"].values
            inc = float(eq.prices.w[i]) * np.broadcast_to(ds["z"].values[None, :], lam.shape)
            el = ds["household_elasticity"].values
            out[t.key] = (_income_group_mean(el, lam, inc, "bottom_20")
                          - _income_group_mean(el, lam, inc, "top_20"))
    return out


# ----------------------------------------------------------------------------- outer loop

@dataclass
class MicroCalibrationResult:
    """The outer loop's solution.

    Attributes
    ----------
    params : dict
        The household parameters it moved (and psi_slope when the inner calibration
        pinned it), at the solution.
    household : Household
        The full household parameters there.
    inner : CalibrationResult
        The inner calibration at the solution (trade-cost parameters, equilibrium).
    moments, targets : dict key -> value (``<name>_<country>``)
    converged, iterations (outer steps), evaluations (inner calibrations), residual
    (max |moment - target|), jacobian (the final secant Jacobian, rows targets, columns
    outer parameters), history (one record per inner calibration), seconds.
    """

    params: dict
    household: Household
    inner: CalibrationResult
    moments: dict
    targets: dict
    converged: bool
    iterations: int
    evaluations: int
    residual: float
    jacobian: np.ndarray | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        """One row per micro target: target, country, target value, model, difference."""
        rows = []
        for k, v in self.targets.items():
            name, country = k.rsplit("_", 1)
            m = self.moments[k]
            rows.append({"target": name, "country": country, "target_value": v,
                         "model": m, "difference": m - v})
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        return jsonable({"params": self.params, "household": self.household.to_dict(),
                          "moments": self.moments, "targets": self.targets,
                          "converged": self.converged, "iterations": self.iterations,
                          "evaluations": self.evaluations, "residual": self.residual,
                          "beta": self.inner.equilibrium.beta,
                          "gravity_residual": self.inner.residual,
                          "jacobian": None if self.jacobian is None else self.jacobian,
                          "seconds": self.seconds})


class _Warm:
    """The inner calibration's warm start: parameters, psi_slope, wages, beta, states."""

    def __init__(self, theta, psi, wages, beta, state=None):
        self.theta = np.asarray(theta, float)
        self.psi = psi
        self.wages = None if wages is None else np.asarray(wages, float)
        self.beta = float(beta)
        self.state = state

    @classmethod
    def of(cls, res: CalibrationResult) -> "_Warm":
        return cls(res.params, res.psi_slope, res.equilibrium.prices.w, res.equilibrium.beta,
                   res.equilibrium.state)

    def to_json(self) -> dict:
        return {"theta": self.theta.tolist(), "psi_slope": self.psi,
                "wages": None if self.wages is None else self.wages.tolist(), "beta": self.beta}

    @classmethod
    def from_json(cls, d) -> "_Warm":
        return cls(d["theta"], d.get("psi_slope"), d.get("wages"), d["beta"])


def _spec_fingerprint(params, targets, inner_psi, household, setup, gravity_targets) -> str:
    fixed = {k: v for k, v in household.to_dict().items() if k not in params}
    d = {"params": list(params), "targets": [(t.name, t.country, t.value) for t in targets],
         "inner_psi": inner_psi, "household": fixed,
         "countries": list(setup.countries),
         "gravity_targets": None if gravity_targets is None
         else np.round(np.asarray(gravity_targets, float), 12).tolist()}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def calibrate_micro(theta0, household: Household, targets, params, *,
                    setup: GravitySetup | None = None, gravity_targets=None, labor=None,
                    R: float = 1.01, wages=None, beta_guess: float = 0.93, tol: float = 1e-6,
                    max_iter: int = 20, inner_tol: float = 1e-9, inner_max_iter: int = 15,
                    fd_step: float = 1e-4, inner_psi: bool = True,
                    checkpoint: str | Path | None = None, resume: bool = False,
                    progress: Callable[[int, float], None] | None = None
                    ) -> MicroCalibrationResult:
    r"""Calibrate household parameters to micro targets around the gravity calibration.

    Parameters
    ----------
    theta0 : array
        Starting trade-cost/TFP parameters of the inner calibration (46 for the EK setup).
    household : Household
        Starting household parameters (those not in ``params`` stay fixed).
    targets : sequence of MicroTarget (or dicts with name, value, country), or a dict
        ``{name: value}`` (country USA)
        Micro targets (:data:`MICRO_TARGETS`; definitions in the module docstring).
    params : sequence of str
        Household parameters to move (:data:`MICRO_PARAMS`); as many as targets.
    setup, gravity_targets, labor, R, wages, beta_guess :
        As ``setup``, ``targets``, ``labor``, ``R``, ``wages``, ``beta_guess`` of
        :func:`hatrade.calibration.calibrate.calibrate` (the inner calibration).
    tol : float
        Convergence: max |micro moment - target|.
    max_iter : int
        Outer (Broyden) steps.
    inner_tol, inner_max_iter : tolerance and Newton iterations of each inner calibration
        (tight, so that finite differences and secant updates are clean).
    fd_step : float
        Relative step of the finite-difference Jacobian.
    inner_psi : bool
        Hand psi_slope with a ``home_share_gap`` target to the inner calibration (exact
        Newton), when both are given. With False the outer loop moves it too.
    checkpoint : path, optional
        JSON file written after every inner calibration; ``resume=True`` continues from it.
    progress : callable(step, residual), optional.

    Returns
    -------
    MicroCalibrationResult

    Raises
    ------
    ParameterError
        Unknown target or parameter names, a start out of range, unequal numbers of
        targets and parameters, a checkpoint of another specification.
    CalibrationError
        The outer loop stalled or reached ``max_iter`` (best point saved and reported).
    """
    t0 = time.perf_counter()
    setup = setup or ek_setup()
    targets = _check_targets(targets, setup.countries)
    params = _check_params(params, household)
    for name, v in (("tol", tol), ("inner_tol", inner_tol), ("fd_step", fd_step)):
        if not (isinstance(v, (int, float)) and 0 < v < 1):
            raise ParameterError(f"{name} = {v!r} is not allowed: it must be a number in (0, 1).")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ParameterError(f"max_iter = {max_iter!r} is not allowed: it must be an integer "
                             ">= 1.")
    inner_gap = None
    outer_targets = list(targets)
    outer_params = list(params)
    gaps = [t for t in targets if t.name == "home_share_gap"]
    if inner_psi and "psi_slope" in params and gaps:
        inner_gap = gaps[0]
        outer_targets.remove(inner_gap)
        outer_params.remove("psi_slope")
    if len(outer_targets) != len(outer_params):
        raise ParameterError(
            f"{len(targets)} target(s) ({', '.join(t.key for t in targets)}) for "
            f"{len(params)} parameter(s) ({', '.join(params)}): give as many targets as "
            "parameters.")
    k = len(outer_params)
    hh0 = household.replace(beta=None)
    fp = _spec_fingerprint(params, targets, inner_psi, hh0, setup, gravity_targets)
    ckpt = Path(checkpoint) if checkpoint else None
    lo = np.array([MICRO_PARAMS[p][0] for p in outer_params])
    hi = np.array([MICRO_PARAMS[p][1] for p in outer_params])

    x = np.array([getattr(hh0, p) for p in outer_params], float)
    warm = _Warm(theta0, hh0.psi_slope if inner_gap else None, wages, beta_guess)
    B = None
    B_fresh = False  # B is the difference Jacobian at the current x (plus secant updates)
    history: list = []
    best: dict | None = None
    step = 0
    if resume and ckpt and ckpt.exists():
        saved = json.loads(ckpt.read_text())
        if saved.get("fingerprint") != fp:
            raise ParameterError(f"checkpoint {ckpt} is from another micro calibration "
                                 "(parameters, targets or fixed household values differ); "
                                 "use a new checkpoint or the same specification.")
        x = np.asarray(saved["x"], float)
        warm = _Warm.from_json(saved["warm"])
        B = None if saved.get("B") is None else np.asarray(saved["B"], float)
        history = saved.get("history", [])
        best = saved.get("best")
        step = int(saved.get("step", 0))
        log.info("micro calibration: resuming from %s (step %d, x %s)", ckpt, step, x.tolist())

    n_eval = 0

    def evaluate(xv, kind: str, start: _Warm):
        """Inner calibration at xv (warm-started from ``start``); micro residuals."""
        nonlocal n_eval
        hh = hh0.replace(**{p: float(v) for p, v in zip(outer_params, xv)})
        if inner_gap is not None and start.psi is not None:
            hh = hh.replace(psi_slope=float(start.psi))
        res = calibrate(start.theta, hh, setup=setup, targets=gravity_targets, labor=labor,
                        R=R, wages=start.wages, beta_guess=start.beta, tol=inner_tol,
                        max_iter=inner_max_iter, state=start.state,
                        home_share_gap=None if inner_gap is None else inner_gap.value,
                        gap_country=None if inner_gap is None else inner_gap.country)
        n_eval += 1
        mom = micro_moments(res.equilibrium, targets)
        F = np.array([mom[t.key] - t.value for t in outer_targets])
        rec = {"step": step, "kind": kind, **{p: float(v) for p, v in zip(outer_params, xv)},
               "residual": float(np.max(np.abs(F))) if k else 0.0,
               **{f"model_{kk}": v for kk, v in mom.items()},
               "inner_iterations": res.iterations, "inner_residual": res.residual,
               "psi_slope": res.household.psi_slope, "beta": res.equilibrium.beta,
               "seconds": time.perf_counter() - t0}
        history.append(rec)
        log.info("micro calibration: step %d (%s): %s -> max |moment - target| %.3e", step,
                 kind, ", ".join(f"{p} {v:.8g}" for p, v in zip(outer_params, xv)),
                 rec["residual"])
        return F, res, mom

    def save():
        if ckpt:
            write_json(ckpt, jsonable({
                "kind": "micro-calibration", "fingerprint": fp, "params": outer_params,
                "targets": [t.key for t in outer_targets], "x": x, "warm": warm.to_json(),
                "B": B, "step": step, "best": best, "history": history}))

    def fd_jacobian(F0, base: _Warm) -> np.ndarray:
        J = np.empty((k, k))
        for j in range(k):
            h = fd_step * max(1.0, abs(x[j]))
            if x[j] + h >= hi[j]:
                h = -h
            xj = x.copy()
            xj[j] += h
            Fj, _, _ = evaluate(xj, f"jacobian[{outer_params[j]}]", base)
            J[:, j] = (Fj - F0) / h
        return J

    def finish(res, mom, F, converged):
        full = {p: float(v) for p, v in zip(outer_params, x)}
        if inner_gap is not None:
            full["psi_slope"] = float(res.psi_slope)
        return MicroCalibrationResult(
            params=full, household=res.household, inner=res, moments=mom,
            targets={t.key: t.value for t in targets}, converged=converged, iterations=step,
            evaluations=n_eval, residual=float(np.max(np.abs(F))) if k else res.residual,
            jacobian=B, history=history, seconds=time.perf_counter() - t0)

    F, res, mom = evaluate(x, "point", warm)
    warm = _Warm.of(res)
    err = float(np.max(np.abs(F))) if k else 0.0
    if best is None or err < best["residual"]:
        best = {"x": x.tolist(), "residual": err, "warm": warm.to_json(), "moments": mom}
    save()
    if progress:
        progress(step, err)
    while err >= tol:
        if step >= max_iter:
            break
        if B is None:
            B = fd_jacobian(F, warm)
            B_fresh = True
            save()
        try:
            s = -np.linalg.solve(B, F)
        except np.linalg.LinAlgError:
            s = -np.linalg.lstsq(B, F, rcond=None)[0]
        # keep the trial inside the search box
        room = np.where(s > 0, (hi - x) * 0.9 / np.where(s > 0, s, 1.0),
                        np.where(s < 0, (lo - x) * 0.9 / np.where(s < 0, s, -1.0), np.inf))
        t = float(min(1.0, np.min(room)))
        accepted = False
        for _ in range(4):
            x_try = x + t * s
            try:
                F_try, res_try, mom_try = evaluate(x_try, "step", warm)
            except (CalibrationError, EquilibriumError) as e:
                log.warning("micro calibration: inner calibration failed at %s (%s); "
                            "halving the step", x_try.tolist(), e)
                t *= 0.5
                continue
            e_try = float(np.max(np.abs(F_try)))
            dx = x_try - x
            B = B + np.outer(F_try - F - B @ dx, dx) / (dx @ dx)  # Broyden, also on failure
            if np.isfinite(e_try) and e_try < (1.0 - 1e-4 * t) * err:
                accepted = True
                break
            t *= 0.5
        step += 1
        if not accepted:
            save()
            if B_fresh:  # even the difference Jacobian at this point gives no descent
                break
            log.info("micro calibration: no descent; recomputing the Jacobian by differences")
            B = None
            continue
        B_fresh = False
        x, F, err, res, mom = x_try, F_try, e_try, res_try, mom_try
        warm = _Warm.of(res)
        if err < best["residual"]:
            best = {"x": x.tolist(), "residual": err, "warm": warm.to_json(), "moments": mom}
        save()
        if progress:
            progress(step, err)
    if err < tol:
        return finish(res, mom, F, True)
    off = ", ".join(f"{t.key} (model {best['moments'][t.key]:.6g} vs target {t.value:.6g})"
                    for t in outer_targets)
    raise CalibrationError(
        f"micro calibration stopped without reaching tol {tol:.1e}: best max |moment - "
        f"target| {best['residual']:.3e} at "
        f"{', '.join(f'{p} = {v:.8g}' for p, v in zip(outer_params, best['x']))} after "
        f"{step} steps ({n_eval} inner calibrations). Targets: {off}. The best point is "
        f"saved{' in ' + str(ckpt) if ckpt else ''}; try resuming, another start, or "
        "targets the model can reach.")


# ----------------------------------------------------------------------------- grids

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
                raise ParameterError(f"grid {s!r} is malformed: write NAME=V1,V2,... (e.g. "
                                     "sigma_eps=0.30,0.33,0.36).")
            name, vals = (a.strip() for a in s.split("="))
            parsed.append((name, [v.strip() for v in vals.split(",")]))
        items = parsed
    for name, vals in items:
        if name not in GRID_PARAMS:
            raise ParameterError(f"grid parameter {name!r} is not allowed: use one of "
                                 f"{', '.join(GRID_PARAMS)}.")
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
                raise ParameterError(f"grid {name}: {v!r} is not a number (write "
                                     f"{name}=V1,V2,...).") from None
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
                    raise ParameterError(f"grid point {name}: {p} = {v!r} is out of range: {p} "
                                         f"must be in ({lo}, {hi}).")
        pts.append((name, hh))
    return pts


def _grid_point(task: dict, out_dir: str) -> dict:
    """One grid point (a Dask task): calibrate, write the point's folder, return its row."""
    from hatrade.data import write_parameter_file

    t0 = time.perf_counter()
    folder = Path(out_dir) / "points" / task["name"]
    hh = Household(**task["household"])
    row = {"name": task["name"], "fingerprint": task["fingerprint"], **task["point"]}
    try:
        kw = task["calibrate"]
        res = calibrate(np.asarray(task["theta0"]), hh, setup=task["setup"],
                        targets=None if task["targets"] is None else np.asarray(task["targets"]),
                        labor=None if task["labor"] is None else np.asarray(task["labor"]),
                        wages=None if task["wages"] is None else np.asarray(task["wages"]),
                        **kw)
        row.update(status=_STATUS_OK, converged=res.converged, iterations=res.iterations,
                   residual=res.residual, beta=res.equilibrium.beta,
                   psi_slope=res.household.psi_slope, equilibrium_solves=res.equilibrium_solves,
                   seconds=time.perf_counter() - t0)
        detail = {**row, "params": res.params, "wages": res.equilibrium.prices.w,
                  "moments": res.moments, "targets": res.targets,
                  "household": res.household.to_dict()}
        if len(res.params) == 46:
            write_parameter_file(folder / "parameters.csv", res.params)
    except (CalibrationError, EquilibriumError, ParameterError, FloatingPointError,
            np.linalg.LinAlgError) as err:
        row.update(status=_STATUS_FAILED, error=f"{type(err).__name__}: {err}",
                   seconds=time.perf_counter() - t0)
        detail = row
        log.warning("grid point %s failed: %s", task["name"], err)
    write_text(folder / "result.json", json.dumps(jsonable(detail), indent=1))
    return row


def calibration_grid(grid, theta0, household: Household, out_dir, *,
                     setup: GravitySetup | None = None, targets=None, labor=None,
                     R: float = 1.01, wages=None, beta_guess: float = 0.93, tol: float = 1e-8,
                     max_iter: int = 15, home_share_gap: float | None = None,
                     gap_country: str | None = None, scheduler: str | None = None,
                     executor: str = "dask", workers: int | None = None,
                     processes: bool = True, retry_failed: bool = False,
                     progress: Callable[[int, int, dict], None] | None = None) -> pd.DataFrame:
    """Independent calibrations over a grid of household parameters (module docstring).

    Parameters
    ----------
    grid : list of "name=v1,v2" strings or dict name -> values (:func:`parse_grid`)
    theta0, household, setup, targets, labor, R, wages, beta_guess, tol, max_iter,
    home_share_gap, gap_country : as :func:`hatrade.calibration.calibrate.calibrate` (every point starts
        from the same ``theta0`` and prices).
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
    if executor not in ("dask", "serial"):
        raise ParameterError(f"executor = {executor!r} is not allowed: use 'dask' or 'serial'.")
    setup = setup or ek_setup()
    points = grid_points(grid, household)
    gridd = parse_grid(grid)
    if home_share_gap is not None and "psi_slope" in gridd:
        raise ParameterError("grid over psi_slope with home_share_gap: psi_slope is then "
                             "calibrated; vary it or target the gap, not both.")
    theta0 = np.asarray(theta0, float)
    if theta0.shape != (setup.n_params,):
        raise ParameterError(f"parameter vector has {theta0.size} entries; this setup needs "
                             f"{setup.n_params}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"output folder {out} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    common = {"theta0": theta0.tolist(), "targets": None if targets is None
              else np.asarray(targets, float).tolist(),
              "labor": None if labor is None else np.asarray(labor, float).tolist(),
              "wages": None if wages is None else np.asarray(wages, float).tolist(),
              "calibrate": {"R": float(R), "beta_guess": float(beta_guess), "tol": float(tol),
                            "max_iter": int(max_iter), "home_share_gap": home_share_gap,
                            "gap_country": gap_country}}
    setup_fp = hashlib.sha256(np.ascontiguousarray(setup.G).tobytes()
                              + json.dumps(list(setup.countries)).encode()).hexdigest()[:16]
    tasks = []
    for (name, hh), combo in zip(points, itertools.product(*gridd.values())):
        spec = {**common, "household": hh.to_dict(), "setup_fp": setup_fp}
        fp = hashlib.sha256(json.dumps(jsonable(spec), sort_keys=True).encode()).hexdigest()[:16]
        tasks.append({**common, "name": name, "household": hh.to_dict(), "setup": setup,
                      "point": dict(zip(gridd, combo)), "fingerprint": fp})
    rows: dict = {}
    for tk in tasks:
        try:
            saved = json.loads((out / "points" / tk["name"] / "result.json").read_text())
        except (OSError, ValueError):
            continue
        if saved.get("fingerprint") != tk["fingerprint"]:
            log.info("grid point %s: specification changed; it is re-run", tk["name"])
            continue
        if saved.get("status") == _STATUS_FAILED and retry_failed:
            continue
        rows[tk["name"]] = {**{c: saved.get(c) for c in _ROW_KEYS if c in saved},
                            **tk["point"], "resumed": True}
    todo = [tk for tk in tasks if tk["name"] not in rows]
    total = len(tasks)

    def write_summary():
        df = _grid_table(tasks, rows, gridd)
        write_text(out / "grid_summary.csv", df.to_csv(index=False, float_format="%.12g"))
        write_text(out / "grid.json", json.dumps(jsonable({
            "kind": "calibration-grid", "grid": gridd, "points": [t["name"] for t in tasks],
            "done": [n for n in rows], "pending": [t["name"] for t in todo
                                                   if t["name"] not in rows]}), indent=1))
        return df

    write_summary()
    if progress:
        for r in rows.values():
            progress(len(rows), total, r)
    if rows:
        log.info("calibration grid: %d of %d points already done", len(rows), total)

    def finished(row):
        rows[row["name"]] = row
        write_summary()
        if progress:
            progress(len(rows), total, row)

    if todo and executor == "serial":
        for tk in todo:
            finished(_grid_point(tk, str(out)))
    elif todo:
        with dask_client(scheduler, workers, len(todo), processes=processes) as client:
            futs = [client.submit(_grid_point, tk, str(out.absolute()), pure=False,
                                  key=f"hatrade-grid-{tk['name']}-{tk['fingerprint']}")
                    for tk in todo]
            for row in completed_rows(futs, todo, lambda tk, error: {
                    "name": tk["name"], "fingerprint": tk["fingerprint"], **tk["point"],
                    "status": _STATUS_FAILED, "error": error}):
                finished(row)
    return write_summary()


_ROW_KEYS = ("name", "status", "converged", "iterations", "residual", "beta", "psi_slope",
             "equilibrium_solves", "seconds", "error", "fingerprint")


def _grid_table(tasks, rows, gridd) -> pd.DataFrame:
    cols = ["name", *gridd, "status", "converged", "iterations", "residual", "beta",
            "psi_slope", "equilibrium_solves", "seconds", "resumed", "error"]
    recs = []
    for tk in tasks:
        r = rows.get(tk["name"])
        if r is None:
            recs.append({"name": tk["name"], **tk["point"], "status": "pending"})
        else:
            recs.append({**tk["point"], "resumed": False,
                         **{c: r.get(c) for c in cols if c in r}})
    return pd.DataFrame(recs, columns=cols)
