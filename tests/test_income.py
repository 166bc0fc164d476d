"""Tests for the income process (hatrade.core.income, docs/model.md 1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from hatrade.core.income import IncomeProcess, income_process, rouwenhorst
from hatrade.core.params import Household, ParameterError

BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def left_unit_eigenvector(P: np.ndarray) -> np.ndarray:
    """Stationary distribution by numpy's eigen-solver (independent of the library)."""
    vals, vecs = np.linalg.eig(P.T)
    k = np.argmin(np.abs(vals - 1.0))
    assert abs(vals[k] - 1.0) < 1e-12
    v = np.real(vecs[:, k])
    return v / v.sum()


@pytest.fixture(scope="module")
def inc():
    return income_process(Household())


def test_combined_chain_stationary_distribution(inc):
    """Stationary distribution = [1,4,6,4,1]/16 kron [1/2,1/2] (persistent-major order)."""
    expected = np.kron(BINOMIAL_5, [0.5, 0.5])
    assert inc.P.shape == (10, 10) and inc.z.shape == (10,)
    np.testing.assert_allclose(inc.dist, expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(left_unit_eigenvector(inc.P), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(expected @ inc.P, expected, rtol=0, atol=1e-14)


def test_mean_income_is_one(inc):
    expected = np.kron(BINOMIAL_5, [0.5, 0.5])
    assert float(expected @ inc.z) == pytest.approx(1.0, abs=1e-14)
    assert np.all(inc.z > 0)


def test_transition_matrix_is_stochastic_kronecker(inc):
    assert np.all(inc.P >= 0)
    np.testing.assert_allclose(inc.P.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    hh = Household()
    _, P_p = rouwenhorst(hh.n_perm, hh.rho_perm, np.sqrt(hh.var_perm))
    _, P_t = rouwenhorst(hh.n_iid, 0.0, np.sqrt(hh.var_iid))
    np.testing.assert_allclose(inc.P, np.kron(P_p, P_t), rtol=0, atol=1e-15)
    # the iid component has identical rows (no persistence)
    np.testing.assert_allclose(P_t, 0.5, atol=1e-15)


@pytest.mark.parametrize(
    "n,rho,sd",
    [
        (5, 0.90, np.sqrt(0.039)),
        (2, 0.0, np.sqrt(0.0522)),
        (7, 0.95, 0.1),
        (3, 0.5, 0.3),
        (9, -0.4, 0.2),
    ],
)
def test_rouwenhorst_moments(n, rho, sd):
    """Stationary variance s.d.^2/(1-rho^2), autocorrelation rho, E[y'|y] = rho y."""
    y, P = rouwenhorst(n, rho, sd)
    assert y.shape == (n,) and P.shape == (n, n)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-14)
    s_y = sd / np.sqrt(1 - rho**2)
    np.testing.assert_allclose(
        y, np.linspace(-np.sqrt(n - 1) * s_y, np.sqrt(n - 1) * s_y, n), atol=1e-14
    )
    pi = left_unit_eigenvector(P)
    mean = pi @ y
    var = pi @ y**2 - mean**2
    autocov = pi @ (y * (P @ y)) - mean**2
    assert mean == pytest.approx(0.0, abs=1e-13)
    assert var == pytest.approx(sd**2 / (1 - rho**2), rel=1e-12)
    assert autocov / var == pytest.approx(rho, abs=1e-12)
    np.testing.assert_allclose(P @ y, rho * y, atol=1e-13)  # linear conditional mean
    # innovation variance: Var(y' | y) averaged = sd^2
    cond_var = P @ y**2 - (P @ y) ** 2
    assert pi @ cond_var == pytest.approx(sd**2, rel=1e-12)


def test_persistent_and_transitory_components(inc):
    """Recover rho = 0.9, var 0.039 (persistent) and 0.0522 (iid) from the combined chain."""
    dist, P = inc.dist, inc.P
    yp = inc.log_z_perm
    # log z = y_perm + y_iid + const (the rescaling to mean one)
    ylog = np.log(inc.z)
    yt = ylog - yp
    yt = yt - dist @ yt
    assert dist @ yp == pytest.approx(0.0, abs=1e-13)
    var_p = dist @ yp**2
    assert var_p == pytest.approx(0.039 / (1 - 0.9**2), rel=1e-12)
    assert (dist @ (yp * (P @ yp))) / var_p == pytest.approx(0.9, abs=1e-12)
    var_t = dist @ yt**2
    assert var_t == pytest.approx(0.0522, rel=1e-12)
    assert dist @ (yt * (P @ yt)) == pytest.approx(0.0, abs=1e-14)
    # persistent-major ordering: log_z_perm repeats each persistent state for both iid states
    np.testing.assert_array_equal(yp[0::2], yp[1::2])
    assert np.all(np.diff(yp[0::2]) > 0)
    assert np.all(yt[0::2] < 0) and np.all(yt[1::2] > 0)


@pytest.mark.parametrize(
    "z,P,fragment",
    [
        ([1.0, 2.0], [[0.9, 0.2], [0.3, 0.7]], "stochastic"),  # row sums 1.1
        ([1.0, 2.0], [[1.2, -0.2], [0.3, 0.7]], "stochastic"),  # negative entry, rows sum 1
        ([1.0, 2.0], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], "shape"),
        ([1.0, 2.0], [[0.5, 0.5], [0.5, 0.4]], "stochastic"),
        ([1.0, -2.0], [[0.5, 0.5], [0.5, 0.5]], "positive"),
        ([1.0, np.nan], [[0.5, 0.5], [0.5, 0.5]], "positive"),
    ],
)
def test_from_matrix_rejects_bad_chains(z, P, fragment):
    with pytest.raises(ParameterError, match=fragment):
        IncomeProcess.from_matrix(z, P)


def test_from_matrix_accepts_and_normalizes():
    P = np.array([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])
    inc = IncomeProcess.from_matrix([0.5, 1.0, 3.0], P)
    pi = left_unit_eigenvector(P)
    np.testing.assert_allclose(inc.dist, pi, atol=1e-13)
    assert inc.dist @ inc.z == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(inc.z / inc.z[0], [1.0, 2.0, 6.0], rtol=1e-14)
