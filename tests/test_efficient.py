"""Tests for the efficient allocation (hatrade.analysis.efficient, Proposition 4), its CLI and figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import hatrade
from hatrade import Household, ParameterError, World
from hatrade.analysis.efficient import (
    PlannerError,
    aggregate_elasticities,
    compare,
    decentralized_elasticities,
    efficient_elasticities,
    efficient_report,
    planner_welfare_gain,
    solve_planner,
)
from hatrade.core.income import income_process
from hatrade.io.folders import MANIFEST

CODES = ("AAA", "BBB", "CCC")
D3 = np.array([[1.0, 1.3, 1.5], [1.2, 1.0, 1.4], [1.6, 1.3, 1.0]])


def world3(d=D3, tfp=(1.0, 0.5, 2.0), labor=(1.0, 2.0, 0.5)) -> World:
    return World(countries=CODES, tfp=tfp, labor=labor, d=d)


def hh(**kw) -> Household:
    base = dict(n_a=20, beta=0.93)
    base.update(kw)
    return Household(**base)


def u(c, g):
    return np.log(c) if g == 1 else c ** (1 - g) / (1 - g)


@pytest.fixture(scope="module")
def planner():
    return solve_planner(world3(), hh())


@pytest.fixture(scope="module")
def eq3():
    """Households of the 3-country world at fixed prices (no market clearing needed)."""
    return hatrade.evaluate(world3(), hh(), wages=[1.2, 0.7, 1.1], R=1.0, beta=0.93)


# ----------------------------------------------------------------------------- solution


def test_resource_constraints_and_first_order_conditions(planner):
    w, h = planner.world, planner.household
    inc = income_process(h)
    nbar = inc.dist @ inc.z
    # demand recomputed from the reported allocation, not from the solver's own residual
    demand = np.einsum("i,ij->j", w.labor, planner.pi * planner.c * w.d)
    np.testing.assert_allclose(demand, w.tfp * w.labor * nbar, rtol=1e-10, atol=0)
    assert planner.resource_error < 1e-10
    # FOCs: omega_i u'(c_ij) = chi_j d_ij, chi_j = omega_j u'(c_jj)
    np.testing.assert_allclose(
        planner.weights[:, None] * planner.c**-h.gamma, planner.chi[None, :] * w.d, rtol=1e-12
    )
    np.testing.assert_allclose(
        planner.chi, planner.weights * np.diag(planner.c) ** -h.gamma, rtol=1e-12
    )
    # logit choice by z with n = u(c) - u'(c) c and the home-bias shifter
    n = u(planner.c, h.gamma) - planner.c ** (1 - h.gamma)
    sig = h.sigma_eps * w.tfp ** (1 - h.gamma)
    psi = (
        (h.psi_slope * w.tfp ** (1 - h.gamma))[:, None, None]
        * inc.log_z_perm[None, :, None]
        * np.eye(3)[:, None, :]
    )
    val = (n[:, None, :] + psi) / sig[:, None, None]
    pz = np.exp(val - val.max(-1, keepdims=True))
    pz /= pz.sum(-1, keepdims=True)
    np.testing.assert_allclose(planner.pi_z, pz, rtol=1e-12)
    np.testing.assert_allclose(planner.pi, np.einsum("z,izj->ij", inc.dist, pz), rtol=1e-12)
    # shares
    np.testing.assert_allclose(planner.pi.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(planner.trade_shares.sum(axis=1), 1.0, atol=1e-14)
    assert np.all(planner.trade_shares > 0)
    np.testing.assert_allclose(planner.shadow_wages.mean(), 1.0)  # numeraire without eq


def test_home_bias_makes_richer_households_buy_home(planner):
    # psi_slope > 0: the planner assigns the home variety more often at higher z_perm
    own = np.einsum("izi->iz", planner.pi_z)
    lz = planner.income.log_z_perm
    lo, hi = np.argmin(lz), np.argmax(lz)
    assert np.all(own[:, hi] > own[:, lo])
    flat = solve_planner(world3(), hh(psi_slope=0.0))
    np.testing.assert_allclose(
        flat.pi_z, np.broadcast_to(flat.pi[:, None, :], flat.pi_z.shape), atol=1e-15
    )


def test_symmetric_world_gives_symmetric_allocation():
    d = np.full((3, 3), 1.4)
    np.fill_diagonal(d, 1.0)
    p = solve_planner(world3(d=d, tfp=(1.3,) * 3, labor=(0.7,) * 3), hh())
    np.testing.assert_allclose(p.chi, p.chi[0], rtol=1e-12)
    s = p.trade_shares
    np.testing.assert_allclose(s, s.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(s), s[0, 0], rtol=1e-12)
    off = s[~np.eye(3, dtype=bool)]
    np.testing.assert_allclose(off, off[0], rtol=1e-12)
    assert s[0, 0] > off[0]  # trade costs and home bias


def test_no_trade_costs_logit_shares():
    w = world3(d=np.ones((3, 3)))
    h = hh(psi_slope=0.0)
    p = solve_planner(w, h)
    # equal weights, d = 1: every country consumes the same quantity of a given variety
    np.testing.assert_allclose(p.c, np.broadcast_to(p.c[0], (3, 3)), rtol=1e-12)
    # ... and buys each variety in proportion to the logit shares exp(n_j / sigma_i)
    n = u(p.c[0], h.gamma) - p.c[0] ** (1 - h.gamma)
    for i in range(3):
        logit = np.exp(n / p.sigma[i])
        np.testing.assert_allclose(p.pi[i], logit / logit.sum(), rtol=1e-12)
    # equal TFP: identical sigmas, identical rows
    q = solve_planner(world3(d=np.ones((3, 3)), tfp=(1.0, 1.0, 1.0)), h)
    np.testing.assert_allclose(q.pi, np.broadcast_to(q.pi[0], (3, 3)), rtol=1e-12)


def test_weights_scale_invariance_and_redistribution():
    w = world3()
    a = solve_planner(w, hh(), weights="equal")
    b = solve_planner(w, hh(), weights=[2.0, 2.0, 2.0])
    np.testing.assert_allclose(b.c, a.c, rtol=1e-10)
    np.testing.assert_allclose(b.chi, 2.0 * a.chi, rtol=1e-10)
    assert b.weights_kind == "given"
    # more weight on BBB: BBB consumes more of everything
    c = solve_planner(w, hh(), weights=[1.0, 3.0, 1.0])
    assert np.all(c.c[1] > a.c[1]) and np.all(c.c[[0, 2]] < a.c[[0, 2]])
    np.testing.assert_allclose(c.demand, c.resources, rtol=1e-10)


# ----------------------------------------------------------------------------- Prop. 4


def test_prop4_elasticity_equals_exact_derivatives(planner):
    e = efficient_elasticities(planner)
    assert len(e) == 6 and not e.isna().any().any()
    # by income state the formula is exact
    assert e["max_dev_by_z"].max() < 1e-10
    np.testing.assert_allclose(e["theta_choice_by_z_ad"], e["theta_prop4"], rtol=1e-10)
    # value adds the intensive margin 1 - 1/gamma
    g = planner.household.gamma
    np.testing.assert_allclose(e["theta_value_ad"], e["theta_choice_ad"] + 1 - 1 / g, rtol=1e-10)
    # with psi the country-level choice elasticity differs (mix over z): smaller in size
    assert np.all(np.abs(e["theta_choice_ad"]) < np.abs(e["theta_prop4"]))
    # without psi it is the formula
    e0 = efficient_elasticities(solve_planner(world3(), hh(psi_slope=0.0)))
    np.testing.assert_allclose(e0["theta_choice_ad"], e0["theta_prop4"], rtol=1e-10)
    agg = aggregate_elasticities(e)
    assert list(agg.index) == list(CODES)


def test_log_preferences_elasticity_is_minus_one_over_sigma():
    h = hh(gamma=1.0, sigma_eps=0.25, psi_slope=0.0)
    w = world3()
    p = solve_planner(w, h)
    e = efficient_elasticities(p)
    sig = dict(zip(CODES, p.sigma))
    np.testing.assert_allclose(p.sigma, 0.25)  # A^(1-gamma) = 1
    expect = -1.0 / e["importer"].map(sig)
    np.testing.assert_allclose(e["theta_prop4"], expect, rtol=1e-14)
    np.testing.assert_allclose(e["theta_choice_ad"], expect, rtol=1e-12)
    np.testing.assert_allclose(e["theta_value_ad"], expect, rtol=1e-12)


def test_welfare_formula_equals_exact_derivative(planner):
    g = planner_welfare_gain(planner, change=0.9, exact=True)
    scale = np.abs(g.pairs["dW_dlogd_prop4"]).max()
    assert g.max_abs_formula_error < 1e-10 * scale
    np.testing.assert_allclose(g.pairs["dW_dlogd_ad"], g.pairs["dW_dlogd_prop4"], rtol=1e-10)
    # explicit formula: omega sigma theta pi L / (1 - beta)
    i = [CODES.index(c) for c in g.pairs["importer"]]
    j = [CODES.index(c) for c in g.pairs["exporter"]]
    th = -(planner.c ** (1 - planner.household.gamma)) / planner.sigma[:, None]
    expect = planner.sigma[i] * th[i, j] * planner.pi[i, j] * planner.world.labor[i] / (1 - 0.93)
    np.testing.assert_allclose(g.pairs["dW_dlogd_prop4"], expect, rtol=1e-12)
    assert g.dW_first_order > 0 and g.gain_pct_first_order > 0  # lower costs, higher welfare
    # the exact re-solve agrees with the first-order formula to second order
    small = planner_welfare_gain(planner, change=0.999, exact=True)
    rel = abs(small.dW_exact / small.dW_first_order - 1)
    big = abs(g.dW_exact / g.dW_first_order - 1)
    assert rel < 0.02 * 1 and rel < big / 20
    np.testing.assert_allclose(small.gain_pct_exact, small.gain_pct_first_order, rtol=0.02)
    # unilateral: only one importer's pairs
    one = planner_welfare_gain(planner, importers="BBB")
    assert set(one.pairs["importer"]) == {"BBB"} and len(one.pairs) == 2


# ----------------------------------------------------------------------------- comparison


def test_matched_weights_reproduce_decentralized_spending(eq3):
    p = solve_planner(eq3.world, eq3.household, "matched", eq=eq3)
    assert p.weights_kind == "matched"
    np.testing.assert_allclose(p.spending.sum(axis=1), eq3.spending.sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(np.sum(p.world.labor * p.weights) / p.world.labor.sum(), 1.0)
    assert p.resource_error < 1e-10
    assert p.beta == 0.93
    df = compare(p, eq3)
    assert list(df.columns[:4]) == [
        "importer",
        "exporter",
        "share_efficient",
        "share_decentralized",
    ]
    assert len(df) == 9
    np.testing.assert_allclose(df["share_decentralized"], eq3.trade_shares.ravel())
    np.testing.assert_allclose(df["share_efficient"], p.trade_shares.ravel())
    np.testing.assert_allclose(df.groupby("importer")["share_efficient"].sum(), 1.0)
    off = df["importer"] != df["exporter"]
    assert (df.loc[off, "trades_more"] == (df.loc[off, "log_ratio"] > 0)).all()


def test_decentralized_elasticity_log_preferences_is_exact():
    # Proposition 3: with log utility and no psi the decentralized elasticity is -1/sigma
    h = hh(gamma=1.0, sigma_eps=0.3, psi_slope=0.0, n_a=12)
    w = World(
        countries=("AAA", "BBB"), tfp=[1.0, 1.0], labor=[1.0, 2.0], d=[[1.0, 1.4], [1.3, 1.0]]
    )
    eq = hatrade.evaluate(w, h, wages=[1.0, 0.8], R=1.0, beta=0.93)
    td = decentralized_elasticities(eq)
    assert len(td) == 2
    np.testing.assert_allclose(td["theta_prop1"], -1 / 0.3, rtol=1e-8)


def test_efficient_report(eq3):
    p = solve_planner(eq3.world, eq3.household, "matched", eq=eq3)
    given = pd.DataFrame(
        {
            "importer": ["AAA", "BBB"],
            "exporter": ["BBB", "AAA"],
            "theta": [-3.0, -2.0],
            "theta_extensive": [-3.2, -2.2],
        }
    )
    table, summary = efficient_report(p, eq3, decentralized_theta=given)
    off = table["importer"] != table["exporter"]
    for col in ("theta_efficient_prop4", "theta_efficient_choice", "theta_efficient_value"):
        assert table.loc[off, col].notna().all() and table.loc[~off, col].isna().all()
    row = table[(table["importer"] == "BBB") & (table["exporter"] == "AAA")].iloc[0]
    assert row["theta_decentralized_prop1"] == -2.0
    assert row["theta_decentralized_extensive"] == -2.2
    agg = summary["comparison"]["aggregate_elasticity"]
    assert set(agg["theta_efficient_prop4"]) == set(CODES)
    with pytest.raises(ParameterError, match="theta_prop1"):
        efficient_report(p, eq3, decentralized_theta=given.drop(columns=["theta"]))
    assert summary["comparison"]["gravity"] is None  # no Eaton-Kortum covariates for AAA..CCC
    w = summary["welfare_prop4"]["global"]
    assert w["max_abs_formula_error"] < 1e-10
    json.dumps(summary)  # JSON-ready


@pytest.mark.slow
def test_two_routes_to_decentralized_elasticities_agree(eq3):
    p = solve_planner(eq3.world, eq3.household, "matched", eq=eq3)
    table, summary = efficient_report(p, eq3, decentralized_theta=True)  # world_elasticities
    td = decentralized_elasticities(eq3)  # tangent iteration of solve_fixed_point
    m = table.merge(td, on=["importer", "exporter"])
    assert len(m) == 6
    np.testing.assert_allclose(m["theta_decentralized_prop1"], m["theta_prop1"], atol=1e-8)
    assert m["theta_decentralized_extensive"].notna().all()
    agg = summary["comparison"]["aggregate_elasticity"]
    assert set(agg["theta_decentralized_prop1"]) == set(CODES)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "weights, match",
    [
        ([1.0, 1.0], "3 entries"),
        ([1.0, 0.0, 1.0], "positive"),
        ([1.0, -2.0, 1.0], "BBB"),
        ([1.0, np.nan, 1.0], "finite"),
        ("utilitarian", "equal"),
        ("matched", "needs a decentralized equilibrium"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(ParameterError, match=match):
        solve_planner(world3(), hh(), weights=weights)


def test_equilibrium_of_another_world(eq3):
    other = World(countries=("X", "Y", "Z"), tfp=[1, 1, 1], labor=[1, 1, 1], d=np.ones((3, 3)))
    with pytest.raises(ParameterError, match="countries"):
        solve_planner(other, hh(), "matched", eq=eq3)
    with pytest.raises(ParameterError, match="Equilibrium"):
        solve_planner(world3(), hh(), "matched", eq="not an equilibrium")


def test_no_solution_is_a_clear_error():
    # weights so extreme that consumption overflows: no interior solution in floating point
    with pytest.raises(PlannerError, match="planner"):
        solve_planner(world3(), hh(), weights=[1e300, 1e-300, 1.0])
    with pytest.raises(PlannerError, match="did not converge"):
        solve_planner(world3(), hh(), max_iter=1)


def test_welfare_bad_input(planner):
    with pytest.raises(ParameterError, match="discount factor"):
        planner_welfare_gain(solve_planner(world3(), Household(n_a=20)))
    with pytest.raises(ParameterError, match="unknown country code 'USA'"):
        planner_welfare_gain(planner, importers="USA")
    with pytest.raises(ParameterError, match="positive"):
        planner_welfare_gain(planner, change=-0.9)


# ----------------------------------------------------------------------------- figure, CLI


def test_figure(eq3):
    from hatrade.plots.efficient import efficient_trade_figure

    p = solve_planner(eq3.world, eq3.household, "matched", eq=eq3)
    fig = efficient_trade_figure(compare(p, eq3))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="share_efficient"):
        efficient_trade_figure(pd.DataFrame({"importer": ["A"], "exporter": ["A"]}))


@pytest.fixture(scope="module")
def cli_app():
    from hatrade.cli import app as main_app
    from hatrade.cli import efficient

    if "efficient" not in {c.name for c in main_app.registered_commands}:
        app = typer.Typer()
        app.callback()(lambda: None)
        efficient.register(app)
        return app
    return main_app


@pytest.mark.parametrize("real_solve", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_cli_writes_files(tmp_path, cli_app, monkeypatch, real_solve):
    if not real_solve:
        # the equilibrium solve is tested elsewhere; households at fixed prices are enough
        # to exercise the command (and much cheaper to compile)
        def fake_solve(world, household, **kw):
            return hatrade.evaluate(
                world, household, wages=np.ones(world.M), R=1.0, beta=household.beta
            )

        monkeypatch.setattr(hatrade, "solve_equilibrium", fake_solve)
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        "[household]\nn_a = 20\nbeta = 0.93\ngamma = 2.0\nsigma_eps = 0.3\n"
        '[world]\ncountries = ["AAA", "BBB"]\ntfp = [1.0, 0.8]\n'
        "trade_costs = [[1.0, 1.3], [1.2, 1.0]]\n"
    )
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(
        cli_app,
        [
            "efficient",
            "--config",
            str(cfg),
            "--weights",
            "matched",
            "--out",
            str(out),
            "--no-elasticities",
        ],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["efficient_trade.csv", "summary.json", "efficient_trade.png", MANIFEST]
    )
    df = pd.read_csv(out / "efficient_trade.csv")
    assert list(df.columns[:4]) == [
        "importer",
        "exporter",
        "share_efficient",
        "share_decentralized",
    ]
    assert len(df) == 4
    np.testing.assert_allclose(df.groupby("importer")["share_efficient"].sum(), 1.0)
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "efficient" and s["weights_kind"] == "matched"
    assert s["planner"]["max_relative_resource_error"] < 1e-10
    # a rerun replaces the folder; a folder with other files is refused
    r2 = runner.invoke(
        cli_app,
        [
            "efficient",
            "--config",
            str(cfg),
            "--weights",
            "equal",
            "--out",
            str(out),
            "--no-elasticities",
        ],
    )
    assert r2.exit_code == 0, r2.output
    assert json.loads((out / "summary.json").read_text())["weights_kind"] == "equal"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    r3 = runner.invoke(cli_app, ["efficient", "--config", str(cfg), "--out", str(other)])
    assert r3.exit_code == 2 and "other files" in r3.stderr
    assert (other / "keep.txt").exists()


def test_cli_bad_input(tmp_path, cli_app):
    runner = CliRunner()
    r = runner.invoke(
        cli_app, ["efficient", "--calibration", "baseline", "--config", str(tmp_path / "x.toml")]
    )
    assert r.exit_code == 2 and "either --calibration or --config" in r.stderr
    r = runner.invoke(cli_app, ["efficient", "--weights", "nonsense"])
    assert r.exit_code == 2


# ----------------------------------------------------------------------------- 19 countries


@pytest.mark.slow
def test_baseline_19_countries():
    from hatrade.analysis.efficient import gravity_comparison
    from hatrade.data import load_calibration

    cal = load_calibration("baseline")
    eq = hatrade.evaluate(
        hatrade.ek_world("baseline"),
        hatrade.published_household("baseline"),
        cal.wages.values,
        R=1.01,
        beta=cal.beta,
    )
    p = solve_planner(eq.world, eq.household, "matched", eq=eq)
    assert p.resource_error < 1e-10
    np.testing.assert_allclose(p.spending.sum(axis=1), eq.spending.sum(axis=1), rtol=1e-9)
    e = efficient_elasticities(p)
    assert e["max_dev_by_z"].max() < 1e-9
    g = planner_welfare_gain(p, importers="USA", exact=True)
    assert g.max_abs_formula_error < 1e-10 * np.abs(g.pairs["dW_dlogd_prop4"]).max()
    assert g.by_country.loc["USA", "gain_pct_exact"] > 0
    grav = gravity_comparison(p, eq)
    assert np.all(np.isfinite(grav.to_numpy()))
    # the decentralized regression on published prices reproduces Table 1's moments
    np.testing.assert_allclose(grav.loc["dist_[0,375)", "decentralized"], -3.10, atol=0.01)
    # the efficient allocation trades more: shallower distance gradient, higher import shares
    assert grav.loc["dist_[0,375)", "efficient"] > grav.loc["dist_[0,375)", "decentralized"]
    assert np.mean(p.import_share > eq.import_share) > 0.8
