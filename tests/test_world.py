r"""Tests for aggregation and the world equilibrium (hatrade.solve.equilibrium, docs/model.md section 3).

Small worlds (2-4 countries, n_a = 30) except the gravity-regression check, which needs the
19 Eaton-Kortum countries and does one household solve at fixed prices.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from hatrade import (
    EquilibriumError,
    Household,
    ParameterError,
    SolverOptions,
    World,
    evaluate,
    solve_equilibrium,
)
from hatrade.analysis.gravity import gravity_regression, model_trade_table
from hatrade.core.tradecosts import trade_costs, unpack_parameters
from hatrade.core.worlds import ek_world, published_household
from hatrade.data import COUNTRIES, load_calibration, load_covariates

TOL = 1e-10  # solve_equilibrium's default tolerance (max abs relative excess demand)


# ----------------------------------------------------------------------------- log model


@pytest.fixture(scope="module")
def log_world():
    return World(
        countries=("AAA", "BBB", "CCC", "DDD"),
        tfp=[1.0, 0.7, 1.3, 0.9],
        labor=[1.0, 0.4, 0.8, 0.3],
        d=[
            [1.0, 1.3, 1.7, 1.2],
            [1.5, 1.0, 1.25, 1.9],
            [1.1, 1.6, 1.0, 1.4],
            [2.0, 1.35, 1.15, 1.0],
        ],
    )


@pytest.fixture(scope="module")
def log_eval(log_world):
    """Log model at arbitrary (non-equilibrium) prices, evaluated with 64-bit mode off."""
    hh = Household(gamma=1.0, sigma_eps=0.2369, psi_slope=0.0, n_a=30)
    with jax.enable_x64(False):
        return evaluate(log_world, hh, wages=[1.1, 0.8, 1.3, 0.8], R=1.01, beta=0.9)


def test_public_entry_points_compute_in_float64(log_eval):
    assert log_eval.aggregates["M"].dtype == np.float64
    assert log_eval.policies.c.dtype == np.float64
    assert log_eval.lam.dtype == np.float64


def test_log_model_gravity_holds_exactly(log_eval):
    """Proposition 3: M_ij/M_ii = (p_ij/p_ii)^(-1/sigma_eps), at any prices."""
    sigma = 0.2369
    Mij, p = log_eval.spending, log_eval.p
    lhs = Mij / np.diag(Mij)[:, None]
    rhs = (p / np.diag(p)[:, None]) ** (-1.0 / sigma)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=0)
    assert np.ptp(np.log(lhs)) > 1.0  # trade shares do differ across partners


def test_log_model_choice_probabilities_same_in_every_state(log_eval):
    sigma = 0.2369
    pi, p = log_eval.policies.pi, log_eval.p  # pi (M, Na, Nz, M)
    logit = p ** (-1.0 / sigma)
    logit = logit / logit.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        pi, np.broadcast_to(logit[:, None, None, :], pi.shape), rtol=1e-10, atol=1e-13
    )
    # yet assets and consumption do vary across states
    assert np.ptp(log_eval.policies.a_p[0]) > 1.0


@pytest.fixture(scope="module")
def ek_log_eval():
    """The 19-country log calibration at its published prices (one household solve)."""
    cal = load_calibration("log")
    world = ek_world("log")
    hh = published_household("log", n_a=40)
    return cal, world, evaluate(world, hh, wages=cal.wages.values, R=1.01, beta=cal.beta)


def test_gravity_regression_recovers_log_model_parameters(ek_log_eval):
    r"""Model trade from the log model fits the EK regression exactly.

    With :math:`\log d_{ij} = -x_{ij}/4` (no floor) and :math:`p_{ij} = d_{ij} w_j/A_j`,
    :math:`\log(s_{ij}/s_{ii}) = x_{ij}/(4\sigma) + S_j - S_i` with
    :math:`S_j = -\sigma^{-1}\log(w_j/A_j)` (demeaned): the ten coefficients and
    :math:`\theta^m` are the calibration's divided by :math:`4\sigma_\epsilon`.
    """
    cal, world, ev = ek_log_eval
    sigma = cal.sigma_eps
    params = np.asarray(cal.params)
    parts = unpack_parameters(params)
    # the trade costs are exactly exp(-x/4): the d >= 1 floor never binds in this calibration
    cov = load_covariates()
    pos = {c: k for k, c in enumerate(COUNTRIES)}
    i = cov["importer"].map(pos).to_numpy()
    j = cov["exporter"].map(pos).to_numpy()
    x = (
        cov[["bin375", "bin750", "bin1500", "bin3000", "bin6000", "binmax"]].to_numpy()
        @ parts["dist_bins"]
        + parts["border"] * cov["border"].to_numpy()
        + parts["language"] * cov["language"].to_numpy()
        + parts["ec"] * cov["ec"].to_numpy()
        + parts["efta"] * cov["efta"].to_numpy()
        + parts["theta_m"][i]
    )
    assert np.exp(-x / 4).min() > 1.05
    np.testing.assert_allclose(trade_costs(params)[i, j], np.exp(-x / 4), rtol=1e-14)
    np.testing.assert_allclose(world.d, trade_costs(params), rtol=0, atol=0)

    res = gravity_regression(model_trade_table(ev.trade_shares, COUNTRIES))
    assert np.abs(res.residuals.to_numpy()).max() < 1e-8
    np.testing.assert_allclose(
        res.coefficients.to_numpy(), params[36:] / (4 * sigma), rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(
        res.theta_m.to_numpy(), parts["theta_m"] / (4 * sigma), rtol=0, atol=1e-8
    )
    s = -np.log(ev.prices.w / world.tfp) / sigma
    np.testing.assert_allclose(res.S.to_numpy(), s - s.mean(), rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- equilibrium


@pytest.fixture(scope="module")
def eq_beta(three_countries, small_household):
    """Three countries, beta solved at R = 1.01 (the calibration's unknowns)."""
    return solve_equilibrium(
        three_countries,
        small_household,
        solve_for="beta",
        R=1.01,
        wages=[1.2, 0.9, 0.9],
        beta_guess=0.93,
    )


def test_newton_converges(eq_beta, market_residuals):
    eq = eq_beta
    assert eq.converged and eq.residual < TOL and eq.iterations >= 1
    r = market_residuals(eq)
    assert np.abs(r["goods"][1:]).max() < TOL and abs(r["bonds"][0]) < TOL
    assert eq.R == pytest.approx(1.01, abs=1e-15)
    assert 0.8 < eq.beta < 1 / 1.01
    assert eq.prices.w.mean() == pytest.approx(1.0, abs=1e-14)
    assert np.ptp(eq.prices.w) > 0.01  # an asymmetric world has different wages


def test_walras_law(eq_beta, market_residuals):
    """Country 1's goods market, dropped from the system, clears too."""
    r = market_residuals(eq_beta)
    assert abs(r["goods"][0]) < 10 * TOL, r


def test_aggregates_recomputed_from_policies(eq_beta, three_countries):
    eq = eq_beta
    pol, lam, L = eq.policies, eq.lam, three_countries.labor
    np.testing.assert_allclose(lam.sum(axis=(1, 2)), 1.0, atol=1e-13)
    assert lam.min() >= -1e-14
    z = eq.income.z
    N = L * np.einsum("kaz,z->k", lam, z)
    np.testing.assert_allclose(eq.aggregates["Y"], eq.prices.w * N, rtol=1e-13)
    Mij = L[:, None] * np.einsum("kaz,kazj,kj->kj", lam, pol.pi * pol.c, eq.p)
    np.testing.assert_allclose(eq.spending, Mij, rtol=1e-12)
    A = L * np.einsum("kaz,kazj->k", lam, pol.pi * pol.a_p)
    np.testing.assert_allclose(eq.aggregates["A"], A, rtol=1e-12, atol=1e-14)
    p = three_countries.d * (eq.prices.w / three_countries.tfp)[None, :]
    np.testing.assert_allclose(eq.p, p, rtol=1e-14)
    np.testing.assert_allclose(eq.trade_shares.sum(axis=1), 1.0, atol=1e-14)


def test_budget_and_net_exports(eq_beta):
    """Spending = Y + (R-1)A (+ L T); with goods markets clear, X - IM = -(R-1)A."""
    eq = eq_beta
    agg = eq.aggregates
    Y, A = agg["Y"], agg["A"]
    np.testing.assert_allclose(eq.spending.sum(axis=1), Y + (eq.R - 1) * A, rtol=1e-12)
    nx = eq.net_exports()
    np.testing.assert_allclose(nx, -(eq.R - 1) * A, atol=1e-9 * Y.max())
    assert np.abs(A).max() > 1e-4  # some country is a creditor: the check is not 0 = 0
    assert nx.sum() == pytest.approx(0.0, abs=1e-12)


def test_solve_for_beta_then_R_round_trip(eq_beta, three_countries, small_household):
    """At the beta that clears the bond market at R = 1.01, solving for R returns 1.01."""
    eq = solve_equilibrium(three_countries, small_household, solve_for="R", beta=eq_beta.beta)
    assert eq.converged and eq.residual < TOL
    assert eq.beta == eq_beta.beta
    assert eq.R == pytest.approx(1.01, abs=1e-8)
    np.testing.assert_allclose(eq.prices.w, eq_beta.prices.w, rtol=1e-8)


def test_impossible_solve_raises_with_residual(three_countries, small_household):
    with pytest.raises(EquilibriumError, match=r"excess demand \d\.\d+e[-+]\d+") as err:
        solve_equilibrium(
            three_countries,
            small_household,
            solve_for="beta",
            R=1.01,
            wages=[1.6, 0.6, 0.8],
            beta_guess=0.93,
            max_iter=1,
        )
    assert "iteration" in str(err.value)


def test_symmetric_world(small_household, eq_beta):
    """Identical countries, symmetric costs: equal wages and import shares, zero net assets.

    Three countries rather than two so that the solve reuses the compiled functions of
    ``eq_beta`` (same unknowns and array shapes); started from unequal wages.
    """
    d = np.full((3, 3), 1.4) - 0.4 * np.eye(3)
    world = World(countries=("HOM", "FOR", "OTH"), tfp=[1.0] * 3, labor=[1.0] * 3, d=d)
    eq = solve_equilibrium(
        world, small_household, solve_for="beta", R=1.01, wages=[1.3, 0.7, 1.0], beta_guess=0.93
    )
    assert eq.converged and eq.residual < TOL
    np.testing.assert_allclose(eq.prices.w, 1.0, atol=1e-9)
    share = eq.import_share.to_numpy()
    np.testing.assert_allclose(share, share[0], atol=1e-9)
    assert 0.01 < share[0] < 0.9
    np.testing.assert_allclose(eq.aggregates["A"], 0.0, atol=1e-9)
    np.testing.assert_allclose(eq.net_exports(), 0.0, atol=1e-9)
    assert eq.beta < 1 / 1.01


def test_financial_autarky(three_countries, small_household, market_residuals):
    world = three_countries.replace(financial="autarky")
    eq = solve_equilibrium(world, small_household, wages=[1.2, 0.9, 0.9])
    assert eq.converged and eq.residual < TOL
    R = np.asarray(eq.R)
    assert R.shape == (3,) and np.all(R < 1 / small_household.beta)
    r = market_residuals(eq)
    np.testing.assert_allclose(r["bonds"], 0.0, atol=TOL)  # A_i / Y_i ~ 0 for each country
    assert np.abs(r["goods"]).max() < 10 * TOL  # all goods markets, including Walras's
    np.testing.assert_allclose(eq.net_exports(), 0.0, atol=1e-9)  # balanced trade


def test_tariffs_rebated(small_household, market_residuals):
    """T_i L_i = G_i, and every goods market clears at factory prices (Walras's law).

    Spending M_ij includes the tariff; the exporter receives M_ij / (1 + t_ij), so the goods
    market for j is Y_j = sum_i M_ij / (1 + t_ij), and then trade is balanced up to interest
    payments at world prices: X_i - IM_i = -(R-1) A_i.
    """
    t = np.array([[0.0, 0.2], [0.1, 0.0]])
    world = World(
        countries=("AAA", "BBB"),
        tfp=[1.0, 0.8],
        labor=[1.0, 0.6],
        d=[[1.0, 1.3], [1.2, 1.0]],
        tariffs=t,
    )
    eq = solve_equilibrium(world, small_household, solve_for="R", wages=[1.1, 0.9])
    assert eq.converged
    r = market_residuals(eq)
    G = eq.aggregates["G"]
    assert np.all(G > 0) and np.all(eq.prices.T > 0)
    np.testing.assert_allclose(eq.prices.T * world.labor, G, rtol=1e-9)
    np.testing.assert_allclose(
        eq.aggregates["G"], (t / (1 + t) * eq.spending).sum(axis=1), rtol=1e-13
    )
    # household budgets: spending = Y + (R-1) A + L T
    Y, A = eq.aggregates["Y"], eq.aggregates["A"]
    np.testing.assert_allclose(
        eq.spending.sum(axis=1), Y + (eq.R - 1) * A + world.labor * eq.prices.T, rtol=1e-12
    )
    assert np.abs(r["goods"]).max() < 10 * TOL, r
    world_value = eq.spending / (1 + t)
    nx = (
        world_value.sum(axis=0)
        - np.diag(world_value)
        - (world_value.sum(axis=1) - np.diag(world_value))
    )
    np.testing.assert_allclose(nx, -(eq.R - 1) * A, atol=1e-9)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "field,value",
    [
        ("gamma", 0.0),
        ("gamma", -1.0),
        ("gamma", np.nan),
        ("sigma_eps", 0.0),
        ("sigma_eps", -0.2),
        ("beta", 0.0),
        ("beta", 1.0),
        ("beta", 1.2),
        ("beta", -0.5),
        ("phi", -0.1),
        ("n_a", 2),
    ],
)
def test_bad_household_parameters(field, value):
    with pytest.raises(ParameterError, match=rf"\b{field}\b"):
        Household(**{field: value})


