"""Tests for hatrade.analysis.cross_section (cross-section, MPCs, micro table, simulation), the
elasticity figures and the ``elasticities`` / ``households`` commands."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import hatrade as ht
from hatrade.analysis.cross_section import (
    INCOME_GROUPS,
    MICRO_COLUMNS,
    QUINTILES,
    cross_section,
    group_weights,
    micro_table,
    mpc_arrays,
    simulate_households,
)
from hatrade.analysis.elasticity import country_problem, longrun_elasticities
from hatrade.cli import elasticity as cli_el
from hatrade.core.household import egm_step
from hatrade.core.params import ParameterError
from hatrade.io.folders import MANIFEST
from hatrade.plots.elasticity import (
    micro_by_assets_figure,
    micro_table_figure,
    partner_elasticities_figure,
    save_figure,
    symmetric_two_country,
)

CODES = ("AAA", "BBB", "CCC")


def small_world():
    return ht.World(
        countries=CODES,
        tfp=[1.0, 0.8, 1.2],
        labor=[1.0, 0.5, 2.0],
        d=[[1.0, 1.6, 2.0], [1.5, 1.0, 1.8], [2.2, 1.7, 1.0]],
    )


SMALL_HH = dict(gamma=1.45, sigma_eps=0.33, psi_slope=0.725, n_a=30, beta=0.92)


@pytest.fixture(scope="module")
def crra():
    return ht.evaluate(small_world(), ht.Household(**SMALL_HH), [1.0, 0.9, 1.1], R=1.01, beta=0.92)


@pytest.fixture(scope="module")
def xs(crra):
    return cross_section(crra, "AAA")


# ----------------------------------------------------------------------------- groups


def test_group_weights_split_ties_exactly():
    values = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
    mass = np.array([0.1, 0.1, 0.3, 0.2, 0.2, 0.1])
    w = group_weights(values, mass, 0.0, 0.5)
    # the block at 1.0 (0.2) and the state at 2.0 (0.3) fill the bottom half exactly
    np.testing.assert_allclose(w, [0.1, 0.1, 0.3, 0, 0, 0], atol=1e-15)
    w = group_weights(values, mass, 0.45, 0.55)
    # 0.45..0.5 from the value 2.0, 0.5..0.55 from the tied block at 3.0, split evenly
    np.testing.assert_allclose(w, [0, 0, 0.05, 0.05 * 0.4, 0.05 * 0.4, 0.05 * 0.2], atol=1e-15)
    assert abs(w.sum() - 0.1) < 1e-15
    # quintiles partition the population: weights add up to the mass
    total = sum(group_weights(values, mass, lo, hi) for lo, hi in QUINTILES.values())
    np.testing.assert_allclose(total, mass, atol=1e-15)
    # order of the states does not matter
    perm = np.array([3, 0, 5, 2, 1, 4])
    np.testing.assert_allclose(group_weights(values[perm], mass[perm], 0.45, 0.55), w[perm])
    with pytest.raises(ParameterError, match="quantiles"):
        group_weights(values, mass, 0.6, 0.5)
    with pytest.raises(ParameterError, match="mass"):
        group_weights(values, -mass, 0.0, 0.5)


# ----------------------------------------------------------------------------- cross-section


def test_cross_section_table(crra, xs):
    t = xs.table
    for col in (
        "a_index",
        "z_index",
        "assets",
        "z",
        "labor_income",
        "income",
        "expenditure",
        "import_share",
        "elasticity",
        "mpc",
        "mpc_marginal",
        "mass",
    ):
        assert col in t.columns
    assert len(t) == 30 * 10
    assert abs(t["mass"].sum() - 1.0) < 1e-12
    np.testing.assert_allclose(t["labor_income"], crra.prices.w[0] * t["z"])
    # the lambda-weighted expenditure and import spending reproduce the aggregates
    Mij = crra.spending[0] / crra.world.labor[0]
    assert abs((t["expenditure"] * t["mass"]).sum() - Mij.sum()) < 1e-10
    imports = (t["import_share"] * t["expenditure"] * t["mass"]).sum()
    assert abs(imports / Mij.sum() - crra.import_share["AAA"]) < 1e-10
    ds = xs.to_dataset()
    assert ds["mpc"].dims == ("a_index", "z_index")


def test_mpc_definition(crra, xs):
    """One EGM step with the transfer, next period's policies fixed: spending rises by the
    transfer minus the extra saving, sum_j pi_j (tau - (a'_j(T + tau) - a'_j(T)))/tau."""
    tau = 0.008
    cp = country_problem(crra, "AAA")
    with jax.enable_x64(True):
        (c0, v0), a0 = egm_step(cp.state, cp.prm)
        (c1, v1), a1 = egm_step(cp.state, cp.prm._replace(T=cp.prm.T + tau))
    pi = np.asarray(crra.policies.pi[0])
    via_saving = np.sum(pi * (tau - (np.asarray(a1) - np.asarray(a0))), axis=-1) / tau
    mpc = xs.table["mpc"].to_numpy().reshape(30, 10)
    np.testing.assert_allclose(mpc, via_saving, atol=1e-9)
    # households at the borrowing limit that stay there spend the whole transfer
    stuck = np.all(np.asarray(a1) <= np.asarray(cp.prm.a_grid)[0] + 1e-12, axis=-1)
    assert stuck.any()
    np.testing.assert_allclose(mpc[stuck], 1.0, atol=1e-12)
    assert np.all(mpc > 0) and np.all(mpc <= 1 + 1e-12)
    # the exact derivative agrees with the finite transfer away from kinks
    marg = xs.table["mpc_marginal"].to_numpy().reshape(30, 10)
    assert np.median(np.abs(marg - mpc)) < 0.02
    # MPCs fall with wealth for every income state (concave consumption function); at the
    # top of the grid a' is capped at the last grid point (flat extrapolation), so MPCs
    # rise again there: compare the borrowing limit with the middle of the grid
    assert np.all(mpc[0] >= mpc[15])
    with pytest.raises(ParameterError, match="transfer"):
        mpc_arrays(crra, "AAA", transfer=0.0)


def test_micro_table_structure(xs):
    tab = micro_table(xs)
    assert list(tab.columns[:6]) == list(MICRO_COLUMNS)
    assert list(tab["group"]) == list(INCOME_GROUPS) + list(QUINTILES)
    mass = dict(zip(tab["group"], tab["mass"]))
    expected = {g: hi - lo for g, (lo, hi) in {**INCOME_GROUPS, **QUINTILES}.items()}
    for g, m in expected.items():
        assert abs(mass[g] - m) < 1e-12, g
    inc = tab[tab["grouping"] == "income"].set_index("group")
    assert (
        inc.loc["below_median", "labor_income"]
        < inc.loc["median_45_55", "labor_income"]
        < inc.loc["above_median", "labor_income"]
    )
    exp = tab[tab["grouping"] == "expenditure"]["expenditure"].to_numpy()
    assert np.all(np.diff(exp) > 0)
    with pytest.raises(ParameterError, match="lacks"):
        micro_table(xs.table.drop(columns=["mpc"]))


def test_simulation_is_seeded_and_close_to_exact(crra, xs):
    a = simulate_households(crra, "AAA", n=20_000, periods=20, seed=3, xs=xs)
    b = simulate_households(crra, "AAA", n=20_000, periods=20, seed=3, xs=xs)
    c = simulate_households(crra, "AAA", n=20_000, periods=20, seed=4, xs=xs)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["assets"].to_numpy(), c["assets"].to_numpy())
    assert abs(a["mass"].sum() - 1.0) < 1e-12
    exact = micro_table(xs).set_index("group")
    sim = micro_table(a).set_index("group")
    for col, tol in (("elasticity", 0.05), ("mpc", 0.03), ("import_share", 0.01)):
        assert np.all(np.abs(sim[col] - exact[col]) < tol), (col, sim[col] - exact[col])
    with pytest.raises(ParameterError, match="n ="):
        simulate_households(crra, "AAA", n=0, xs=xs)


def test_cross_section_bad_input(crra, xs):
    with pytest.raises(ParameterError, match="unknown country code"):
        cross_section(crra, "XYZ")
    with pytest.raises(ParameterError, match="not 'BBB'"):
        cross_section(crra, "BBB", elasticities=xs.elasticities)
    bad = dataclasses.replace(crra, converged=False)
    with pytest.raises(ht.EquilibriumError, match="did not converge"):
        cross_section(bad, "AAA")


# ----------------------------------------------------------------------------- figures


def test_figures(tmp_path, crra, xs):
    r = xs.elasticities
    lr = longrun_elasticities(crra, "AAA")
    for fig, name in (
        (partner_elasticities_figure(r, longrun=lr), "partners.png"),
        (micro_by_assets_figure(r, z_indices=[1, 5, 10]), "assets.png"),
        (micro_table_figure(micro_table(xs)), "table.png"),
    ):
        path = save_figure(fig, tmp_path / name)
        assert path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets.png", "partners.png", "table.png"]
    with pytest.raises(ParameterError, match="z index"):
        micro_by_assets_figure(r, z_indices=[11])
    w = symmetric_two_country(1.4)
    assert w.M == 2 and w.d[0, 1] == w.d[1, 0] == 1.4
    with pytest.raises(ParameterError):
        symmetric_two_country(0.5)


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()


def _app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    cli_el.register(app)
    return app


SMALL_TOML = """
[household]
gamma = 1.45
sigma_eps = 0.33
psi_slope = 0.725
beta = 0.92
n_a = 30

