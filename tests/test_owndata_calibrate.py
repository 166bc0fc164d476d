"""Calibration to own data (issue 19): recovery of known parameters on a small synthetic
world (OLS and PPML), and the published calibration through the generic path (slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hatrade import Household, solve_equilibrium
from hatrade.calibration.generic import calibrate_data, gravity_setup, prepare
from hatrade.calibration.moments import world_from_params
from hatrade.data.specification import build_specification
from hatrade.data.tidy import read_trade_data

CODES = ["AAA", "BBB", "CCC", "DDD"]
LNDIST = np.array([[0, 7.0, 7.8, 8.6], [7.0, 0, 7.3, 8.1], [7.8, 7.3, 0, 6.9], [8.6, 8.1, 6.9, 0]])
FTA = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
FORMULA = "lndist + fta"
LABOR = np.array([1.0, 0.7, 0.5, 0.8])


def household() -> Household:
    return Household(n_a=20, n_perm=2, n_iid=2)


def tables(trade: np.ndarray | None = None):
    rows = []
    for i, imp in enumerate(CODES):
        for j, exp in enumerate(CODES):
            x = 1.0 if trade is None else trade[i, j]
            rows.append(
                dict(exporter=exp, importer=imp, trade=x, lndist=LNDIST[i, j], fta=FTA[i, j])
            )
    countries = pd.DataFrame({"country": CODES, "labor": LABOR})
    return pd.DataFrame(rows), countries


@pytest.fixture(scope="module")
def truth():
    """Known parameters and the model trade they generate (beta solved at R = 1.01)."""
    data = read_trade_data(*tables())
    setup = gravity_setup(build_specification(data, FORMULA))
    # log TFP (3), theta_m (3), const, lndist, fta; all trade costs above one
    theta = np.array([0.1, -0.15, 0.05, 0.2, -0.1, 0.3, 2.0, -1.0, 0.6])
    world = world_from_params(theta, setup, LABOR)
    assert (world.d[~np.eye(4, dtype=bool)] > 1).all()
    eq = solve_equilibrium(world, household().replace(beta=None), solve_for="beta", R=1.01)
    return theta, eq


@pytest.mark.slow  # about 40 s of compilation and solves on two busy cores
@pytest.mark.parametrize("estimator", ["ols", "ppml"])
def test_calibration_recovers_known_parameters(truth, estimator):
    theta, eq = truth
    data = read_trade_data(*tables(np.asarray(eq.spending)))
    cs = prepare(data, FORMULA, estimator)
    res, _ = calibrate_data(cs, household=household(), tol=1e-10, max_iter=15)
    assert res.converged and res.residual < 1e-10
    np.testing.assert_allclose(res.params, theta, rtol=0, atol=1e-7)
    assert res.equilibrium.beta == pytest.approx(eq.beta, abs=1e-9)


@pytest.mark.slow
def test_ek_data_through_generic_path_reproduce_calibration():
    """The EK data in the tidy format with the EK formula give today's calibration (the
    paper's path, :func:`hatrade.calibration.calibrate.calibrate`, from the same start):
    46 parameters to 1e-6, beta to 1e-9; both within 1e-3 of the published vector."""
    from hatrade.calibration.calibrate import calibrate
    from hatrade.core.worlds import published_household
    from hatrade.data import load_calibration
    from hatrade.data.ek_generic import ek_trade_data
    from hatrade.data.specification import EK_FORMULA

    cal = load_calibration("baseline")
    hh = published_household("baseline")
    start = dict(wages=cal.wages.to_numpy(), beta_guess=cal.beta, tol=1e-8)
    paper = calibrate(cal.params, hh, **start)
    generic, _ = calibrate_data(ek_trade_data(), EK_FORMULA, hh, theta0=cal.params, **start)
    assert paper.converged and generic.converged
    np.testing.assert_allclose(generic.params, paper.params, rtol=0, atol=1e-6)
    assert generic.equilibrium.beta == pytest.approx(paper.equilibrium.beta, abs=1e-9)
    assert np.max(np.abs(generic.params - cal.params)) < 1e-3
