r"""The gravity moments of the calibration and the parameters' map to a world (docs/model.md section 4).

A :class:`GravitySetup` holds the pairs and covariates of a gravity regression and the
regression itself, with the Eaton-Kortum normalization, as one linear operator
:math:`G`: the moments :math:`m = (S_1..S_{M-1}, \theta^m_1..\theta^m_{M-1},
\text{coefficients})` of trade :math:`y_{ij} = \log(X_{ij}/X_{ii})` are :math:`m = G y`
(the same numbers as :func:`hatrade.analysis.gravity.gravity_regression`). Its parameter
map gives log TFP, :math:`\theta^m` and the trade costs
:math:`\log d_{ij} = \max(0, -(x_{ij}'\delta + \theta^m_i)/4)` of a parameter vector
:math:`\vartheta = (\log A_1..\log A_{M-1}, \theta^m_1..\theta^m_{M-1}, \delta)`.
:func:`ek_setup` is the paper's regression, :func:`data_moments` its moments on the data,
:func:`model_moments` those of a solved model. The calibration itself is
:mod:`hatrade.calibration.calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from hatrade.core.params import ParameterError, World
from hatrade.core.x64 import enable_x64
from hatrade.solve.equilibrium import Equilibrium

__all__ = [
    "GravitySetup",
    "normalization_matrix",
    "ek_setup",
    "data_moments",
    "model_moments",
    "world_from_params",
]


@dataclass(frozen=True, eq=False)
class GravitySetup:
    """Pairs, covariates and the linear moment operator of a gravity regression.

    Attributes
    ----------
    countries : tuple of str
    importer, exporter : int arrays (P,) indices of the off-diagonal pairs (data row order)
    X : (P, K) covariates; the first ``n_bins`` columns are distance-bin dummies that
        partition the pairs (they absorb the constant)
    names : covariate names (K)
    G : (2(M-1)+K, P) the regression with the Eaton-Kortum normalization as a matrix:
        moments = G @ y, y_ij = log(X_ij / X_ii)
    """

    countries: tuple
    importer: np.ndarray
    exporter: np.ndarray
    X: np.ndarray
    names: tuple
    n_bins: int
    G: np.ndarray

    @property
    def M(self) -> int:
        return len(self.countries)

    @property
    def n_params(self) -> int:
        return 2 * (self.M - 1) + self.X.shape[1]

    @classmethod
    def build(cls, countries, importer, exporter, X, names, n_bins) -> "GravitySetup":
        countries = tuple(countries)
        M, (P, K) = len(countries), np.shape(X)
        importer, exporter = np.asarray(importer, int), np.asarray(exporter, int)
        D = np.zeros((P, 2 * (M - 1) + K))
        for p, (i, j) in enumerate(zip(importer, exporter)):
            if i < M - 1:
                D[p, i] = 1.0
            if j < M - 1:
                D[p, M - 1 + j] = 1.0
        D[:, 2 * (M - 1) :] = X
        rank = np.linalg.matrix_rank(D)
        if rank < D.shape[1]:
            raise ParameterError(
                f"gravity design is rank deficient ({rank} < {D.shape[1]} "
                "columns): too few country pairs for the covariates."
            )
        T = normalization_matrix(M, K, n_bins)
        return cls(
            countries,
            importer,
            exporter,
            np.asarray(X, float),
            tuple(names),
            n_bins,
            T @ np.linalg.pinv(D),
        )

    def log_d(self, theta):
        """log trade costs (M, M) from parameters: max(0, -(X delta + theta_m_i)/4)."""
        M = self.M
        th_m = self.theta_m(theta)
        x = jnp.asarray(self.X) @ theta[2 * (M - 1) :] + th_m[self.importer]
        logd = jnp.maximum(-x / 4.0, 0.0)
        return jnp.zeros((M, M), dtype=logd.dtype).at[self.importer, self.exporter].set(logd)

    def log_tfp(self, theta):
        return jnp.concatenate([theta[: self.M - 1], jnp.zeros(1, dtype=theta.dtype)])

    def theta_m(self, theta):
        t = theta[self.M - 1 : 2 * (self.M - 1)]
        return jnp.concatenate([t, -jnp.sum(t, keepdims=True)])

    def moments_from_spending(self, Mij):
        """Gravity moments of a spending matrix (importer rows)."""
        y = jnp.log(Mij[self.importer, self.exporter] / Mij[self.importer, self.importer])
        return jnp.asarray(self.G) @ y


def normalization_matrix(M: int, K: int, n_bins: int) -> np.ndarray:
    """Raw (imp FE 1..M-1, exp FE 1..M-1, K coefs) -> (S, theta_m, coefs), EK normalization."""
    k = M - 1
    n = 2 * k + K
    t = np.zeros((n, n))
    centre = np.eye(k) - 1.0 / M
    t[:k, k : 2 * k] = centre  # S_j = m_j - mean(m)
    t[k : 2 * k, :k] = centre  # theta_m_i = (a_i - mean a) + (m_i - mean m)
    t[k : 2 * k, k : 2 * k] = centre
    for r in range(2 * k, n):
        t[r, r] = 1.0
        if r < 2 * k + n_bins:
            t[r, : 2 * k] = 1.0 / M  # bins absorb the means
    return t


def ek_setup() -> GravitySetup:
    """The Eaton-Kortum regression of the paper (19 countries, 6 bins + 4 dummies)."""
    from hatrade.data import COUNTRIES, COVARIATES, load_covariates

    cov = load_covariates()
    pos = {c: k for k, c in enumerate(COUNTRIES)}
    return GravitySetup.build(
        COUNTRIES,
        cov["importer"].map(pos).to_numpy(),
        cov["exporter"].map(pos).to_numpy(),
        cov[list(COVARIATES)].to_numpy(float),
        COVARIATES,
        6,
    )


def data_moments() -> np.ndarray:
    """The 46 data moments (the regression on the Eaton-Kortum data)."""
    from hatrade.data import load_trade_data

    setup = ek_setup()
    y = load_trade_data()["log_trade"].to_numpy(float)
    return setup.G @ y


@enable_x64
def model_moments(eq: Equilibrium, setup: GravitySetup | None = None) -> np.ndarray:
    """Gravity moments of a solved model's trade."""
    setup = setup or ek_setup()
    return np.asarray(setup.moments_from_spending(jnp.asarray(eq.spending)))


@enable_x64
def world_from_params(theta, setup: GravitySetup, labor, financial="globalization") -> World:
    """The world of parameters ``theta``: TFP, trade costs (:meth:`GravitySetup.log_d`), and
    the given labor forces and financial regime."""
    theta = jnp.asarray(theta, dtype=jnp.float64)
    return World(
        countries=setup.countries,
        tfp=np.exp(np.asarray(setup.log_tfp(theta))),
        labor=labor,
        d=np.exp(np.asarray(setup.log_d(theta))),
        financial=financial,
    )
