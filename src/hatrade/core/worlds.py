"""The paper's world: Eaton-Kortum's 19 OECD countries with a published calibration.

:func:`ek_world` turns a 46-number calibration vector (or a shipped calibration name) into
a :class:`~hatrade.core.params.World` and :class:`~hatrade.core.params.Household`, ready for
:func:`hatrade.solve_equilibrium`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hatrade.data import COUNTRIES, CALIBRATIONS, load_calibration, load_labor
from hatrade.core.params import Household, ParameterError, World
from hatrade.core.tradecosts import tfp, trade_costs

__all__ = ["ek_world", "published_household"]


def published_household(name: str = "baseline", **overrides) -> Household:
    """Household parameters of a shipped calibration ('baseline' or 'log')."""
    cal = load_calibration(name)
    return Household(gamma=cal.gamma, sigma_eps=cal.sigma_eps, psi_slope=cal.psi_slope,
                     **overrides)


def ek_world(calibration: str = "baseline", params=None, *, correct_germany: bool = False,
             financial: Literal["globalization", "autarky"] = "globalization",
             tariffs=None) -> World:
    """The 19-country world of a calibration.

    Parameters
    ----------
    calibration : {'baseline', 'log'}
        Which shipped calibration to use (ignored for the parameters when ``params`` is given).
    params : array (46,), optional
        A calibration vector in the published layout (see :mod:`hatrade.core.tradecosts`).
    correct_germany : bool
        Use Germany's corrected labor force 0.225 instead of the published 0.0225 (the
        published calibration was made with 0.0225; see the data provenance note).
    financial : {'globalization', 'autarky'}
    tariffs : (19, 19) array, optional
    """
    if params is None:
        if calibration not in CALIBRATIONS:
            raise ParameterError(f"calibration = {calibration!r} is not allowed: use one of "
                                 f"{', '.join(CALIBRATIONS)}.")
        params = load_calibration(calibration).params
    params = np.asarray(params, float)
    return World(countries=COUNTRIES, tfp=tfp(params), labor=load_labor(correct_germany).values,
                 d=trade_costs(params), tariffs=tariffs, financial=financial,
                 meta={"calibration": calibration, "params": params.tolist(),
                       "correct_germany": correct_germany})
