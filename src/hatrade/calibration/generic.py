r"""Calibration to any trade data set (docs/own-data.md).

The trade costs are the specification's covariates with parameters plus importer terms,
:math:`\log d_{ij} = \max\{0, -(x_{ij}'\delta + \theta^m_i)/4\}`, TFP per country
(:math:`A_M = 1`), and beta at R: the same parameter map as the paper's
(:class:`~hatrade.calibration.moments.GravitySetup`), with the specification's regressors
(:func:`hatrade.data.specification.build_specification`) in place of the Eaton-Kortum ones.
The moments are the gravity regression with importer and exporter fixed effects and the
Eaton-Kortum normalization, run on data and on model trade alike, with one of two
estimators:

- ``ols``: least squares on :math:`\log(X_{ij}/X_{ii})`, as in the paper (a linear map
  :math:`G` of the log shares);
- ``ppml``: Poisson pseudo-maximum likelihood on :math:`X_{ij}/X_{ii}` with the same fixed
  effects and regressors (:class:`PoissonSetup`); zero flows are kept. Its raw coefficients
  :math:`b` solve :math:`D'(y - e^{Db}) = 0` (Newton with step halving, to machine
  precision), and their derivative is the implicit one,
  :math:`db = (D' \mathrm{diag}(\mu) D)^{-1} D' dy`, so the calibration's Jacobians stay
  exact. Checked against pyfixest's ``fepois`` in the tests.

:func:`calibrate_data` validates the data, builds the specification (errors before any
solve), checks memory, and runs :func:`hatrade.calibration.calibrate.calibrate` (exact
Jacobians, checkpoint and resume, moment-gap report).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hatrade.calibration.calibrate import CalibrationResult, calibrate
from hatrade.calibration.moments import GravitySetup, normalization_matrix
from hatrade.core.memory import check_world_memory
from hatrade.core.params import Household, ParameterError
from hatrade.core.x64 import enable_x64
from hatrade.data.specification import Specification, build_specification
from hatrade.data.tidy import DataCheckError, TradeData, validated

__all__ = [
    "ESTIMATORS",
    "PoissonSetup",
    "gravity_setup",
    "data_targets",
    "default_start",
    "ppml_coefficients",
    "design_matrix",
    "calibrate_data",
    "CalibrationSetup",
    "prepare",
    "fit_table",
    "trade_costs_with",
]

log = logging.getLogger(__name__)

#: The gravity estimators of a calibration.
ESTIMATORS = ("ols", "ppml")


def design_matrix(setup: GravitySetup) -> np.ndarray:
    M, P = setup.M, len(setup.importer)
    D = np.zeros((P, 2 * (M - 1) + setup.X.shape[1]))
    rows = np.arange(P)
    i, j = setup.importer, setup.exporter
    D[rows[i < M - 1], i[i < M - 1]] = 1.0
    D[rows[j < M - 1], M - 1 + j[j < M - 1]] = 1.0
    D[:, 2 * (M - 1) :] = setup.X
    return D


def ppml_coefficients(D: np.ndarray, y: np.ndarray, tol: float = 1e-13, max_iter: int = 100):
    r"""Raw PPML coefficients :math:`b` of :math:`E[y] = e^{Db}` (Newton with step halving).

    Stops when the score :math:`D'(y - \mu)`, relative to :math:`\sum y`, is below ``tol``.

    Raises
    ------
    ParameterError
        When Newton does not converge (the message gives the score reached).
    """
    D, y = np.asarray(D, float), np.asarray(y, float)
    pos = y > 0
    b = np.linalg.lstsq(D[pos], np.log(y[pos]), rcond=None)[0]
    scale = max(float(y.sum()), 1e-300)

    def loglik(b):
        eta = D @ b
        return float(y @ eta - np.exp(eta).sum())

    for _ in range(max_iter):
        mu = np.exp(D @ b)
        score = D.T @ (y - mu)
        if np.max(np.abs(score)) / scale < tol:
            return b
        step = np.linalg.solve(D.T @ (mu[:, None] * D), score)
        ll, t = loglik(b), 1.0
        while loglik(b + t * step) < ll - 1e-12 * abs(ll) and t > 1e-8:
            t *= 0.5
        b = b + t * step
    raise ParameterError(
        f"PPML did not converge in {max_iter} Newton steps (relative score "
        f"{np.max(np.abs(score)) / scale:.2e}); the regressors may separate the zero flows."
    )


@dataclass(frozen=True, eq=False)
class PoissonSetup(GravitySetup):
    """A :class:`GravitySetup` whose moments come from PPML on :math:`X_{ij}/X_{ii}`
    (module docstring). ``D`` is the full-rank design, ``T`` the normalization."""

    D: np.ndarray | None = None
    T: np.ndarray | None = None

    def __post_init__(self):
        D = self.D

        @jax.custom_jvp
        def raw(y):
            return jax.pure_callback(
                lambda v: ppml_coefficients(D, np.asarray(v)),
                jax.ShapeDtypeStruct((D.shape[1],), jnp.float64),
                y,
                vmap_method="sequential",
            )

        @raw.defjvp
        def _raw_jvp(primals, tangents):
            (y,), (dy,) = primals, tangents
            b = raw(y)
            mu = jnp.exp(jnp.asarray(D) @ b)
            H = jnp.asarray(D).T @ (mu[:, None] * jnp.asarray(D))
            return b, jnp.linalg.solve(H, jnp.asarray(D).T @ dy)

        object.__setattr__(self, "_raw", raw)

    def moments_from_spending(self, Mij):
        """PPML gravity moments of a spending matrix (importer rows)."""
        Mij = jnp.asarray(Mij)
        y = Mij[self.importer, self.exporter] / Mij[self.importer, self.importer]
        return jnp.asarray(self.T) @ self._raw(y)


def gravity_setup(spec: Specification, estimator: str = "ols") -> GravitySetup:
    """The calibration's moment map for a specification (``ols`` or ``ppml``)."""
    if estimator not in ESTIMATORS:
        raise ParameterError(
            f"estimator {estimator!r} is not allowed; allowed values: {', '.join(ESTIMATORS)}."
        )
    base = GravitySetup.build(
        spec.countries, spec.importer, spec.exporter, spec.X, spec.names, spec.n_bins
    )
    if estimator == "ols":
        return base
    M, K = len(spec.countries), spec.X.shape[1]
    return PoissonSetup(
        base.countries,
        base.importer,
        base.exporter,
        base.X,
        base.names,
        base.n_bins,
        base.G,
        D=design_matrix(base),
        T=normalization_matrix(M, K, spec.n_bins),
    )


