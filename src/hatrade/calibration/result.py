"""What a calibration by "gravity as a guide" returns, or raises when it stalls.

:class:`CalibrationResult` is the result of :func:`hatrade.calibration.calibrate.calibrate`
(the parameters, the equilibrium there, moments and targets, the path and the counters);
:class:`CalibrationError` is raised by it, and by the micro calibration and the grids, when
an iteration stalls (the best point saved and the moments that are off named).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hatrade.calibration.moments import GravitySetup, ek_setup
from hatrade.core.params import Household
from hatrade.solve.equilibrium import Equilibrium

__all__ = ["CalibrationError", "CalibrationResult"]


class CalibrationError(RuntimeError):
    """The calibration stalled or failed; the best point is saved and reported."""


@dataclass
class CalibrationResult:
    """Calibrated parameters, the equilibrium there, and the path."""

    params: np.ndarray
    equilibrium: Equilibrium
    moments: np.ndarray
    targets: np.ndarray
    converged: bool
    iterations: int
    residual: float
    equilibrium_solves: int
    household_solves: int
    block_jacobians: int
    history: list = field(default_factory=list)
    seconds: float = 0.0
    psi_slope: float | None = None
    gap_country: str | None = None

    @property
    def household(self) -> Household:
        """The household parameters of the calibrated equilibrium (psi_slope included)."""
        return self.equilibrium.household

    def moment_table(self, setup: GravitySetup | None = None) -> pd.DataFrame:
        """Moment, target, model and difference; with psi_slope calibrated the last row is
        ``home_share_gap_<country>`` (top minus bottom labor-income quintile)."""
        setup = setup or ek_setup()
        c = setup.countries[:-1]
        names = [f"S_{x}" for x in c] + [f"theta_m_{x}" for x in c] + list(setup.names)
        if len(self.targets) == len(names) + 1:
            names.append(f"home_share_gap_{self.gap_country}")
        return pd.DataFrame(
            {
                "moment": names,
                "target": self.targets,
                "model": self.moments,
                "difference": self.moments - self.targets,
            }
        )