def _world_kwargs(**changes):
    kw = {
        "countries": ("AAA", "BBB", "CCC"),
        "tfp": [1.0, 0.8, 1.2],
        "labor": [1.0, 0.5, 0.7],
        "d": np.array([[1.0, 1.3, 1.6], [1.2, 1.0, 1.4], [1.8, 1.25, 1.0]]),
    }
    kw.update(changes)
    return kw


_D = _world_kwargs()["d"]


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"d": np.where(np.arange(9).reshape(3, 3) == 1, 0.9, _D)}, r"trade_costs\[AAA,BBB\]"),
        ({"d": _D + np.diag([0.0, 0.1, 0.0])}, "trade_costs diagonal"),
        ({"d": _D[:2, :2]}, "trade_costs has shape"),
        ({"tfp": [1.0, 0.0, 1.2]}, "tfp"),
        ({"tfp": [1.0, -0.8, 1.2]}, "tfp"),
        ({"labor": [1.0, 0.5, 0.0]}, "labor"),
        ({"tfp": [1.0, 0.8]}, "tfp has shape"),
        ({"labor": [1.0, 0.5, 0.7, 1.0]}, "labor has shape"),
        ({"tfp": [1.0, np.inf, 1.2]}, "tfp"),
        ({"tariffs": np.full((3, 3), 0.1)}, "tariffs"),
        ({"tariffs": -0.1 * (1 - np.eye(3))}, "tariffs"),
        ({"tariffs": np.zeros((2, 2))}, "tariffs has shape"),
        ({"financial": "closed"}, "financial"),
        ({"countries": ("AAA", "BBB", "AAA")}, "countries"),
    ],
)
def test_bad_world(changes, fragment):
    with pytest.raises(ParameterError, match=fragment):
        World(**_world_kwargs(**changes))