@enable_x64
def data_targets(data: TradeData, setup: GravitySetup) -> np.ndarray:
    """The gravity moments of the data (the calibration targets).

    Raises
    ------
    DataCheckError
        OLS with zero flows (named): they have no log; use ``ppml``.
    """
    X = data.matrix()
    if isinstance(setup, PoissonSetup):
        return np.asarray(setup.moments_from_spending(jnp.asarray(X)))
    x = X[setup.importer, setup.exporter]
    zero = x <= 0
    if zero.any():
        rows = [
            f"{setup.countries[j]}->{setup.countries[i]}"
            for i, j in zip(setup.importer[zero], setup.exporter[zero])
        ]
        raise DataCheckError(
            f"the OLS estimator takes logs, but {len(rows)} flows are zero "
            f"({', '.join(rows[:10])}{' ...' if len(rows) > 10 else ''}); use estimator 'ppml'."
        )
    y = np.log(x / X[setup.importer, setup.importer])
    return setup.G @ y


def default_start(setup: GravitySetup, targets: np.ndarray) -> np.ndarray:
    """A starting point: log TFP 0, importer terms and coefficients at their data moments
    (the map from parameters to moments is close to the identity there)."""
    k = setup.M - 1
    return np.concatenate([np.zeros(k), targets[k:]])


@dataclass(frozen=True, eq=False)
class CalibrationSetup:
    """What a data calibration is built from: data, specification, moment map, targets."""

    data: TradeData
    spec: Specification
    setup: GravitySetup
    targets: np.ndarray
    estimator: str

    def moment_names(self) -> list:
        c = self.setup.countries[:-1]
        return [f"S_{x}" for x in c] + [f"theta_m_{x}" for x in c] + list(self.setup.names)


