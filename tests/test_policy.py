"""Trade policy with redistribution (issue 18): instruments, criteria, exact gradients,
the optimal tariff against the Armington closed form, Nash tariffs, bad input.

Tiny worlds (2 countries, 6 income states, n_a = 20) shared at module scope.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from hatrade.analysis.counterfactual import Scenario, apply_scenario, run_counterfactual
from hatrade.core.instruments import rebate_weights
from hatrade.core.params import Household, ParameterError, World
from hatrade.policy import optimal_policy, parse_criterion
from hatrade.policy.criteria import evaluate_criteria
from hatrade.policy.gradient import criterion_gradient
from hatrade.policy.nash import nash_tariffs
from hatrade.policy.optimal import (
    PolicyOptions,
    make_objective,
    policy_space,
    solve_policy,
    world_at,
)
from hatrade.solve.equilibrium import solve_equilibrium

SIGMA = 0.2369  # the log model's sigma_eps: trade elasticity 1/sigma


def _hh(**kw):
    return Household(n_a=20, n_perm=3, n_iid=2, **kw)


@pytest.fixture(scope="module")
def crra():
    """Baseline preferences, financial globalization, no tariffs."""
    w = World(
        countries=("AAA", "BBB"), tfp=[1.0, 0.8], labor=[1.0, 0.6], d=[[1.0, 1.4], [1.3, 1.0]]
    )
    return solve_equilibrium(w, _hh(beta=0.93), solve_for="R")


def _log_baseline(labor):
    w = World(
        countries=("HOM", "FOR"),
        tfp=[1.0, 1.0],
        labor=labor,
        d=[[1.0, 1.5], [1.5, 1.0]],
        financial="autarky",
    )
    hh = _hh(gamma=1.0, sigma_eps=SIGMA, psi_slope=0.0, beta=0.93)
    return solve_equilibrium(w, hh, solve_for="R")


# ----------------------------------------------------------------------------- instruments


@pytest.mark.parametrize("rule", ["lump-sum", "labor-income", "group:bottom_20", "group:top_20"])
def test_rebate_weights_average_one(crra, rule):
    r = rebate_weights(rule, crra.income.z, crra.income.dist)
    assert abs(float(r @ crra.income.dist) - 1.0) < 1e-14
    assert np.all(r >= 0)


@pytest.mark.parametrize("rebate", ["labor-income", "group:bottom_20"])
def test_zero_tariff_any_rebate_is_the_baseline(crra, rebate):
    cf = run_counterfactual(crra, Scenario(name="r", rebate=rebate))
    assert cf.new.world.rebate == rebate
    np.testing.assert_allclose(cf.new.prices.w, crra.prices.w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf.new.prices.R, crra.prices.R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf.new.lam, crra.lam, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def instrumented(crra):
    sc = Scenario(
        name="x", importer="AAA", tariff=0.15, rebate="group:bottom_20", labor_tax={"AAA": 0.2}
    )
    return run_counterfactual(crra, sc).new


def test_revenue_rebated_equals_collected(instrumented):
    eq = instrumented
    agg, L = eq.aggregates, eq.world.labor
    r = rebate_weights(eq.world.rebate, eq.income.z, eq.income.dist)
    mass_z = eq.lam.sum(axis=1)  # (M, Nz)
    rebated = L * eq.prices.T * (mass_z @ r)
    assert np.all(np.abs(rebated - agg["G"]) <= 1e-10 * agg["Y"])
    assert agg["G"][0] > 0
    # labor tax: collected tau w N, rebated tau w L (per household)
    tau, w = eq.world.labor_tax, eq.prices.w
    assert np.all(np.abs(tau * w * agg["N"] - tau * w * L) <= 1e-10 * agg["Y"])
    # the households' budgets add up: spending = wN + (R-1)A + G (stationary)
    spend = agg["M"].sum(axis=1)
    rhs = agg["Y"] + (eq.prices.R - 1.0) * agg["A"] + agg["G"]
    assert np.max(np.abs(spend - rhs) / agg["Y"]) < 1e-9


# ----------------------------------------------------------------------------- gradients


def test_criterion_gradient_matches_finite_differences(crra):
    """Exact gradient (implicit function theorem) vs central differences of the criterion
    through full re-solves; tariff and labor tax, labor-income rebate."""
    world = crra.world.replace(rebate="labor-income")
    sp = policy_space(world, "AAA", "tariff+transfer")
    obj = make_objective(crra, "AAA", "quintile:Q1")
    th = np.array([0.1, 0.05])
    eq = solve_policy(crra, world_at(world, sp, th), crra)
    g = criterion_gradient(eq, sp, obj, th, method="block")
    assert g.value == pytest.approx(evaluate_criteria(crra, eq, "AAA")["ce"]["quintile:Q1"])
    # the matrix-free route (GMRES on the tangent system, a few world directions) agrees
    gk = criterion_gradient(eq, sp, obj, th, method="krylov")
    assert gk.value == g.value
    np.testing.assert_allclose(gk.grad, g.grad, rtol=1e-8, atol=1e-9)
    assert gk.directions <= 2 * 5
    h = 1e-3  # truncation ~1e-6, solver noise ~1e-10/h
    for k in range(2):
        e = np.eye(2)[k] * h
        v = [
            evaluate_criteria(crra, solve_policy(crra, world_at(world, sp, th + s * e), eq), "AAA")[
                "ce"
            ]["quintile:Q1"]
            for s in (1, -1)
        ]
        fd = (v[0] - v[1]) / (2 * h)
        assert abs(fd - g.grad[k]) <= 1e-4 * max(1.0, abs(fd)), (k, fd, g.grad[k])


def test_krylov_gradient_warm_start_and_jacobian(crra):
    """The Krylov route warm-started from a nearby point's gradient (its tangents, its
    secant-updated Jacobian as the solve's start) agrees with the full block there."""
    sp = policy_space(crra.world, "AAA", "tariff")
    obj = make_objective(crra, "AAA", "utilitarian")
    th = np.array([0.1])
    eq = solve_policy(crra, world_at(crra.world, sp, th), crra)
    g = criterion_gradient(eq, sp, obj, th)  # auto, no warm start: the block
    assert g.directions == 5
    th2 = th + 0.02
    eq2 = solve_policy(crra, world_at(crra.world, sp, th2), eq, jacobian=g.jacobian)
    g2 = criterion_gradient(eq2, sp, obj, th2, tangents=g.tangents)  # auto: Krylov
    assert g2.directions < 5
    gb = criterion_gradient(eq2, sp, obj, th2, method="block")
    np.testing.assert_allclose(g2.grad, gb.grad, rtol=1e-8, atol=1e-9)
    assert g2.value == pytest.approx(gb.value, abs=1e-12)
    # its history: one entry per world direction, the last residual below the tolerance
    # and the last derivative the one returned; the block route keeps none
    (hist,) = g2.krylov_history
    assert len(hist) == g2.directions
    assert hist[-1][0] <= 1e-11 and hist[-1][1] == g2.grad[0]
    assert gb.krylov_history == []


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.slow
def test_optimal_tariff_is_the_armington_formula():
    """Log utility, psi = 0, financial autarky: trade is exactly Armington (docs/policy.md
    4), and the optimal tariff for real income is 1/(theta s_FF) at the optimum."""
    base = _log_baseline([1.0, 2.0])
    r = optimal_policy(
        base, "HOM", criterion="real_income", options=PolicyOptions(gtol=1e-9, max_solves=20)
    )
    s_FF = r.eq.trade_shares[1, 1]
    assert r.theta[0] == pytest.approx(SIGMA / s_FF, abs=1e-7)
    assert r.grad_norm < 1e-8 and not r.on_bound