def test_unknown_country_code(three_countries):
    assert three_countries.index("BBB") == 1
    with pytest.raises(ParameterError, match="unknown country code 'XYZ'.*AAA, BBB, CCC"):
        three_countries.index("XYZ")


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"solve_for": "gamma"}, "solve_for"),
        ({"wages": [1.0, 1.0]}, "wages"),
        ({"wages": [1.0, -1.0, 1.0]}, "wages"),
        ({"R": -1.0, "solve_for": "beta"}, "R"),
        ({"coarse_n_a": 2}, "coarse_n_a"),
        ({"coarse_n_a": 25.0}, "coarse_n_a"),
        ({"coarse_n_a": True}, "coarse_n_a"),
    ],
)
def test_bad_solver_input(three_countries, small_household, kwargs, fragment):
    with pytest.raises(ParameterError, match=fragment):
        solve_equilibrium(three_countries, small_household, **kwargs)


def test_autarky_needs_beta(three_countries, small_household):
    with pytest.raises(ParameterError, match="autarky"):
        solve_equilibrium(
            three_countries.replace(financial="autarky"), small_household, solve_for="beta"
        )
    with pytest.raises(ParameterError, match="beta"):
        solve_equilibrium(three_countries, small_household.replace(beta=None), solve_for="R")
    with pytest.raises(ParameterError, match="beta"):
        evaluate(three_countries, small_household.replace(beta=None), wages=[1.0, 1.0, 1.0])


