"""Calibration (issue 3): the moment operator, the published fixed point, the exact
Jacobian through the equilibrium, and recovery of known parameters in a small world."""

import numpy as np
import pytest

from hatrade import Household, ek_world, evaluate, published_household, solve_equilibrium
from hatrade.analysis.gravity import gravity_regression
from hatrade.calibration.calibrate import (
    CalibrationError,
    GravitySetup,
    _composite_jacobian,
    block_jacobian,
    calibrate,
    data_moments,
    ek_setup,
    model_moments,
    world_from_params,
)
from hatrade.core.markets import Layout
from hatrade.core.params import ParameterError
from hatrade.data import load_calibration, load_trade_data

COUNTRIES = ("A", "B", "C", "D")
NEAR = {("A", "B"), ("B", "A"), ("C", "D"), ("D", "C"), ("A", "C"), ("C", "A")}
BORDER = {("A", "B"), ("B", "A")}
TRUE = np.array(
    [
        0.1,
        -0.2,
        0.05,  # log TFP of A, B, C (D = 1)
        0.3,
        -0.2,
        0.1,  # theta_m of A, B, C (D = -sum)
        -2.0,
        -3.0,
        0.5,
    ]
)  # near, far, border
HH = Household(n_a=30)  # baseline preferences, coarse grid: fast
LABOR = np.array([1.0, 0.5, 2.0, 1.0])


def small_setup() -> GravitySetup:
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    X = np.array(
        [
            [
                float((COUNTRIES[i], COUNTRIES[j]) in NEAR),
                float((COUNTRIES[i], COUNTRIES[j]) not in NEAR),
                float((COUNTRIES[i], COUNTRIES[j]) in BORDER),
            ]
            for i, j in pairs
        ]
    )
    return GravitySetup.build(
        COUNTRIES,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        X,
        ("near", "far", "border"),
        n_bins=2,
    )


@pytest.fixture(scope="module")
def small_truth():
    setup = small_setup()
    world = world_from_params(TRUE, setup, LABOR)
    eq = solve_equilibrium(world, HH, solve_for="beta", R=1.01)
    return setup, eq, model_moments(eq, setup)


def test_moment_operator_is_the_regression():
    y = load_trade_data()["log_trade"].to_numpy()
    np.testing.assert_allclose(
        ek_setup().G @ y, gravity_regression(load_trade_data()).moments, atol=1e-10
    )
    assert data_moments().shape == (46,)


def test_rank_deficient_setup_rejected():
    with pytest.raises(ParameterError, match="rank deficient"):
        GravitySetup.build(("A", "B"), [0, 1], [1, 0], np.ones((2, 3)), ("a", "b", "c"), 1)


def test_published_calibration_is_a_fixed_point():
    cal = load_calibration("baseline")
    eq = evaluate(
        ek_world("baseline"),
        published_household("baseline"),
        cal.wages.to_numpy(),
        R=1.01,
        beta=cal.beta,
    )
    assert np.max(np.abs(model_moments(eq) - data_moments())) < 1e-4


def test_trade_costs_match_tradecosts_module():
    from hatrade.core.tradecosts import tfp, trade_costs

    cal = load_calibration("baseline")
    w = world_from_params(cal.params, ek_setup(), np.ones(19))
    np.testing.assert_allclose(w.d, trade_costs(cal.params), rtol=1e-13)
    np.testing.assert_allclose(w.tfp, tfp(cal.params), rtol=1e-13)


