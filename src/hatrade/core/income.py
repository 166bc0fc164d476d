r"""Income processes: Markov chains for household efficiency units (docs/model.md 1.2).

Income is :math:`z = z_{perm} z_{iid}`, a persistent Rouwenhorst chain times a transitory
one, as in Krueger, Mitman and Perri. The combined chain is ordered persistent-major
(state index = perm_index * n_iid + iid_index), its transition matrix is the Kronecker
product, and the levels are rescaled so that mean income under the stationary distribution
is exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hatrade.core.params import Household, ParameterError

__all__ = ["IncomeProcess", "rouwenhorst", "stationary_markov", "income_process"]


def rouwenhorst(n: int, rho: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Rouwenhorst discretization of :math:`y' = \rho y + \sigma \varepsilon`.

    States are evenly spaced on :math:`[-\sqrt{n-1}\,s_y, \sqrt{n-1}\,s_y]` with
    :math:`s_y = \sigma/\sqrt{1-\rho^2}`; the transition matrix is built by the standard
    recursion with :math:`p = q = (1+\rho)/2` (as QuantEcon's ``rouwenhorst``).

    Returns
    -------
    y : ndarray (n,)
        State values (logs).
    P : ndarray (n, n)
        Row-stochastic transition matrix, ``P[i, k] = Prob(y' = y_k | y = y_i)``.
    """
    if n == 1:
        return np.zeros(1), np.ones((1, 1))
    p = (1.0 + rho) / 2.0
    P = np.array([[p, 1 - p], [1 - p, p]])
    for m in range(3, n + 1):
        Z = np.zeros((m, m))
        Z[:-1, :-1] += p * P
        Z[:-1, 1:] += (1 - p) * P
        Z[1:, :-1] += (1 - p) * P
        Z[1:, 1:] += p * P
        Z[1:-1, :] /= 2.0
        P = Z
    s_y = sd / np.sqrt(1.0 - rho**2)
    half = np.sqrt(n - 1) * s_y
    return np.linspace(-half, half, n), P


def stationary_markov(P: np.ndarray) -> np.ndarray:
    """Stationary distribution of a row-stochastic matrix (left eigenvector, sums to one)."""
    n = P.shape[0]
    A = np.vstack([P.T - np.eye(n), np.ones((1, n))])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi, *_ = np.linalg.lstsq(A, b, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


@dataclass(frozen=True, eq=False)
class IncomeProcess:
    """A Markov chain for efficiency units.

    Attributes
    ----------
    z : ndarray (Nz,)
        Income levels, mean one under ``dist``.
    P : ndarray (Nz, Nz)
        Transition matrix, rows sum to one.
    log_z_perm : ndarray (Nz,)
        Unscaled log persistent component (the home-bias shifter uses it).
    dist : ndarray (Nz,)
        Stationary distribution.
    """

    z: np.ndarray
    P: np.ndarray
    log_z_perm: np.ndarray
    dist: np.ndarray

    def __post_init__(self):
        z = np.asarray(self.z, float)
        P = np.asarray(self.P, float)
        n = z.shape[0]
        if z.ndim != 1 or not np.all(np.isfinite(z)) or np.any(z <= 0):
            raise ParameterError("income levels z must be a 1-d array of positive finite numbers.")
        if P.shape != (n, n):
            raise ParameterError(
                f"income transition matrix has shape {P.shape}; it must be ({n}, {n})."
            )
        if np.any(P < 0) or np.any(np.abs(P.sum(axis=1) - 1.0) > 1e-10):
            raise ParameterError(
                "income transition matrix is not stochastic: entries must be >= 0 "
                f"and rows sum to 1 (row sums {P.sum(axis=1).round(12).tolist()})."
            )

    @property
    def n(self) -> int:
        return self.z.shape[0]

    @classmethod
    def from_matrix(cls, z, P, log_z_perm=None) -> "IncomeProcess":
        """Build from levels and a transition matrix (validated); z is rescaled to mean one."""
        z = np.asarray(z, float)
        P = np.asarray(P, float)
        obj = cls(
            z=z,
            P=P,
            log_z_perm=np.zeros_like(z) if log_z_perm is None else np.asarray(log_z_perm, float),
            dist=np.ones_like(z) / z.size,
        )
        dist = stationary_markov(obj.P)
        return cls(z=z / (dist @ z), P=P, log_z_perm=obj.log_z_perm, dist=dist)


def income_process(hh: Household | None = None) -> IncomeProcess:
    """The Krueger-Mitman-Perri style process of docs/model.md 1.2 for household parameters ``hh``."""
    hh = hh or Household()
    y_p, P_p = rouwenhorst(hh.n_perm, hh.rho_perm, np.sqrt(hh.var_perm))
    y_t, P_t = rouwenhorst(hh.n_iid, 0.0, np.sqrt(hh.var_iid))
    P = np.kron(P_p, P_t)
    y = (y_p[:, None] + y_t[None, :]).ravel()
    log_z_perm = np.repeat(y_p, hh.n_iid)
    dist = np.kron(stationary_markov(P_p), stationary_markov(P_t))
    z = np.exp(y)
    z = z / (dist @ z)
    return IncomeProcess(z=z, P=P, log_z_perm=log_z_perm, dist=dist)