def test_unconverged_distribution_is_an_error_naming_the_country():
    """The stationary distribution's Krylov residual is checked: a country whose
    distribution was not found stops the solve with its name and residual."""
    from hatrade.core.errors import EquilibriumError
    from hatrade.core.markets import check_households

    Na, Nz = 4, 2
    lam = np.full((3, Na, Nz), 1.0 / (Na * Nz))
    good = np.zeros((3, Na, Nz, 2))
    sol = dict(
        iterations=np.array([10, 10, 10]),
        state=SimpleNamespace(c=good + 1.0),
        lam=lam,
        lam_residual=np.array([1e-15, 3e-4, 2e-16]),
    )
    with pytest.raises(EquilibriumError, match=r"\['F'\].*3\.0e-04"):
        check_households(sol, ("H", "F", "X"), 100)
    sol["lam_residual"] = np.array([1e-15, np.nan, 2e-16])
    with pytest.raises(EquilibriumError, match=r"\['F'\]"):
        check_households(sol, ("H", "F", "X"), 100)
    sol["lam_residual"] = np.array([1e-15, 1e-14, 2e-16])
    check_households(sol, ("H", "F", "X"), 100)  # converged: no error
    lam[2, 0, 0] = -1e-6
    with pytest.raises(EquilibriumError, match=r"negative mass.*\['X'\]"):
        check_households(sol, ("H", "F", "X"), 100)