def test_total_derivative_matches_finite_differences(small_truth):
    """dm/dtheta through the equilibrium (block Jacobian + IFT) against re-solved equilibria."""
    setup, eq, m0 = small_truth
    layout = Layout(
        M=4,
        financial="globalization",
        solve_for="beta",
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=None,
    )
    bj = block_jacobian(eq, tangent_tol=1e-11)
    Eu, Et, mu, mt = _composite_jacobian(eq, bj, setup, TRUE, layout)
    total = mt - mu @ np.linalg.solve(Eu, Et)
    h = 1e-5
    for k in (0, 3, 6, 8):  # a TFP, a theta_m, a bin and the border parameter
        cols = []
        for s in (1, -1):
            th = TRUE.copy()
            th[k] += s * h
            e = solve_equilibrium(
                world_from_params(th, setup, LABOR),
                HH,
                solve_for="beta",
                R=1.01,
                wages=eq.prices.w,
                beta_guess=eq.beta,
                state=eq.state,
                tol=1e-12,
                hh_tol=1e-12,
            )
            cols.append(model_moments(e, setup))
        fd = (cols[0] - cols[1]) / (2 * h)
        np.testing.assert_allclose(total[:, k], fd, atol=2e-5 * max(1.0, np.abs(fd).max()))
    # the equilibrium Jacobian from the block equals central differences of the excess
    # demands (goods markets 2..M, world bonds) in the unknowns (wages 1..M-1, beta)
    world = world_from_params(TRUE, setup, LABOR)
    u0 = layout.pack(eq.prices.w, eq.prices.R, None, eq.beta)

    def excess(u):
        w = np.append(u[:3], 4.0 - u[:3].sum())
        e = evaluate(world, HH, w, R=1.01, beta=u[3], state=eq.state, hh_tol=1e-12)
        Y, Mij = e.aggregates["Y"], e.spending
        return np.append((Mij.sum(axis=0)[1:] - Y[1:]) / Y[1:], e.aggregates["A"].sum() / Y.sum())

    for k in range(4):
        du = np.zeros(4)
        du[k] = 1e-5
        fd = (excess(u0 + du) - excess(u0 - du)) / 2e-5
        np.testing.assert_allclose(Eu[:, k], fd, atol=2e-5 * max(1.0, np.abs(fd).max()))


def test_small_world_recovers_known_parameters(small_truth, tmp_path):
    setup, eq, targets = small_truth
    start = TRUE * (1 + 0.05 * np.where(np.arange(TRUE.size) % 2 == 0, 1.0, -1.0))
    res = calibrate(
        start,
        HH,
        setup=setup,
        targets=targets,
        labor=LABOR,
        wages=eq.prices.w,
        beta_guess=eq.beta,
        tol=1e-10,
        checkpoint=tmp_path / "ckpt.json",
    )
    assert res.converged
    np.testing.assert_allclose(res.params, TRUE, atol=1e-6)
    assert abs(res.equilibrium.beta - eq.beta) < 1e-8
    assert (tmp_path / "ckpt.json").exists()
    assert res.equilibrium_solves <= 8


def test_stall_reports_best_point(small_truth, tmp_path):
    setup, eq, targets = small_truth
    start = TRUE * 1.05
    with pytest.raises(CalibrationError, match="best max"):
        calibrate(
            start,
            HH,
            setup=setup,
            targets=targets,
            labor=LABOR,
            wages=eq.prices.w,
            beta_guess=eq.beta,
            tol=1e-14,
            max_iter=1,
            checkpoint=tmp_path / "c.json",
        )
    assert (tmp_path / "c.json").exists()
    # resume continues from the saved best point and converges
    res = calibrate(
        start,
        HH,
        setup=setup,
        targets=targets,
        labor=LABOR,
        tol=1e-9,
        checkpoint=tmp_path / "c.json",
        resume=True,
    )
    np.testing.assert_allclose(res.params, TRUE, atol=1e-5)


def test_bad_parameter_length():
    with pytest.raises(ParameterError, match="46"):
        calibrate(np.zeros(45), published_household("baseline"))


@pytest.mark.slow
def test_recovers_published_calibration_from_5_percent_start():
    """Issue 3: from a start 5% away from baseline-parameters.csv, recover it to 1e-3."""
    from hatrade.core.tradecosts import tfp

    cal = load_calibration("baseline")
    theta0 = cal.params * (1 + 0.05 * np.where(np.arange(46) % 2 == 0, 1.0, -1.0))
    w0 = cal.wages.to_numpy() * tfp(theta0) / tfp(cal.params)
    res = calibrate(
        theta0, published_household("baseline"), wages=w0 / w0.mean(), beta_guess=cal.beta, tol=1e-8
    )
    assert res.converged
    assert np.max(np.abs(res.params - cal.params)) < 1e-3
    assert abs(res.equilibrium.beta - cal.beta) < 1e-6
    assert res.equilibrium_solves <= 15
