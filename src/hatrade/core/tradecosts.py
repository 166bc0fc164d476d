r"""Trade costs and the calibration-vector layout (docs/model.md section 4).

Calibration vector for :math:`M` countries (:math:`M = 19` in the paper, 46 numbers):

.. math::

    (\log A_1, \dots, \log A_{M-1},\;
     \theta^m_1, \dots, \theta^m_{M-1},\;
     \delta_1, \dots, \delta_6,\; b,\; l,\; e,\; f)

with :math:`A_M = 1` and :math:`\theta^m_M = -\sum_{i<M} \theta^m_i`. Trade costs are of
Eaton-Kortum type: for importer :math:`i \neq j`,

.. math::

    \log d_{ij} = -\tfrac14 \bigl(\delta_{k(ij)} + b\,\mathrm{border}_{ij}
        + l\,\mathrm{lang}_{ij} + e\,\mathrm{EC}_{ij} + f\,\mathrm{EFTA}_{ij}
        + \theta^m_i\bigr),

floored at :math:`d_{ij} = 1`, and :math:`d_{ii} = 1`. :math:`k(ij)` is the distance bin of
the pair. The 4 is a fixed scale, not the model's trade elasticity.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from hatrade.data import BIN_COLUMNS, COUNTRIES, COVARIATES, load_covariates

__all__ = [
    "TRADE_COST_SCALE",
    "n_parameters",
    "unpack_parameters",
    "pack_parameters",
    "trade_costs",
    "trade_costs_from",
    "tfp",
]

logger = logging.getLogger(__name__)

#: The fixed scale in :math:`\log d = -x / 4`.
TRADE_COST_SCALE: float = 4.0

_N_COEF = len(COVARIATES)  # 6 bins + border + language + EC + EFTA


def n_parameters(n_countries: int = len(COUNTRIES)) -> int:
    """Length of a calibration vector for ``n_countries`` countries: ``2 (M - 1) + 10``."""
    return 2 * (n_countries - 1) + _N_COEF


def _as_vector(vec, n_countries: int) -> np.ndarray:
    v = np.asarray(vec, dtype=float)
    expected = n_parameters(n_countries)
    if v.ndim != 1 or v.size != expected:
        raise ValueError(
            f"parameter vector has shape {v.shape}; expected {expected} numbers for "
            f"{n_countries} countries (log A_1..{n_countries - 1}, theta_m_1..{n_countries - 1}, "
            f"6 distance bins, border, language, EC, EFTA)."
        )
    if not np.isfinite(v).all():
        raise ValueError(
            f"parameter vector has non-finite entries at positions "
            f"{(np.flatnonzero(~np.isfinite(v)) + 1).tolist()} (1-based)."
        )
    return v


def unpack_parameters(vec, n_countries: int = len(COUNTRIES)) -> dict:
    r"""Split a calibration vector into named pieces.

    Parameters
    ----------
    vec : array_like
        :math:`2(M-1) + 10` numbers (46 for the 19-country world), layout as in the module
        docstring.
    n_countries : int, default 19
        :math:`M`.

    Returns
    -------
    dict
        ``log_tfp`` (:math:`M`, with :math:`\log A_M = 0`), ``theta_m`` (:math:`M`, with
        :math:`\theta^m_M = -\sum_{i<M}\theta^m_i`, so it sums to zero), ``dist_bins`` (6),
        and floats ``border``, ``language``, ``ec``, ``efta``. Arrays are copies.

    Raises
    ------
    ValueError
        If the vector has the wrong length or non-finite entries.
    """
    v = _as_vector(vec, n_countries)
    m = n_countries - 1
    theta = v[m : 2 * m]
    coef = v[2 * m :]
    return {
        "log_tfp": np.append(v[:m], 0.0),
        "theta_m": np.append(theta, -theta.sum()),
        "dist_bins": coef[:6].copy(),
        "border": float(coef[6]),
        "language": float(coef[7]),
        "ec": float(coef[8]),
        "efta": float(coef[9]),
    }


def pack_parameters(
    parts: dict, n_countries: int = len(COUNTRIES), atol: float = 1e-10
) -> np.ndarray:
    r"""Inverse of :func:`unpack_parameters`.

    Parameters
    ----------
    parts : dict
        ``log_tfp`` and ``theta_m``, each of length :math:`M` (as returned by
        :func:`unpack_parameters`) or :math:`M - 1` (the free entries only); ``dist_bins``
        (6); ``border``, ``language``, ``ec``, ``efta``.
    n_countries : int, default 19
        :math:`M`.
    atol : float
        Tolerance for the restrictions the layout imposes on full-length arrays:
        :math:`\log A_M = 0` and :math:`\sum_i \theta^m_i = 0`.

    Returns
    -------
    numpy.ndarray
        :math:`2(M-1) + 10` numbers.

    Raises
    ------
    ValueError
        Missing keys, wrong lengths, or full-length arrays that violate the restrictions
        (such values cannot be represented in the layout).
    """
    required = ("log_tfp", "theta_m", "dist_bins", "border", "language", "ec", "efta")
    missing = [k for k in required if k not in parts]
    if missing:
        raise ValueError(f"parameter dict lacks key(s) {missing}; required: {list(required)}.")
    m = n_countries
    log_tfp = np.asarray(parts["log_tfp"], dtype=float).ravel()
    theta = np.asarray(parts["theta_m"], dtype=float).ravel()
    bins = np.asarray(parts["dist_bins"], dtype=float).ravel()
    if bins.size != 6:
        raise ValueError(f"dist_bins has {bins.size} entries; expected 6.")
    for name, arr in (("log_tfp", log_tfp), ("theta_m", theta)):
        if arr.size not in (m, m - 1):
            raise ValueError(
                f"{name} has {arr.size} entries; expected {m} (one per country) or {m - 1} "
                f"(the free entries) for {m} countries."
            )
    if log_tfp.size == m:
        if abs(log_tfp[-1]) > atol:
            raise ValueError(
                f"log_tfp[-1] = {log_tfp[-1]:.6g}, not 0; the layout normalizes A_M = 1."
            )
        log_tfp = log_tfp[:-1]
    if theta.size == m:
        if abs(theta.sum()) > atol * max(1.0, np.abs(theta).sum()):
            raise ValueError(
                f"theta_m sums to {theta.sum():.6g}, not 0; the layout stores theta_m_1..M-1 "
                f"and sets theta_m_M = -sum of the others."
            )
        theta = theta[:-1]
    scalars = [float(parts[k]) for k in ("border", "language", "ec", "efta")]
    return np.concatenate([log_tfp, theta, bins, scalars])


def tfp(vec, n_countries: int = len(COUNTRIES)) -> np.ndarray:
    r"""Country TFP :math:`A_i = \exp(\log A_i)` from a calibration vector (:math:`A_M = 1`)."""
    return np.exp(unpack_parameters(vec, n_countries)["log_tfp"])


def trade_costs_from(parts: dict, covariates: pd.DataFrame, countries: Sequence[str]) -> np.ndarray:
    r"""Trade-cost matrix for any set of countries.

    Parameters
    ----------
    parts : dict
        As returned by :func:`unpack_parameters`: ``theta_m`` (one per country, in
        ``countries`` order), ``dist_bins`` (6), ``border``, ``language``, ``ec``, ``efta``.
    covariates : pandas.DataFrame
        Columns ``importer``, ``exporter`` and :data:`~hatrade.data.COVARIATES`; must
        contain every ordered pair :math:`i \neq j` of ``countries`` exactly once (rows of
        other countries are ignored).
    countries : sequence of str
        Country codes; row/column order of the result.

    Returns
    -------
    numpy.ndarray
        :math:`M \times M` matrix, importer :math:`i` in rows, with
        :math:`d_{ij} = \max\{1, \exp(-x_{ij}/4)\}`,
        :math:`x_{ij} = \delta_{k(ij)} + b\,\mathrm{border}_{ij} + l\,\mathrm{lang}_{ij} +
        e\,\mathrm{EC}_{ij} + f\,\mathrm{EFTA}_{ij} + \theta^m_i`, and :math:`d_{ii} = 1`.

    Raises
    ------
    ValueError
        Missing columns, missing or duplicated pairs, or a ``theta_m`` of the wrong length.
    """
    countries = tuple(countries)
    m = len(countries)
    if len(set(countries)) != m:
        raise ValueError(f"countries contain duplicates: {countries}.")
    theta = np.asarray(parts["theta_m"], dtype=float).ravel()
    if theta.size != m:
        raise ValueError(f"theta_m has {theta.size} entries; expected one per country ({m}).")
    bins = np.asarray(parts["dist_bins"], dtype=float).ravel()
    if bins.size != 6:
        raise ValueError(f"dist_bins has {bins.size} entries; expected 6.")
    missing = [c for c in ("importer", "exporter", *COVARIATES) if c not in covariates.columns]
    if missing:
        raise ValueError(f"covariates lack column(s) {missing}.")

    pos = {c: k for k, c in enumerate(countries)}
    cov = covariates[covariates["importer"].isin(pos) & covariates["exporter"].isin(pos)]
    cov = cov[cov["importer"] != cov["exporter"]]
    i = cov["importer"].map(pos).to_numpy(dtype=int)
    j = cov["exporter"].map(pos).to_numpy(dtype=int)
    count = np.zeros((m, m), dtype=int)
    np.add.at(count, (i, j), 1)
    np.fill_diagonal(count, 1)
    if (count != 1).any():
        absent = [(countries[a], countries[b]) for a, b in zip(*np.nonzero(count == 0))]
        dup = [(countries[a], countries[b]) for a, b in zip(*np.nonzero(count > 1))]
        raise ValueError(
            f"covariates must list every ordered pair of distinct countries once; "
            f"missing {absent[:10]}{' ...' if len(absent) > 10 else ''}, "
            f"duplicated {dup[:10]}{' ...' if len(dup) > 10 else ''}."
        )
    x = (
        cov[list(BIN_COLUMNS)].to_numpy(dtype=float) @ bins
        + parts["border"] * cov["border"].to_numpy(dtype=float)
        + parts["language"] * cov["language"].to_numpy(dtype=float)
        + parts["ec"] * cov["ec"].to_numpy(dtype=float)
        + parts["efta"] * cov["efta"].to_numpy(dtype=float)
        + theta[i]
    )
    d = np.ones((m, m))
    d[i, j] = np.maximum(np.exp(-x / TRADE_COST_SCALE), 1.0)
    return d


def trade_costs(vec, covariates: pd.DataFrame | None = None) -> np.ndarray:
    r"""Trade-cost matrix of the 19-country world from a 46-number calibration vector.

    Parameters
    ----------
    vec : array_like
        46 numbers (see the module docstring).
    covariates : pandas.DataFrame, optional
        Pair covariates; default :func:`hatrade.data.load_covariates`.

    Returns
    -------
    numpy.ndarray
        :math:`19 \times 19`, importer in rows, :data:`~hatrade.data.COUNTRIES` order;
        :math:`d_{ii} = 1` and :math:`d_{ij} = \max\{1, \exp(-x_{ij}/4)\}` (see
        :func:`trade_costs_from`).
    """
    parts = unpack_parameters(vec)
    if covariates is None:
        covariates = load_covariates()
    return trade_costs_from(parts, covariates, COUNTRIES)