def test_calibration_and_counterfactuals_share_one_compiled_residual(
    three_countries, small_household, eq_beta
):
    """The fixed R or beta is traced, not a compile-time constant: solving the same world
    for R at two different betas after solving it for beta compiles the world residual
    once, and gives the same equilibrium as the beta solve at its beta."""
    from hatrade.solve.world_residual import _residual_jit

    n0 = _residual_jit._cache_size()
    hh = dataclasses.replace(small_household, beta=None)
    a = solve_equilibrium(
        three_countries, hh, solve_for="beta", R=1.01, wages=[1.2, 0.9, 0.9], beta_guess=0.93
    )
    n1 = _residual_jit._cache_size()
    b = solve_equilibrium(
        three_countries, hh, solve_for="R", beta=a.beta, wages=a.prices.w, R_guess=1.0105
    )
    c = solve_equilibrium(
        three_countries, hh, solve_for="R", beta=a.beta - 0.002, wages=a.prices.w, R_guess=1.0105
    )
    assert _residual_jit._cache_size() == n1 <= n0 + 1
    np.testing.assert_allclose(b.prices.w, a.prices.w, rtol=1e-7)
    assert float(np.asarray(b.prices.R).ravel()[0]) == pytest.approx(1.01, abs=1e-8)
    assert float(np.asarray(c.prices.R).ravel()[0]) > 1.01  # patience down, rate up


# ----------------------------------------------------------------------------- coarse stage


@pytest.fixture(scope="module")
def fine_household():
    """n_a = 60: the coarse stage (coarse_n_a = 20) applies."""
    return Household(n_a=60, beta=None)


def _far_solve(world, hh, **kw):
    return solve_equilibrium(
        world, hh, solve_for="beta", R=1.01, wages=[1.5, 0.7, 0.8], beta_guess=0.9, **kw
    )


@pytest.fixture(scope="module")
def eq_plain(three_countries, fine_household):
    return _far_solve(three_countries, fine_household, coarse_n_a=None)


def test_coarse_stage_gives_the_same_equilibrium(
    three_countries, fine_household, eq_plain, market_residuals
):
    """The two-grid start changes the path, not the answer: same wages and beta as a solve
    without it (both to 1e-10 in excess demands), checked on the fine model's markets; the
    coarse stage ran (its solves and Jacobians reported apart) and the full solve needed no
    full Jacobian of its own."""
    eq = _far_solve(three_countries, fine_household, coarse_n_a=20)
    assert eq_plain.coarse_household_solves == 0 and eq_plain.jacobians >= 1
    assert eq.coarse_household_solves >= 2 and eq.coarse_jacobians >= 1
    assert eq.seconds_coarse > 0
    assert eq.jacobians == 0
    assert eq.history[1] < 0.2 * eq.history[0]  # the coarse step is a good first step
    r = market_residuals(eq)
    assert np.abs(r["goods"][1:]).max() < TOL and abs(r["bonds"][0]) < TOL
    np.testing.assert_allclose(eq.prices.w, eq_plain.prices.w, rtol=1e-8)
    assert eq.beta == pytest.approx(eq_plain.beta, rel=1e-9)
    assert eq.a_grid.shape[-1] == 60 and eq.lam.shape[1] == 60