[world]
countries = ["AAA", "BBB", "CCC"]
tfp = [1.0, 0.8, 1.2]
labor = [1.0, 0.5, 2.0]
trade_costs = [[1.0, 1.6, 2.0], [1.5, 1.0, 1.8], [2.2, 1.7, 1.0]]
financial = "globalization"
"""


@pytest.fixture()
def cli_setup(tmp_path, monkeypatch, crra):
    """The small world as a config; the equilibrium step is replaced by the evaluated one."""
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_TOML)
    monkeypatch.setattr(cli_el, "_equilibrium", lambda cfg, prog: (crra, "test equilibrium"))
    return cfg


def test_cli_elasticities_writes_files(tmp_path, cli_setup):
    out = tmp_path / "el"
    res = runner.invoke(
        _app(), ["elasticities", "--country", "AAA", "--config", str(cli_setup), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(cli_el.ELASTICITY_FILES + (MANIFEST,))
    t = pd.read_csv(out / "elasticities.csv")
    assert list(t.columns[:6]) == [
        "partner",
        "theta",
        "theta_extensive",
        "theta_intensive",
        "price",
        "trade_share",
    ]
    assert "theta_longrun" in t.columns and list(t["partner"]) == ["BBB", "CCC"]
    s = json.loads((out / "summary.json").read_text())
    assert s["country"] == "AAA" and s["kind"] == "elasticities"
    assert abs(s["theta"] - float((t["theta"] * t["weight"]).sum())) < 1e-12
    assert "theta_longrun" in s
    # a second run replaces the folder; a foreign folder is refused
    res = runner.invoke(
        _app(),
        [
            "elasticities",
            "--country",
            "AAA",
            "--config",
            str(cli_setup),
            "--out",
            str(out),
            "--no-longrun",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "theta_longrun" not in pd.read_csv(out / "elasticities.csv").columns
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = runner.invoke(
        _app(),
        ["elasticities", "--country", "AAA", "--config", str(cli_setup), "--out", str(foreign)],
    )
    assert res.exit_code == 2 and "holds other files" in res.output
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_cli_households_writes_files(tmp_path, cli_setup):
    out = tmp_path / "hh"
    res = runner.invoke(
        _app(),
        [
            "households",
            "--country",
            "AAA",
            "--config",
            str(cli_setup),
            "--out",
            str(out),
            "--simulate",
            "2000",
            "--seed",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(cli_el.HOUSEHOLD_FILES + ("micro_table_simulated.csv", MANIFEST))
    t = pd.read_csv(out / "micro_table.csv")
    assert list(t.columns[:6]) == list(MICRO_COLUMNS)
    assert len(pd.read_csv(out / "cross_section.csv")) == 300
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "households" and s["transfer"] == 0.008


def test_cli_bad_input(tmp_path, cli_setup):
    out = tmp_path / "x"
    for cmd in ("elasticities", "households"):
        res = runner.invoke(
            _app(), [cmd, "--country", "XYZ", "--config", str(cli_setup), "--out", str(out)]
        )
        assert res.exit_code == 2
        assert "unknown country code 'XYZ'" in res.output and "AAA" in res.output
        res = runner.invoke(
            _app(),
            [cmd, "--country", "AAA", "--config", str(cli_setup), "--calibration", "baseline"],
        )
        assert res.exit_code == 2 and "not both" in res.output
        res = runner.invoke(_app(), [cmd, "--config", str(cli_setup)])
        assert res.exit_code == 2  # --country is required
    one = tmp_path / "one.toml"
    one.write_text(
        SMALL_TOML.split("[world]")[0]
        + """
[world]
countries = ["AAA"]
tfp = [1.0]
labor = [1.0]
trade_costs = [[1.0]]
"""
    )
    res = runner.invoke(_app(), ["elasticities", "--country", "AAA", "--config", str(one)])
    assert res.exit_code == 2 and "no trade partners" in res.output
    res = runner.invoke(
        _app(), ["households", "--country", "AAA", "--config", str(cli_setup), "--transfer", "0"]
    )
    assert res.exit_code == 2 and "transfer" in res.output
    assert not out.exists()


@pytest.mark.slow
def test_cli_end_to_end_real_solve(tmp_path):
    """Without the monkeypatch: solve the config's equilibrium, then the elasticities."""
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_TOML)
    out = tmp_path / "el"
    res = runner.invoke(
        _app(), ["elasticities", "--country", "BBB", "--config", str(cfg), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["equilibrium_source"].startswith("solved")
