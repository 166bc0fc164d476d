"""Where a calibration by "gravity as a guide" starts: the checked starting parameters and
targets (psi_slope and the home-share gap appended when the gap is targeted), or the best
point of a checkpoint (:func:`hatrade.calibration.calibrate.calibrate`, ``resume=True``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hatrade.calibration.moments import GravitySetup, data_moments
from hatrade.core.params import Household, ParameterError

__all__ = ["checked_start", "checkpoint_start"]

log = logging.getLogger(__name__)


def checked_start(
    theta0, targets, setup: GravitySetup, household: Household, home_share_gap, gap_country
):
    """Checked starting parameters and targets (psi_slope and the gap appended when
    ``home_share_gap`` is given), the index of the gap country (or None) and its code."""
    K = setup.n_params
    theta = np.asarray(theta0, float).copy()
    if theta.shape != (K,):
        raise ParameterError(
            f"parameter vector has {theta.size} entries; this setup needs "
            f"{K} (2*(M-1) log TFP and theta_m, then "
            f"{len(setup.names)} coefficients {list(setup.names)})."
        )
    targets = data_moments() if targets is None else np.asarray(targets, float)
    if targets.shape != (K,):
        raise ParameterError(f"targets have {targets.size} entries; expected {K}.")
    if home_share_gap is None:
        if gap_country is not None:
            raise ParameterError(
                "gap_country is given without home_share_gap: give the target "
                "home_share_gap to calibrate psi_slope."
            )
        return theta, targets, None, None
    try:
        gap_target = float(home_share_gap)
    except (TypeError, ValueError):
        raise ParameterError(
            f"home_share_gap = {home_share_gap!r} is not allowed: it must be a number in (-1, 1)."
        ) from None
    if not (np.isfinite(gap_target) and -1.0 < gap_target < 1.0):
        raise ParameterError(
            f"home_share_gap = {home_share_gap!r} is not allowed: it must "
            "be a number in (-1, 1) (a difference of two shares)."
        )
    gap_country = "USA" if gap_country is None else gap_country
    if gap_country not in setup.countries:
        raise ParameterError(
            f"gap_country = {gap_country!r} is not allowed: use one of "
            f"{', '.join(setup.countries)}."
        )
    gi = setup.countries.index(gap_country)
    return (np.append(theta, household.psi_slope), np.append(targets, gap_target), gi, gap_country)


def checkpoint_start(ckpt: Path, with_psi: bool):
    """Parameters, wages, beta guess and history of the best point of a checkpoint."""
    saved = json.loads(ckpt.read_text())
    if with_psi != ("psi_slope" in saved["best"]):
        raise ParameterError(
            f"checkpoint {ckpt} is from a calibration {'without' if with_psi else 'with'} "
            "psi_slope (home_share_gap); resume it the same way or use a new checkpoint."
        )
    theta = np.asarray(saved["best"]["params"], float)
    if with_psi:
        theta = np.append(theta, float(saved["best"]["psi_slope"]))
    wages = np.asarray(saved["best"]["wages"], float)
    beta_guess = float(saved["best"]["beta"])
    history = saved.get("history", [])
    log.info(
        "calibration: resuming from %s (iteration %d, residual %.3e)",
        ckpt,
        len(history),
        saved["best"]["residual"],
    )
    return theta, wages, beta_guess, history