@pytest.mark.parametrize("layout", ["autarky", "tariffs"])
def test_coarse_stage_other_unknowns(three_countries, layout, market_residuals):
    """The coarse stage with one R per country (autarky) and with tariff transfers as
    unknowns: it runs, and the result clears the full model's markets."""
    if layout == "autarky":
        world = three_countries.replace(financial="autarky")
    else:
        world = three_countries.replace(tariffs=[[0, 0.1, 0.05], [0.2, 0, 0], [0, 0.1, 0]])
    eq = solve_equilibrium(
        world,
        Household(n_a=60, beta=0.93),
        solve_for="R",
        wages=[1.5, 0.7, 0.8],
        R_guess=1.0,
        coarse_n_a=20,
    )
    assert eq.coarse_household_solves >= 2 and eq.residual < TOL
    r = market_residuals(eq)
    assert np.abs(r["goods"]).max() < 10 * TOL
    np.testing.assert_allclose(r["bonds"], 0.0, atol=TOL)
    if layout == "tariffs":
        G = eq.aggregates["G"]
        np.testing.assert_allclose(eq.prices.T * world.labor, G, rtol=1e-9)


def test_coarse_stage_skipped_when_grid_is_small_or_start_is_close(
    three_countries, fine_household, eq_plain
):
    # n_a = 30 < 2 * 25: no coarse stage
    eq = _far_solve(three_countries, Household(n_a=30, beta=None))
    assert eq.coarse_household_solves == 0 and eq.coarse_jacobians == 0
    # from the solution: nothing to do
    eq = solve_equilibrium(
        three_countries,
        fine_household,
        solve_for="beta",
        R=1.01,
        wages=eq_plain.prices.w,
        beta_guess=eq_plain.beta,
        coarse_n_a=20,
    )
    assert eq.coarse_household_solves == 0 and eq.iterations <= 1


def test_coarse_stage_failure_falls_back(
    three_countries, fine_household, eq_plain, monkeypatch, caplog
):
    """A coarse stage that raises, or whose step does not reduce the fine excess demands,
    leaves a solve that still converges (with a full Jacobian) to the same equilibrium."""
    import logging

    import hatrade.solve.newton as N

    solve = N.newton_solve

    def failing(problem, *args, **kw):
        if problem.match is not None:  # the coarse stage's own solve
            raise EquilibriumError("coarse trouble")
        return solve(problem, *args, **kw)

    monkeypatch.setattr(N, "newton_solve", failing)
    with caplog.at_level(logging.INFO, logger="hatrade.solve.newton"):
        eq = _far_solve(three_countries, fine_household, coarse_n_a=20)
    assert "coarse stage (n_a = 20) failed" in caplog.text and "coarse trouble" in caplog.text
    assert eq.coarse_household_solves == 0 and eq.jacobians >= 1
    np.testing.assert_allclose(eq.prices.w, eq_plain.prices.w, rtol=1e-8)
    monkeypatch.setattr(N, "newton_solve", solve)

    stage = N.coarse_stage

    def bad_step(*args, **kw):
        out = stage(*args, **kw)
        out.u = out.u + 0.3  # a step far off: rejected on the fine residuals
        return out

    monkeypatch.setattr(N, "coarse_stage", bad_step)
    eq = _far_solve(three_countries, fine_household, coarse_n_a=20)
    assert eq.coarse_household_solves >= 2 and eq.jacobians >= 1
    np.testing.assert_allclose(eq.prices.w, eq_plain.prices.w, rtol=1e-8)
    assert eq.beta == pytest.approx(eq_plain.beta, rel=1e-9)