@pytest.mark.slow
def test_symmetric_nash_tariff():
    """Two symmetric countries (docs/policy.md 4): t = (1 + t s)/(theta s (1 + t)) with the
    own-trade share s(t) = 1/(1 + (d (1+t))^(-theta)) (the best response to a foreign tariff
    t_F is (1 + t_F s_FF)/(theta s_FF (1 + t_F)); 1/(theta s_FF) only when t_F = 0)."""
    base = _log_baseline([1.0, 1.0])
    theta, d = 1.0 / SIGMA, 1.5

    def s(t):
        return 1.0 / (1.0 + (d * (1.0 + t)) ** -theta)

    t_star = brentq(lambda t: t - (1 + t * s(t)) / (theta * s(t) * (1 + t)), 0.0, 1.0, xtol=1e-14)
    res = nash_tariffs(
        base, criterion="real_income", start=0.2, tol=1e-8, options=PolicyOptions(gtol=1e-9)
    )
    for c in ("HOM", "FOR"):
        assert res.tariffs[c] == pytest.approx(t_star, abs=1e-6)
    assert res.criterion["HOM"] < 0  # a tariff war leaves both worse off
    assert math.isfinite(res.solves)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(importer="AAA", tariff=-0.1), "tariff"),
        (dict(importer="AAA", tariff=float("nan")), "tariff"),
        (dict(rebate="everyone"), "rebate"),
        (dict(labor_tax={"AAA": 1.0}), "labor_tax[AAA]"),
        (dict(labor_tax={"AAA": float("inf")}), "labor_tax[AAA]"),
        (dict(labor_tax={"AAA": -0.1}), "labor_tax[AAA]"),
        (dict(tariff=0.1), "pairs"),
    ],
)
def test_bad_scenarios_are_named(kw, field):
    with pytest.raises(ParameterError, match=field.replace("[", r"\[")):
        Scenario(name="bad", **kw)


