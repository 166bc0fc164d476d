"""The paper's world: Eaton-Kortum's 19 OECD countries with a published calibration.

:func:`ek_world` turns a 46-number calibration vector (or a shipped calibration) into a
:class:`~hatrade.core.params.World`, and :func:`published_household` gives the
:class:`~hatrade.core.params.Household` of a shipped calibration, ready for
:func:`hatrade.solve_equilibrium`. Both take a calibration name or a loaded
:class:`~hatrade.data.Calibration` (:func:`published_calibration`), so that a caller that
needs the calibration's prices too reads its files once.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hatrade.core.params import Household, ParameterError, World
from hatrade.core.tradecosts import tfp, trade_costs
from hatrade.data import CALIBRATIONS, COUNTRIES, Calibration, load_calibration, load_labor

__all__ = ["check_calibration_name", "ek_world", "published_calibration", "published_household"]


def check_calibration_name(name: Any) -> str:
    """``name`` if it is a shipped calibration, else :class:`ParameterError` listing them.

    The one check of a calibration name (configurations, :func:`ek_world`,
    :func:`published_household`).
    """
    if not isinstance(name, str) or name not in CALIBRATIONS:
        raise ParameterError(
            f"calibration {name!r} is not allowed; allowed values: {', '.join(CALIBRATIONS)}."
        )
    return name


def published_calibration(calibration: str | Calibration = "baseline") -> Calibration:
    """A shipped calibration (vector, published prices and household parameters), read
    once; a :class:`~hatrade.data.Calibration` is returned as it is.

    Raises
    ------
    ParameterError
        For an unknown name (the message lists the allowed ones).
    """
    if isinstance(calibration, Calibration):
        return calibration
    return load_calibration(check_calibration_name(calibration))


def published_household(name: str | Calibration = "baseline", **overrides: Any) -> Household:
    """Household parameters of a shipped calibration ('baseline' or 'log', or a loaded
    :class:`~hatrade.data.Calibration`); ``overrides`` replace fields (e.g. ``n_a=40``)."""
    cal = published_calibration(name)
    return Household(gamma=cal.gamma, sigma_eps=cal.sigma_eps, psi_slope=cal.psi_slope, **overrides)


def ek_world(
    calibration: str | Calibration = "baseline",
    params=None,
    *,
    correct_germany: bool = False,
    financial: Literal["globalization", "autarky"] = "globalization",
    tariffs=None,
) -> World:
    """The 19-country world of a calibration.

    Parameters
    ----------
    calibration : {'baseline', 'log'} or Calibration
        Which shipped calibration to use (its name, or the loaded calibration); the name is
        recorded in ``World.meta`` (not read when ``params`` is given).
    params : array (46,), optional
        A calibration vector in the published layout (see :mod:`hatrade.core.tradecosts`).
    correct_germany : bool
        Use Germany's corrected labor force 0.225 instead of the published 0.0225 (the
        published calibration was made with 0.0225; see the data provenance note).
    financial : {'globalization', 'autarky'}
    tariffs : (19, 19) array, optional

    Raises
    ------
    ParameterError
        For an unknown calibration name (the message lists the allowed ones).
    """
    name = calibration.name if isinstance(calibration, Calibration) else calibration
    if params is None:
        params = published_calibration(calibration).params
    params = np.asarray(params, float)
    return World(
        countries=COUNTRIES,
        tfp=tfp(params),
        labor=load_labor(correct_germany).values,
        d=trade_costs(params),
        tariffs=tariffs,
        financial=financial,
        meta={"calibration": name, "params": params.tolist(), "correct_germany": correct_germany},
    )