def test_inexact_household_solves_end_exact(three_countries, fine_household, eq_plain, monkeypatch):
    """Early household solves are loose (tolerance ~ 1e-3 x the excess demands), the last
    one is to hh_tol: the returned states are a household fixed point at hh_tol (a re-solve
    from them moves nothing) and the equilibrium is the one of exact solves."""
    import hatrade.solve.newton as N

    used = []
    residual = N.residual

    def spy(u, x0, arrs, layout, tol, max_iter, tol_now=None):
        used.append(tol if tol_now is None else float(tol_now))
        return residual(u, x0, arrs, layout, tol, max_iter, tol_now)

    monkeypatch.setattr(N, "residual", spy)
    eq = _far_solve(three_countries, fine_household, coarse_n_a=None)
    monkeypatch.setattr(N, "residual", residual)
    assert max(used) == pytest.approx(1e-3) and used[-1] == 1e-10
    assert sum(t > 1e-10 for t in used) >= 3
    # exact-solve equilibrium (inexact solves off)
    exact = _far_solve(
        three_countries, fine_household, options=SolverOptions(coarse_n_a=None, inexact=0.0)
    )
    np.testing.assert_allclose(eq.prices.w, exact.prices.w, rtol=1e-8)
    assert eq.beta == pytest.approx(exact.beta, rel=1e-9)
    again = evaluate(
        three_countries, fine_household, wages=eq.prices.w, R=1.01, beta=eq.beta, state=eq.state
    )
    assert int(np.max(again.hh_iterations)) <= 2
    np.testing.assert_allclose(again.aggregates["A"], eq.aggregates["A"], atol=1e-9)


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "field,value",
    [
        ("tol", 1e6),
        ("tol", np.nan),
        ("tol", 0.0),
        ("tol", -1e-8),
        ("tol", "1e-8"),
        ("max_iter", 0),
        ("max_iter", 2.5),
        ("max_iter", True),
        ("hh_tol", np.inf),
        ("hh_tol", 0.5),
        ("hh_max_iter", 0),
        ("jac_tol", 0.0),
        ("jac_tol", 2.0),
        ("method", "x"),
        ("method", None),
        ("coarse_n_a", 0),
        ("coarse_n_a", 1),
        ("coarse_n_a", 2),
        ("coarse_n_a", 25.0),
        ("coarse_n_a", True),
        ("predict", "yes"),
        ("direction_cost", 0.0),
        ("direction_cost", np.inf),
        ("coarse_tol", 1.0),
        ("coarse_min", -1.0),
        ("coarse_jac_tol", 0.0),
        ("coarse_max_iter", 0),
        ("inexact", 1.0),
        ("inexact", -1e-3),
        ("inexact_max", 0.0),
        ("inexact_slack", 0.5),
    ],
)
def test_solver_options_reject_bad_values(field, value):
    """Every field is checked; the message names the field, the value and what is allowed."""
    with pytest.raises(ParameterError, match=rf"^{field} = ") as err:
        SolverOptions(**{field: value})
    msg = str(err.value)
    assert repr(value) in msg and "allowed" in msg
    assert any(w in msg for w in ("must be", "use ")), msg


def test_solver_options_defaults_and_replace():
    opts = SolverOptions()
    assert (
        opts.tol,
        opts.max_iter,
        opts.hh_tol,
        opts.hh_max_iter,
        opts.jac_tol,
        opts.method,
        opts.coarse_n_a,
    ) == (1e-10, 30, 1e-10, 3000, 1e-2, "broyden", 30)
    assert (
        opts.predict,
        opts.direction_cost,
        opts.coarse_tol,
        opts.coarse_min,
        opts.coarse_jac_tol,
        opts.inexact,
        opts.inexact_max,
        opts.inexact_slack,
    ) == (True, 100.0, 1e-2, 5e-2, 0.1, 1e-3, 1e-3, 30.0)
    new = opts.replace(tol=1e-8, method="newton", coarse_n_a=None)
    assert (new.tol, new.method, new.coarse_n_a, opts.tol) == (1e-8, "newton", None, 1e-10)
    assert SolverOptions(max_iter=np.int64(5)).max_iter == 5
    assert type(SolverOptions(tol=np.float64(1e-9)).tol) is float
    with pytest.raises(ParameterError, match="tol = 1000000.0"):
        opts.replace(tol=1e6)
    with dataclasses_raises():
        opts.tol = 1e-8  # frozen
    # the household tolerance of inexact solves: max(hh_tol, min(inexact * err, inexact_max))
    assert opts.household_tol(5.0) == 1e-3
    assert opts.household_tol(1e-4) == pytest.approx(1e-7, rel=1e-15)
    assert opts.household_tol(1e-9) == 1e-10 and opts.household_tol(np.nan) == 1e-10
    assert opts.replace(inexact=0.0).household_tol(5.0) == 1e-10
    assert opts.first_household_tol() == 1e-3
    assert opts.replace(inexact=0.0).first_household_tol() == 1e-10


def dataclasses_raises():
    return pytest.raises(dataclasses.FrozenInstanceError)


