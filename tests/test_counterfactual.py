"""Counterfactual engine: scenarios, validation before any solve, new equilibria, CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import hatrade
from hatrade import ParameterError
from hatrade.analysis.counterfactual import (
    Counterfactual,
    Scenario,
    apply_scenario,
    parse_pairs,
    run_counterfactual,
    selected_pairs,
)
from smallworld import D3, small_household, small_toml, small_world


@pytest.fixture(scope="module")
def base():
    return hatrade.solve_equilibrium(small_world(), small_household(), solve_for="R", R_guess=1.02)


# ----------------------------------------------------------------------------- scenarios


def test_importer_cut_changes_only_that_row():
    w = small_world()
    new = apply_scenario(w, Scenario(importer="F", trade_cost_change=-0.1))
    expect = np.array(D3)
    expect[1, [0, 2]] *= 0.9
    np.testing.assert_allclose(new.d, expect, rtol=0, atol=1e-15)
    assert np.all(np.diag(new.d) == 1.0)
    assert new.meta["scenario"]["importer"] == "F"


def test_selection_exporter_pairs_symmetric_global():
    w = small_world()
    m = selected_pairs(w, Scenario(exporter="G", trade_cost_change=0.1))
    assert m[:, 2].sum() == 2 and m.sum() == 2 and not m[2, 2]
    m = selected_pairs(w, Scenario(pairs=[("H", "F")], trade_cost_change=0.1))
    assert m.sum() == 1 and m[0, 1]
    m = selected_pairs(w, Scenario(pairs=[("H", "F")], symmetric=True, trade_cost_change=0.1))
    assert m.sum() == 2 and m[0, 1] and m[1, 0]
    m = selected_pairs(w, Scenario(all_pairs=True, trade_cost_change=0.1))
    assert m.sum() == 6 and not np.any(np.diag(m))
    assert parse_pairs("H,F;F,G") == (("H", "F"), ("F", "G"))


def test_change_below_one_applied_with_one_warning_naming_the_pair(caplog):
    """Issue 16 class 8: the paper's convention (no new floor) is the default, with one
    warning naming the pairs; allow_d_below_one=False forbids it."""
    w = small_world(d=[[1.0, 1.05, 1.8], [1.6, 1.0, 1.7], [1.8, 1.7, 1.0]])
    with pytest.raises(ParameterError, match=r"H,F.*allow_d_below_one = false"):
        apply_scenario(w, Scenario(importer="H", trade_cost_change=-0.1, allow_d_below_one=False))
    with caplog.at_level(logging.INFO, logger="hatrade"):
        new = apply_scenario(w, Scenario(importer="H", trade_cost_change=-0.1))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "H,F (d = 0.9450)" in warnings[0].getMessage()
    assert "below 1" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hatrade"):
        apply_scenario(w, Scenario(importer="H", trade_cost_change=-0.1), warn=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(ParameterError, match="allow_d_below_one"):
        Scenario(importer="H", trade_cost_change=-0.1, allow_d_below_one="yes")
    assert new.d[0, 1] == pytest.approx(0.945)
    assert new.meta["d_below_one"] == [["H", "F", pytest.approx(0.945)]]
    assert new.allow_d_below_one and not w.allow_d_below_one
    # the flag is a validated World field: a copy keeps the costs, a world without it rejects them
    assert new.replace(labor=[2.0, 1.0, 1.0]).d[0, 1] == pytest.approx(0.945)
    with pytest.raises(ParameterError, match=r"trade_costs\[H,F\].*< 1"):
        new.replace(allow_d_below_one=False)
    with pytest.raises(ParameterError, match="positive"):
        new.replace(d=np.where(np.eye(3) > 0, 1.0, -0.5))


@pytest.mark.parametrize(
    "scenario, pattern",
    [
        (dict(importer="XXX", trade_cost_change=-0.1), "unknown country code 'XXX'"),
        (dict(pairs=[("H", "ZZZ")], trade_cost_change=-0.1), "unknown country code 'ZZZ'"),
        (dict(tfp_change={"F": -1.0}), r"tfp_change\[F\].*positive"),
        (dict(tfp_change={"Q": 0.1}), "unknown country code 'Q'"),
        (dict(labor_change={"G": -1.5}), r"labor_change\[G\]"),
        (dict(importer="H", tariff_change=-0.2), "tariffs negative for importer,exporter H,F"),
        (dict(importer="H", trade_cost_change=-1.0), "must be > -1"),
    ],
)
def test_bad_changes_rejected(scenario, pattern):
    with pytest.raises(ParameterError, match=pattern):
        apply_scenario(small_world(), Scenario(**scenario))


def test_scenario_needs_pairs_and_known_keys():
    with pytest.raises(ParameterError, match="needs pairs"):
        Scenario(trade_cost_change=-0.1)
    with pytest.raises(ParameterError, match=r"unknown key\(s\) \['imported'\]"):
        Scenario.from_dict({"imported": "H"})
    with pytest.raises(ParameterError, match="two different countries"):
        Scenario(pairs=[("H", "H")], trade_cost_change=0.1)
    with pytest.raises(ParameterError, match="financial"):
        Scenario(financial="closed")
    sc = Scenario.from_dict({"name": "x", "pairs": [["H", "F"]], "trade_cost_change": 0.2})
    assert Scenario.from_dict(sc.to_dict()) == sc


def test_tfp_labor_tariff_applied():
    new = apply_scenario(
        small_world(),
        Scenario(tfp_change={"F": 0.1}, labor_change={"G": -0.5}, importer="H", tariff_change=0.05),
    )
    np.testing.assert_allclose(new.tfp, [1.0, 0.99, 1.1])
    np.testing.assert_allclose(new.labor, [1.0, 0.7, 0.25])
    np.testing.assert_allclose(new.tariffs, [[0, 0.05, 0.05], [0, 0, 0], [0, 0, 0]])


# ----------------------------------------------------------------------------- solves


def test_zero_change_returns_the_baseline(base):
    cf = run_counterfactual(base, Scenario())
    assert cf.new.iterations == 0
    np.testing.assert_allclose(cf.new.prices.w, base.prices.w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf.new.prices.R, base.prices.R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cf.new.policies.V, base.policies.V, rtol=0, atol=1e-9)
    assert np.all(np.abs(cf.R_over_w_change_percent()) < 1e-9)


def test_unilateral_cut_equilibrium(base):
    cf = run_counterfactual(base, Scenario(importer="H", trade_cost_change=-0.1))
    new = cf.new
    assert new.converged and new.residual < 1e-10
    assert new.beta == base.beta
    assert np.mean(new.prices.w) == pytest.approx(1.0, abs=1e-12)
    # markets clear in the new equilibrium
    Mij, Y = new.spending, new.aggregates["Y"]
    np.testing.assert_allclose(Mij.sum(axis=0), Y, rtol=1e-9)
    assert abs(new.aggregates["A"].sum()) / Y.sum() < 1e-9
    # H buys more abroad; the change table is labeled and consistent
    tab = cf.changes()
    assert list(tab.index) == ["H", "F", "G"]
    assert tab.loc["H", "home_share_new"] < tab.loc["H", "home_share_old"]
    np.testing.assert_allclose(tab["wage_change_percent"], 100 * (new.prices.w / base.prices.w - 1))
    rw = (new.prices.R / new.prices.w) / (base.prices.R / base.prices.w)
    np.testing.assert_allclose(tab["R_over_w_change_percent"], 100 * (rw - 1))
    np.testing.assert_allclose(tab["net_foreign_assets_new"], new.aggregates["A"])
    s = cf.summary()
    assert s["R"]["change_percent"] == pytest.approx(100 * (new.R / base.R - 1))
    assert set(s["wages"]) == {"H", "F", "G"}
    json.dumps(s)  # serializable
    ts = cf.trade_share_changes()
    assert len(ts) == 9 and np.allclose(ts.groupby("importer")["share_new"].sum(), 1.0)


def test_autarky_counterfactual(base):
    # financial autarky: every country's bond market clears on its own
    cf = run_counterfactual(base, Scenario(financial="autarky"))
    A, Y = cf.new.aggregates["A"], cf.new.aggregates["Y"]
    assert np.all(np.abs(A / Y) < 1e-9)
    assert cf.new.world.financial == "autarky" and len(set(cf.new.prices.R)) == 3


def test_tariff_counterfactual_rebates_revenue(base):
    cf = run_counterfactual(base, Scenario(importer="H", tariff_change=0.1))
    G, L, T = cf.new.aggregates["G"], cf.new.world.labor, cf.new.prices.T
    assert G[0] > 0
    np.testing.assert_allclose(T * L, G, rtol=1e-8, atol=1e-12)


def test_tfp_counterfactual(base):
    # higher TFP in F: F's goods get cheaper relative to its wage
    cf = run_counterfactual(base, Scenario(tfp_change={"F": 0.05}))
    assert cf.new.residual < 1e-10
    assert cf.new.p[0, 1] / cf.new.prices.w[1] < base.p[0, 1] / base.prices.w[1]


def test_counterfactual_from_world_object(base):
    w2 = base.world.replace(d=np.array(D3) * np.where(np.eye(3) > 0, 1.0, 1.05))
    cf = run_counterfactual(base, w2)
    assert isinstance(cf, Counterfactual)
    assert np.all(np.diag(cf.new.trade_shares) > np.diag(base.trade_shares))


# ----------------------------------------------------------------------------- CLI

SMALL_TOML = small_toml()


def _app():
    import typer

    from hatrade.cli.counterfactual import register

    app = typer.Typer()

    @app.callback()
    def main():  # pragma: no cover - typer needs a callback for subcommands
        pass

    register(app)
    return app


def test_cli_counterfactual_writes_outputs(tmp_path):
    """A CLI counterfactual whose cut makes d(H,F) = 0.945 (as the paper's US cut makes
    d(USA,CAN) = 0.96): it runs, with one warning naming the pair (issue 16 class 8); every
    file it writes has ordinary permissions (class 9)."""
    import os

    import pandas as pd
    from typer.testing import CliRunner

    from hatrade.cli import app

    cfg = tmp_path / "small.toml"
    cfg.write_text(small_toml(d=[[1.0, 1.05, 1.8]] + D3[1:]))
    out = tmp_path / "cf"
    old_umask = os.umask(0o022)
    try:
        res = CliRunner().invoke(
            app,
            [
                "counterfactual",
                "--config",
                str(cfg),
                "--importer",
                "H",
                "--trade-cost-change",
                "-0.10",
                "--allow-d-below-one",  # deprecated, accepted, no effect
                "--out",
                str(out),
            ],
        )
    finally:
        os.umask(old_umask)
    assert res.exit_code == 0, res.output
    err = " ".join(res.stderr.split())  # the log handler wraps long messages
    assert err.count("below 1") == 1 and "H,F (d = 0.9450)" in err
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p.name
    assert out.stat().st_mode & 0o777 == 0o755
    assert "…" not in res.stdout  # no truncated numbers in the tables
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "counterfactual" and set(s["by_country"]) == {"H"}
    h = s["by_country"]["H"]
    for key in ("mean_gain_percent", "acr_percent", "share_losers", "quintile_gain_percent"):
        assert key in h
    assert set(h["quintile_gain_percent"]) == {"Q1", "Q2", "Q3", "Q4", "Q5"}
    assert set(s["R_over_w_change_percent"]) == {"H", "F", "G"}
    wf = pd.read_csv(out / "welfare.csv")
    assert list(wf.columns[:9]) == [
        "country",
        "a_index",
        "z_index",
        "assets",
        "z",
        "mass",
        "lambda",
        "gain_percent",
        "cev_percent",
    ]
    assert len(wf) == 20 * 2 and wf["a_index"].min() == 1 and wf["z_index"].max() == 2
    assert wf["ev_defined"].all() and not wf["ev_first_root_above_one"].any()
    assert wf["mass"].sum() == pytest.approx(1.0)
    # every state reports either an evaluated residual or an error estimate
    assert wf["ev_residual"].isna().all() and not wf["ev_residual_verified"].any()
    est = wf["ev_gain_error_estimate_points"]
    assert est.notna().all() and (est >= 0).all() and est.max() < 0.1
    np.testing.assert_allclose(wf["gain_percent"], 100 * (wf["lambda"] - 1))
    assert h["mean_gain_percent"] == pytest.approx((wf["mass"] * wf["gain_percent"]).sum())
    for f in ("gains_by_quintile_H.png", "gains_heatmap_H.png", "changes.csv", "trade.csv"):
        assert (out / f).stat().st_size > 0


def test_cli_rejects_bad_input_before_solving(tmp_path):
    from typer.testing import CliRunner

    cfg = tmp_path / "small.toml"
    cfg.write_text(small_toml(d=[[1.0, 1.05, 1.8]] + D3[1:]))
    runner = CliRunner()
    res = runner.invoke(
        _app(),
        [
            "counterfactual",
            "--config",
            str(cfg),
            "--importer",
            "H",
            "-d",
            "-0.1",
            "--forbid-d-below-one",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert res.exit_code == 2 and "H,F" in res.output and "below 1" in res.output
    res = runner.invoke(
        _app(),
        [
            "counterfactual",
            "--config",
            str(cfg),
            "--importer",
            "USA",
            "-d",
            "-0.1",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 2 and "unknown country code 'USA'" in res.output
    res = runner.invoke(
        _app(),
        ["counterfactual", "--config", str(cfg), "--tfp", "F=-2", "--out", str(tmp_path / "c")],
    )
    assert res.exit_code == 2 and "tfp_change[F]" in res.output
    assert not any((tmp_path / n).exists() for n in "abc")


def _no_solve(monkeypatch):
    """Make reaching the solve of ``hatrade counterfactual`` an error."""
    import hatrade.cli.counterfactual as cli_cf

    def no_solve(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("solved despite invalid input")

    monkeypatch.setattr(cli_cf, "_solve", no_solve)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, "cannot read its summary.json"),
        ("{not json", "cannot read its summary.json"),
        ("[1, 2]", "not a counterfactual summary"),
        ('{"kind": "solve"}', "not a counterfactual summary"),
        ('{"kind": "counterfactual", "by_country": [1]}', "'by_country' must be an object"),
        ('{"kind": "counterfactual", "by_country": {"H": 3}}', "by_country.H must be an object"),
        (
            '{"kind": "counterfactual", "by_country": {"H": {"mean_gain_percent": "x"}}}',
            "by_country.H.mean_gain_percent must be a number",
        ),
        (
            '{"kind": "counterfactual", "by_country": {"H": {"mean_gain_percent": 1, '
            '"acr_percent": 1, "quintile_gain_percent": {"Q1": 1}}}}',
            "quintile_gain_percent lacks a number for Q2",
        ),
    ],
)
def test_cli_malformed_compare_fails_before_solving(tmp_path, monkeypatch, content, pattern):
    """Class 5: a malformed --compare folder failed with a traceback after the whole solve."""
    from typer.testing import CliRunner

    from hatrade.cli import app

    _no_solve(monkeypatch)
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_TOML)
    compare = tmp_path / "other"
    compare.mkdir()
    if content is not None:
        (compare / "summary.json").write_text(content)
    args = ["counterfactual", "--config", str(cfg), "--importer", "H", "-d", "0.1"]
    res = CliRunner().invoke(app, [*args, "--compare", str(compare), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--compare" in lines[0] and pattern in lines[0], lines
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--countries", ","], "--countries ','"),
        (["--countries", ""], "--countries ''"),
        (["--countries", "H,ZZZ"], "unknown country code 'ZZZ'"),
        (["--name", "../x"], "--name '../x'"),
        (["--name", ".hidden"], "--name '.hidden'"),
        (["--importer", "H/../../x"], "unknown country code"),
        (["--n-nodes", "0"], "--n-nodes"),
        (["-d", "nan"], "trade_cost_change"),
        (["-d", "-1"], "trade_cost_change"),
        (["--tfp", "H"], "--tfp 'H'"),
        (["--financial", "closed"], "financial"),
    ],
)
def test_cli_bad_options_fail_before_solving(tmp_path, monkeypatch, extra, pattern):
    """Class 4/5: options checked before any solve; `--countries ","` gave an empty result
    with exit 0."""
    from typer.testing import CliRunner

    from hatrade.cli import app

    _no_solve(monkeypatch)
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_TOML)
    args = ["counterfactual", "--config", str(cfg), "--importer", "H", "-d", "0.1", *extra]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and pattern in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.toml"]


def test_paper_headline_experiment_is_accepted(tmp_path, monkeypatch):
    """Class 8: 'hatrade counterfactual --importer USA --trade-cost-change -0.10' stopped
    because d(USA,CAN) falls below 1; it passes every check now, with one warning naming
    the pair (the solve itself is replaced here), and --forbid-d-below-one refuses it."""
    from typer.testing import CliRunner

    import hatrade.cli.counterfactual as cli_cf
    from hatrade.cli import app

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(cli_cf, "_solve", reached)
    args = ["counterfactual", "--importer", "USA", "--trade-cost-change", "-0.10"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "cf")])
    assert isinstance(res.exception, Reached), res.output
    err = " ".join(res.stderr.split())
    assert err.count("below 1") == 1 and "USA,CAN (d = 0.9588)" in err
    res = CliRunner().invoke(app, [*args, "--forbid-d-below-one", "--out", str(tmp_path / "cf")])
    assert res.exit_code == 2 and "USA,CAN" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