def prepare(data: TradeData, formula: str, estimator: str = "ols") -> CalibrationSetup:
    """Validate the data, check the formula and compute the targets (no solve)."""
    data = validated(data)
    spec = build_specification(data, formula)
    setup = gravity_setup(spec, estimator)
    return CalibrationSetup(data, spec, setup, data_targets(data, setup), estimator)


@enable_x64
def calibrate_data(
    data: TradeData | CalibrationSetup,
    formula: str | None = None,
    household: Household | None = None,
    *,
    estimator: str = "ols",
    theta0=None,
    **options,
) -> tuple[CalibrationResult, CalibrationSetup]:
    """Calibrate the model to a trade data set (module docstring).

    Parameters
    ----------
    data : TradeData or CalibrationSetup
        The data (validated here) or a prepared setup (:func:`prepare`).
    formula : str
        The specification (e.g. ``"lndist + contiguity + common_language + pta"``).
    household : Household, optional
        Default the baseline (beta is solved at R).
    estimator : {'ols', 'ppml'}
    theta0 : array, optional
        Start (default :func:`default_start`).
    **options
        Passed to :func:`hatrade.calibration.calibrate.calibrate` (``R``, ``tol``,
        ``max_iter``, ``checkpoint``, ``resume``, ``progress``, ...).

    Returns
    -------
    (CalibrationResult, CalibrationSetup)

    Raises
    ------
    DataCheckError, SpecificationError, ParameterError, MemoryEstimateError
        Before any solve. CalibrationError when the calibration stalls.
    """
    cs = data if isinstance(data, CalibrationSetup) else prepare(data, formula, estimator)
    household = household or Household()
    inc_n = household.n_perm * household.n_iid
    check_world_memory(cs.setup.M, household.n_a, inc_n)
    theta0 = default_start(cs.setup, cs.targets) if theta0 is None else theta0
    labor = cs.data.countries["labor"].to_numpy(float)
    res = calibrate(theta0, household, setup=cs.setup, targets=cs.targets, labor=labor, **options)
    return res, cs


def fit_table(res: CalibrationResult, cs: CalibrationSetup) -> pd.DataFrame:
    """Model against data trade shares, one row per international pair: ``share_data``,
    ``share_model`` (importer's spending shares) and their logs."""
    X = cs.data.matrix()
    Mm = np.asarray(res.equilibrium.spending)
    i, j = cs.setup.importer, cs.setup.exporter
    sd = X[i, j] / X.sum(axis=1)[i]
    sm = Mm[i, j] / Mm.sum(axis=1)[i]
    c = cs.setup.countries
    return pd.DataFrame(
        {
            "importer": [c[k] for k in i],
            "exporter": [c[k] for k in j],
            "share_data": sd,
            "share_model": sm,
        }
    )


@enable_x64
def trade_costs_with(cs: CalibrationSetup, params, changes: dict) -> np.ndarray:
    r"""The calibrated trade-cost matrix with covariates set to new values, e.g.
    ``{"pta": 0.0}`` (the removal of all PTAs) or ``{"lndist": x}`` (an array over the
    international pairs, :attr:`GravitySetup.importer` order):
    :math:`\log d_{ij} = \max\{0, -(x_{ij}'\delta + \theta^m_i)/4\}` at the new :math:`x`.

    Raises
    ------
    ParameterError
        A name that is not a regressor of the specification.
    """
    setup = cs.setup
    X = np.array(setup.X, float)
    for name, value in changes.items():
        if name not in setup.names or name == "const":
            raise ParameterError(
                f"covariate {name!r} is not allowed: use one of "
                f"{', '.join(n for n in setup.names if n != 'const')}."
            )
        X[:, setup.names.index(name)] = value
    moved = GravitySetup(
        setup.countries, setup.importer, setup.exporter, X, setup.names, setup.n_bins, setup.G
    )
    return np.exp(np.asarray(moved.log_d(jnp.asarray(params, dtype=jnp.float64))))