def test_solve_rejects_bad_options_before_any_solve(three_countries, small_household, monkeypatch):
    import hatrade.solve.equilibrium as E

    def no_solve(*args, **kw):
        raise AssertionError("a solve started")

    monkeypatch.setattr(E, "newton_solve", no_solve)
    monkeypatch.setattr(E, "model_arrays", no_solve)
    with pytest.raises(ParameterError, match=r"tol = 1000000\.0 is not allowed"):
        solve_equilibrium(three_countries, small_household, tol=1e6)
    with pytest.raises(ParameterError, match="max_iter"):
        solve_equilibrium(
            three_countries, small_household, options=SolverOptions(tol=1e-8), max_iter=0
        )
    with pytest.raises(ParameterError, match=r"unknown solver keyword 'tolerance'.*hh_tol"):
        solve_equilibrium(three_countries, small_household, tolerance=1e-8)
    with pytest.raises(ParameterError, match=r"'hh_tl', 'metod'"):
        solve_equilibrium(three_countries, small_household, hh_tl=1e-8, metod="newton")
    with pytest.raises(ParameterError, match="options"):
        solve_equilibrium(three_countries, small_household, options={"tol": 1e-8})
    with pytest.raises(ParameterError, match="hh_tol"):
        evaluate(three_countries, small_household, wages=[1.0, 1.0, 1.0], hh_tol=-1.0)
    with pytest.raises(ParameterError, match="hh_max_iter"):
        evaluate(three_countries, small_household, wages=[1.0, 1.0, 1.0], hh_max_iter=0)


def test_options_object_and_keywords_agree(three_countries, small_household):
    """options=SolverOptions(...) and the same fields as keywords give the same solve."""
    kw = {"solve_for": "beta", "R": 1.01, "wages": [1.2, 0.9, 0.9], "beta_guess": 0.93}
    a = solve_equilibrium(three_countries, small_household, options=SolverOptions(tol=1e-8), **kw)
    b = solve_equilibrium(three_countries, small_household, tol=1e-8, **kw)
    assert a.history == b.history and a.household_solves == b.household_solves
    np.testing.assert_array_equal(a.prices.w, b.prices.w)
    assert a.residual < 1e-8


def test_has_tariffs():
    d = [[1.0, 1.5], [1.5, 1.0]]
    assert not World(countries=("H", "F"), tfp=[1, 1], labor=[1, 1], d=d).has_tariffs
    assert not World(
        countries=("H", "F"), tfp=[1, 1], labor=[1, 1], d=d, tariffs=[[0, 0], [0, 0]]
    ).has_tariffs
    assert World(
        countries=("H", "F"), tfp=[1, 1], labor=[1, 1], d=d, tariffs=[[0, 0.1], [0, 0]]
    ).has_tariffs


# ----------------------------------------------------------------------------- no equilibrium
# Worlds without an equilibrium fail fast with a message that names the input likely at
# fault (issue 16, class 7), not the solver that noticed it.

_NO_EQUILIBRIUM = {
    "beta": ({"beta": 0.01}, {}, "[household] beta = 0.01"),
    "tfp": ({}, {"tfp": [1e-8, 1e-8]}, "[world] tfp"),
    "phi": ({"phi": 100.0}, {}, "[household] phi = 100"),
    "var_perm": ({"var_perm": 1000.0}, {}, "var_perm = 1000"),
}


@pytest.mark.parametrize("case", sorted(_NO_EQUILIBRIUM))
def test_no_equilibrium_message_names_the_input(case):
    hh, world_kw, named = _NO_EQUILIBRIUM[case]
    household = Household(
        **{"n_a": 20, "n_perm": 3, "n_iid": 1, "beta": 0.93, "phi": 0.5, "gamma": 2.0, **hh}
    )
    world = World(
        countries=("H", "F"),
        tfp=world_kw.get("tfp", [1.0, 1.0]),
        labor=[1.0, 1.0],
        d=[[1.0, 1.5], [1.5, 1.0]],
    )
    with pytest.raises(EquilibriumError) as info:
        solve_equilibrium(world, household, max_iter=6, hh_max_iter=300)
    message = str(info.value)
    assert "\n" not in message
    assert named in message.split("Likely cause: ", 1)[1]
    assert "Krylov" not in message and "hatrade." not in message
    others = [v[2] for k, v in _NO_EQUILIBRIUM.items() if k != case]
    assert not any(other in message for other in others)


def test_no_likely_cause_for_the_paper_household(three_countries):
    from hatrade.core.income import income_process
    from hatrade.core.markets import likely_causes

    household = published_household()
    assert likely_causes(three_countries, household, income_process(household), 1.01, 0.93) == []


def test_evaluate_failure_message_names_the_input():
    world = World(
        countries=("H", "F"), tfp=[1.0, 1.0], labor=[1.0, 1.0], d=[[1.0, 1.5], [1.5, 1.0]]
    )
    household = Household(n_a=20, n_perm=3, n_iid=1, beta=0.93, phi=100.0)
    with pytest.raises(EquilibriumError, match=r"Likely cause: \[household\] phi = 100"):
        evaluate(world, household, [1.0, 1.0], R=1.01, hh_max_iter=300)
