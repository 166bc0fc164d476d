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
        Top minus bottom quintile home share
        (:func:`hatrade.calibration.home_share.home_share_gaps`; the home-share gradient
        across income of Borusyak and Jaravel 2021).

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
    :class:`~hatrade.calibration.result.CalibrationError` naming the targets that are off,
    the best point saved. Every outer step is logged and checkpointed (JSON, atomic);
    ``resume=True`` continues from the checkpoint (the current point, Jacobian and warm
    start).

The loop itself and its result (:class:`MicroCalibrationResult`, re-exported here) are in
:mod:`hatrade.calibration.micro_loop`; the targets, their checks and their model values
(:func:`micro_moments`, re-exported here) in :mod:`hatrade.calibration.micro_targets`.
Robustness grids of independent calibrations are in :mod:`hatrade.calibration.grid`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from hatrade.calibration.calibrate import GravitySetup, ek_setup
from hatrade.calibration.micro_loop import MicroCalibrationResult, OuterLoop, WarmStart
from hatrade.calibration.micro_targets import (
    MICRO_PARAMS,
    MICRO_TARGETS,
    MicroTarget,
    check_params,
    check_targets,
    load_micro_targets,
    micro_moments,
    parse_micro_targets,
)
from hatrade.core.params import Household, ParameterError
from hatrade.io.fingerprint import fingerprint

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

# ----------------------------------------------------------------------------- outer loop


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
    loop = OuterLoop(
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
        warm=WarmStart(theta0, hh0.psi_slope if inner_gap else None, wages, beta_guess),
        t0=t0,
    )
    if resume and loop.ckpt and loop.ckpt.exists():
        loop.resume()
    return loop.run(tol, max_iter, progress)
