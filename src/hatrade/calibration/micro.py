r"""Micro moments in the calibration: an outer loop over household parameters.

The inner calibration (:func:`hatrade.calibration.calibrate.calibrate`) fits the 46
trade-cost and TFP parameters and beta (and psi_slope, when a home-share gap is targeted)
to the gravity moments for *given* household preferences. The paper also targets micro
moments with the household parameters; this module adds:

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
    :class:`~hatrade.calibration.calibrate.CalibrationError` naming the targets that are off,
    the best point saved. Every outer step is logged and checkpointed (JSON, atomic);
    ``resume=True`` continues from the checkpoint (the current point, Jacobian and warm
    start).

Robustness grids of independent calibrations are in :mod:`hatrade.calibration.grid`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from hatrade.analysis.cross_section import INCOME_GROUPS, group_weights
from hatrade.calibration.calibrate import (
    CalibrationError,
    CalibrationResult,
    GravitySetup,
    calibrate,
    ek_setup,
    home_share_gaps,
)
from hatrade.calibration.micro_targets import (
    MICRO_PARAMS,
    MICRO_TARGETS,
    MicroTarget,
    check_params,
    check_targets,
    load_micro_targets,
    parse_micro_targets,
)
from hatrade.core.errors import EquilibriumError
from hatrade.core.params import Household, ParameterError
from hatrade.io.atomic import jsonable, write_json
from hatrade.io.fingerprint import fingerprint
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "MICRO_TARGETS",
    "MICRO_PARAMS",
    "MicroTarget",
    "MicroCalibrationResult",
    "micro_moments",
    "calibrate_micro",
    "load_micro_targets",
    "parse_micro_targets",
]

log = logging.getLogger(__name__)

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
            out[t.key] = _income_group_mean(el, lam, inc, "bottom_20") - _income_group_mean(
                el, lam, inc, "top_20"
            )
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
            rows.append(
                {
                    "target": name,
                    "country": country,
                    "target_value": v,
                    "model": m,
                    "difference": m - v,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        return jsonable(
            {
                "params": self.params,
                "household": self.household.to_dict(),
                "moments": self.moments,
                "targets": self.targets,
                "converged": self.converged,
                "iterations": self.iterations,
                "evaluations": self.evaluations,
                "residual": self.residual,
                "beta": self.inner.equilibrium.beta,
                "gravity_residual": self.inner.residual,
                "jacobian": None if self.jacobian is None else self.jacobian,
                "seconds": self.seconds,
            }
        )


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
        return cls(
            res.params,
            res.psi_slope,
            res.equilibrium.prices.w,
            res.equilibrium.beta,
            res.equilibrium.state,
        )

    def to_json(self) -> dict:
        return {
            "theta": self.theta.tolist(),
            "psi_slope": self.psi,
            "wages": None if self.wages is None else self.wages.tolist(),
            "beta": self.beta,
        }

    @classmethod
    def from_json(cls, d) -> "_Warm":
        return cls(d["theta"], d.get("psi_slope"), d.get("wages"), d["beta"])


def _spec_fingerprint(params, targets, inner_psi, household, setup, gravity_targets) -> str:
    """The checkpoint's specification (:func:`hatrade.io.fingerprint.fingerprint`, without
    the code revision: a checkpoint is a starting point, which other code may resume)."""
    fixed = {k: v for k, v in household.to_dict().items() if k not in params}
    d = {
        "params": list(params),
        "targets": [(t.name, t.country, t.value) for t in targets],
        "inner_psi": inner_psi,
        "household": fixed,
        "countries": list(setup.countries),
        "gravity_targets": None
        if gravity_targets is None
        else np.round(np.asarray(gravity_targets, float), 12).tolist(),
    }
    return fingerprint("micro-calibration", d, length=16, revision=False)


def calibrate_micro(
    theta0,
    household: Household,
    targets,
    params,
    *,
    setup: GravitySetup | None = None,
    gravity_targets=None,
    labor=None,
    R: float = 1.01,
    wages=None,
    beta_guess: float = 0.93,
    tol: float = 1e-6,
    max_iter: int = 20,
    inner_tol: float = 1e-9,
    inner_max_iter: int = 15,
    fd_step: float = 1e-4,
    inner_psi: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, float], None] | None = None,
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
    targets = check_targets(targets, setup.countries)
    params = check_params(params, household)
    for name, v in (("tol", tol), ("inner_tol", inner_tol), ("fd_step", fd_step)):
        if not (isinstance(v, (int, float)) and 0 < v < 1):
            raise ParameterError(f"{name} = {v!r} is not allowed: it must be a number in (0, 1).")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ParameterError(f"max_iter = {max_iter!r} is not allowed: it must be an integer >= 1.")
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
            "parameters."
        )
    hh0 = household.replace(beta=None)
    loop = _OuterLoop(
        hh0=hh0,
        targets=targets,
        outer_targets=outer_targets,
        outer_params=outer_params,
        inner_gap=inner_gap,
        setup=setup,
        fd_step=fd_step,
        inner_kw={
            "targets": gravity_targets,
            "labor": labor,
            "R": R,
            "tol": inner_tol,
            "max_iter": inner_max_iter,
        },
        checkpoint=Path(checkpoint) if checkpoint else None,
        fingerprint=_spec_fingerprint(params, targets, inner_psi, hh0, setup, gravity_targets),
        warm=_Warm(theta0, hh0.psi_slope if inner_gap else None, wages, beta_guess),
        t0=t0,
    )
    if resume and loop.ckpt and loop.ckpt.exists():
        loop.resume()
    return loop.run(tol, max_iter, progress)


class _OuterLoop:
    """The state of one outer Broyden loop of :func:`calibrate_micro`: the current point
    ``x``, the Jacobian estimate ``B``, the warm start, the history and the best point."""

    def __init__(
        self,
        *,
        hh0: Household,
        targets,
        outer_targets,
        outer_params,
        inner_gap,
        setup: GravitySetup,
        fd_step: float,
        inner_kw: dict,
        checkpoint: Path | None,
        fingerprint: str,
        warm: _Warm,
        t0: float,
    ):
        self.hh0, self.targets, self.setup = hh0, targets, setup
        self.outer_targets, self.outer_params = outer_targets, outer_params
        self.inner_gap, self.inner_kw, self.fd_step = inner_gap, inner_kw, fd_step
        self.ckpt, self.fp, self.t0 = checkpoint, fingerprint, t0
        self.k = len(outer_params)
        self.lo = np.array([MICRO_PARAMS[p][0] for p in outer_params])
        self.hi = np.array([MICRO_PARAMS[p][1] for p in outer_params])
        self.x = np.array([getattr(hh0, p) for p in outer_params], float)
        self.warm = warm
        self.B: np.ndarray | None = None
        self.B_fresh = False  # B is the difference Jacobian at the current x (+ secant updates)
        self.history: list = []
        self.best: dict | None = None
        self.step = 0
        self.n_eval = 0

    def resume(self) -> None:
        """Continue from the checkpoint (the current point, Jacobian and warm start)."""
        saved = json.loads(self.ckpt.read_text())
        if saved.get("fingerprint") != self.fp:
            raise ParameterError(
                f"checkpoint {self.ckpt} is from another micro calibration "
                "(parameters, targets or fixed household values differ); "
                "use a new checkpoint or the same specification."
            )
        self.x = np.asarray(saved["x"], float)
        self.warm = _Warm.from_json(saved["warm"])
        self.B = None if saved.get("B") is None else np.asarray(saved["B"], float)
        self.history = saved.get("history", [])
        self.best = saved.get("best")
        self.step = int(saved.get("step", 0))
        log.info(
            "micro calibration: resuming from %s (step %d, x %s)",
            self.ckpt,
            self.step,
            self.x.tolist(),
        )

    def evaluate(self, xv, kind: str, start: _Warm):
        """Inner calibration at ``xv`` (warm-started from ``start``): (micro residuals F,
        the inner result, the micro moments)."""
        hh = self.hh0.replace(**{p: float(v) for p, v in zip(self.outer_params, xv)})
        gap = self.inner_gap
        if gap is not None and start.psi is not None:
            hh = hh.replace(psi_slope=float(start.psi))
        res = calibrate(
            start.theta,
            hh,
            setup=self.setup,
            wages=start.wages,
            beta_guess=start.beta,
            state=start.state,
            home_share_gap=None if gap is None else gap.value,
            gap_country=None if gap is None else gap.country,
            **self.inner_kw,
        )
        self.n_eval += 1
        mom = micro_moments(res.equilibrium, self.targets)
        F = np.array([mom[t.key] - t.value for t in self.outer_targets])
        rec = {
            "step": self.step,
            "kind": kind,
            **{p: float(v) for p, v in zip(self.outer_params, xv)},
            "residual": float(np.max(np.abs(F))) if self.k else 0.0,
            **{f"model_{kk}": v for kk, v in mom.items()},
            "inner_iterations": res.iterations,
            "inner_residual": res.residual,
            "psi_slope": res.household.psi_slope,
            "beta": res.equilibrium.beta,
            "seconds": time.perf_counter() - self.t0,
        }
        self.history.append(rec)
        log.info(
            "micro calibration: step %d (%s): %s -> max |moment - target| %.3e",
            self.step,
            kind,
            ", ".join(f"{p} {v:.8g}" for p, v in zip(self.outer_params, xv)),
            rec["residual"],
        )
        return F, res, mom

    def save(self) -> None:
        if self.ckpt:
            write_json(
                self.ckpt,
                jsonable(
                    {
                        "kind": "micro-calibration",
                        "fingerprint": self.fp,
                        "params": self.outer_params,
                        "targets": [t.key for t in self.outer_targets],
                        "x": self.x,
                        "warm": self.warm.to_json(),
                        "B": self.B,
                        "step": self.step,
                        "best": self.best,
                        "history": self.history,
                    }
                ),
            )

    def fd_jacobian(self, F0) -> np.ndarray:
        """Forward differences at the current point, steps ``fd_step * max(1, |x_j|)``
        (backwards at the upper end of the box)."""
        J = np.empty((self.k, self.k))
        for j in range(self.k):
            h = self.fd_step * max(1.0, abs(self.x[j]))
            if self.x[j] + h >= self.hi[j]:
                h = -h
            xj = self.x.copy()
            xj[j] += h
            Fj, _, _ = self.evaluate(xj, f"jacobian[{self.outer_params[j]}]", self.warm)
            J[:, j] = (Fj - F0) / h
        return J

    def record_best(self, err: float, mom: dict) -> None:
        if self.best is None or err < self.best["residual"]:
            self.best = {
                "x": self.x.tolist(),
                "residual": err,
                "warm": self.warm.to_json(),
                "moments": mom,
            }

    def line_search(self, F, err: float):
        """Backtrack along the quasi-Newton step (kept inside the search box), updating B
        by Broyden's rule after every trial; the accepted (x, F, err, result, moments), or
        None when four trials give no descent."""
        try:
            s = -np.linalg.solve(self.B, F)
        except np.linalg.LinAlgError:
            s = -np.linalg.lstsq(self.B, F, rcond=None)[0]
        x, lo, hi = self.x, self.lo, self.hi
        room = np.where(
            s > 0,
            (hi - x) * 0.9 / np.where(s > 0, s, 1.0),
            np.where(s < 0, (lo - x) * 0.9 / np.where(s < 0, s, -1.0), np.inf),
        )
        t = float(min(1.0, np.min(room)))
        for _ in range(4):
            x_try = x + t * s
            try:
                F_try, res_try, mom_try = self.evaluate(x_try, "step", self.warm)
            except (CalibrationError, EquilibriumError) as e:
                log.warning(
                    "micro calibration: inner calibration failed at %s (%s); halving the step",
                    x_try.tolist(),
                    e,
                )
                t *= 0.5
                continue
            e_try = float(np.max(np.abs(F_try)))
            dx = x_try - x
            self.B = self.B + np.outer(F_try - F - self.B @ dx, dx) / (dx @ dx)  # also on failure
            if np.isfinite(e_try) and e_try < (1.0 - 1e-4 * t) * err:
                return x_try, F_try, e_try, res_try, mom_try
            t *= 0.5
        return None

    def run(self, tol: float, max_iter: int, progress) -> MicroCalibrationResult:
        F, res, mom = self.evaluate(self.x, "point", self.warm)
        self.warm = _Warm.of(res)
        err = float(np.max(np.abs(F))) if self.k else 0.0
        self.record_best(err, mom)
        self.save()
        if progress:
            progress(self.step, err)
        while err >= tol and self.step < max_iter:
            if self.B is None:
                self.B = self.fd_jacobian(F)
                self.B_fresh = True
                self.save()
            trial = self.line_search(F, err)
            self.step += 1
            if trial is None:
                self.save()
                if self.B_fresh:  # even the difference Jacobian here gives no descent
                    break
                log.info("micro calibration: no descent; recomputing the Jacobian by differences")
                self.B = None
                continue
            self.B_fresh = False
            self.x, F, err, res, mom = trial
            self.warm = _Warm.of(res)
            self.record_best(err, mom)
            self.save()
            if progress:
                progress(self.step, err)
        if err < tol:
            return self.finish(res, mom, F)
        raise self.stalled(tol)

    def finish(self, res, mom, F) -> MicroCalibrationResult:
        full = {p: float(v) for p, v in zip(self.outer_params, self.x)}
        if self.inner_gap is not None:
            full["psi_slope"] = float(res.psi_slope)
        return MicroCalibrationResult(
            params=full,
            household=res.household,
            inner=res,
            moments=mom,
            targets={t.key: t.value for t in self.targets},
            converged=True,
            iterations=self.step,
            evaluations=self.n_eval,
            residual=float(np.max(np.abs(F))) if self.k else res.residual,
            jacobian=self.B,
            history=self.history,
            seconds=time.perf_counter() - self.t0,
        )

    def stalled(self, tol: float) -> CalibrationError:
        best = self.best
        off = ", ".join(
            f"{t.key} (model {best['moments'][t.key]:.6g} vs target {t.value:.6g})"
            for t in self.outer_targets
        )
        at = ", ".join(f"{p} = {v:.8g}" for p, v in zip(self.outer_params, best["x"]))
        return CalibrationError(
            f"micro calibration stopped without reaching tol {tol:.1e}: best max |moment - "
            f"target| {best['residual']:.3e} at {at} after {self.step} steps ({self.n_eval} "
            f"inner calibrations). Targets: {off}. The best point is saved"
            f"{' in ' + str(self.ckpt) if self.ckpt else ''}; try resuming, another start, "
            "or targets the model can reach."
        )