def test_bad_policy_inputs_fail_before_solving(crra):
    with pytest.raises(ParameterError, match="unknown country"):
        apply_scenario(crra.world, Scenario(name="x", labor_tax={"ZZZ": 0.1}))
    with pytest.raises(ParameterError, match="criterion"):
        parse_criterion("richest")
    with pytest.raises(ParameterError, match="quintile:Q1"):
        parse_criterion("quintile:Q6")
    with pytest.raises(ParameterError, match="unknown country"):
        optimal_policy(crra, "ZZZ")
    with pytest.raises(ParameterError, match="instrument"):
        optimal_policy(crra, "AAA", instrument="quota")
    with pytest.raises(ParameterError, match="rebate"):
        optimal_policy(crra, "AAA", rebate="group:nobody")
    with pytest.raises(ParameterError, match="tariff_bounds"):
        PolicyOptions(tariff_bounds=(-0.1, 1.0))
    with pytest.raises(ParameterError, match="x0"):
        optimal_policy(crra, "AAA", x0=[2.0])


@pytest.mark.parametrize(
    "args, piece",
    [
        (["counterfactual", "--importer", "USA", "--rebate", "everyone"], "rebate"),
        (["counterfactual", "--importer", "USA", "--tariff", "-0.1"], "tariff"),
        (["counterfactual", "--labor-tax", "USA=1.5"], "labor_tax[USA]"),
        (["counterfactual", "--labor-tax", "XXX=0.1"], "XXX"),
        (["policy", "optimal", "--country", "USA", "--criterion", "richest"], "--criterion"),
        (["policy", "optimal", "--country", "XXX"], "XXX"),
        (["policy", "optimal", "--country", "USA", "--instrument", "quota"], "instrument"),
        (["policy", "optimal", "--country", "USA", "--rebate", "group:x"], "--rebate"),
        (["policy", "nash", "--countries", "USA,XXX"], "XXX"),
    ],
)
def test_cli_bad_input_exit_code_2(tmp_path, args, piece):
    from typer.testing import CliRunner

    from hatrade.cli import app

    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert piece in res.output
    assert not (tmp_path / "o").exists()


def test_batch_entries_take_instruments_and_reject_bad_ones(tmp_path):
    from hatrade.io.batch import BatchError, load_batch
    from smallworld import small_toml

    (tmp_path / "world.toml").write_text(small_toml())
    good = 'config = "world.toml"\n[[runs]]\nname = "t"\nimporter = "F"\ntariff = 0.1\n'
    good += 'rebate = "labor-income"\nlabor_tax = {F = 0.1}\n'
    (tmp_path / "b.toml").write_text(good)
    run = load_batch(tmp_path / "b.toml").runs[0]
    assert run.scenario.tariff == 0.1 and run.scenario.labor_tax == {"F": 0.1}
    (tmp_path / "c.toml").write_text(good.replace("F = 0.1}", "F = 1.2}"))
    with pytest.raises((BatchError, ParameterError), match=r"labor_tax\[F\]"):
        load_batch(tmp_path / "c.toml")
