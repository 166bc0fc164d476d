r"""The outer Broyden loop of :func:`hatrade.calibration.micro.calibrate_micro`, the warm
start it hands from one inner calibration to the next, and its result.

:class:`OuterLoop` holds the current point :math:`x` (the household parameters it moves),
the secant Jacobian :math:`B \approx dF/dx` (forward differences first, then Broyden's
rank-one updates), the warm start (:class:`WarmStart`), the history and the best point; it
runs the backtracking line search, checkpoints after every inner calibration and resumes
from a checkpoint. The method and the micro targets are described in
:mod:`hatrade.calibration.micro`; the model values of the targets are
:func:`hatrade.calibration.micro_targets.micro_moments`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hatrade.calibration.calibrate import calibrate
from hatrade.calibration.micro_targets import MICRO_PARAMS, micro_moments
from hatrade.calibration.moments import GravitySetup
from hatrade.calibration.result import CalibrationError, CalibrationResult
from hatrade.core.errors import EquilibriumError
from hatrade.core.params import Household, ParameterError
from hatrade.io.atomic import jsonable, write_json

__all__ = ["MicroCalibrationResult", "WarmStart", "OuterLoop"]

log = logging.getLogger(__name__)


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


class WarmStart:
    """The inner calibration's warm start: parameters, psi_slope, wages, beta, states."""

    def __init__(self, theta, psi, wages, beta, state=None):
        self.theta = np.asarray(theta, float)
        self.psi = psi
        self.wages = None if wages is None else np.asarray(wages, float)
        self.beta = float(beta)
        self.state = state

    @classmethod
    def of(cls, res: CalibrationResult) -> "WarmStart":
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
    def from_json(cls, d) -> "WarmStart":
        return cls(d["theta"], d.get("psi_slope"), d.get("wages"), d["beta"])


class OuterLoop:
    """The state of one outer Broyden loop of
    :func:`hatrade.calibration.micro.calibrate_micro`: the current point
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
        warm: WarmStart,
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
        self.warm = WarmStart.from_json(saved["warm"])
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

    def evaluate(self, xv, kind: str, start: WarmStart):
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
        self.warm = WarmStart.of(res)
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
            self.warm = WarmStart.of(res)
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
