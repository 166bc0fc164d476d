"""Own trade data (issue 19): reading, validation, specifications, the generic moment map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hatrade.calibration.generic import data_targets, gravity_setup, prepare
from hatrade.calibration.moments import data_moments, ek_setup
from hatrade.cli import app
from hatrade.data.ek_generic import ek_files, ek_tables, ek_trade_data
from hatrade.data.specification import EK_FORMULA, SpecificationError, build_specification
from hatrade.data.tidy import (
    DataCheckError,
    TradeColumns,
    TradeData,
    check_trade_data,
    read_trade_data,
    validated,
)

DATA30 = Path(__file__).parents[1] / "src" / "hatrade" / "data" / "trade-30-countries-2006.csv"
FORMULA30 = "lndist + contiguity + common_language + pta"


@pytest.fixture(scope="module")
def d30() -> TradeData:
    return read_trade_data(DATA30)


def kinds(report):
    return {p.kind: p for p in report.problems}


def test_shipped_30_country_data_read_and_checked(d30):
    assert d30.M == 30 and len(d30.trade) == 900
    rep = check_trade_data(d30)
    assert rep.ok
    assert set(kinds(rep)) == {"labor_from_output", "imbalance"}
    assert rep.summary["zero_flows"] == 0
    # labor proportional to output, mean 1
    assert d30.countries["labor"].mean() == pytest.approx(1.0)


def test_problems_named_with_rows(d30):
    t = d30.trade.copy()
    t = t[~((t.exporter == "USA") & (t.importer == "DEU"))]  # missing pair
    t = t[~((t.exporter == "FRA") & (t.importer == "FRA"))]  # missing domestic
    t.loc[(t.exporter == "IND") & (t.importer == "AUS"), "trade"] = -3.0
    t.loc[(t.exporter == "GBR") & (t.importer == "AUS"), "trade"] = 0.0
    t = pd.concat([t, t[(t.exporter == "CHN") & (t.importer == "JPN")]], ignore_index=True)
    t.loc[len(t)] = ["XXX", "USA", 1.0, 0, 0, 0, 9.0, 1]
    countries = pd.DataFrame({"country": d30.codes, "labor": 1.0})
    rep = check_trade_data(read_trade_data(t, countries))
    k = kinds(rep)
    assert k["missing_pair"].rows == ("USA->DEU",)
    assert k["missing_domestic"].rows == ("FRA->FRA",)
    assert k["negative"].rows == ("IND->AUS",)
    assert k["zero"].rows == ("GBR->AUS",) and k["zero"].severity == "warning"
    assert k["duplicate_pair"].rows == ("CHN->JPN",)
    assert k["unknown_code"].rows == ("XXX",)
    assert not rep.ok
    with pytest.raises(DataCheckError, match="USA->DEU"):
        validated(read_trade_data(t, countries))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_column_options_and_formats(tmp_path, d30, suffix):
    t = d30.trade.rename(columns={"exporter": "orig", "importer": "dest", "trade": "v"})
    p = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
        t.to_parquet(p)
    else:
        t.to_csv(p, index=False)
    d = read_trade_data(p, columns=TradeColumns(exporter="orig", importer="dest", value="v"))
    assert d.covariates == d30.covariates
    assert np.array_equal(d.trade["trade"], d30.trade["trade"])


@pytest.mark.parametrize(
    "formula, match",
    [
        ("lndist + tariff", "unknown column.*tariff"),
        ("lndist + international", "'international' is constant"),
        ("lndist + pta + pta", "more than once"),
        ("lndist + 3*pta", "not column names"),
    ],
)
def test_bad_formulas(d30, formula, match):
    with pytest.raises(SpecificationError, match=match):
        build_specification(d30, formula)


def test_collinear_with_fixed_effects_named(d30):
    t = d30.trade.copy()
    t["from_usa"] = (t.exporter == "USA").astype(float)
    t["pta_copy"] = 2 * t["pta"]
    d = TradeData(t, d30.countries, d30.covariates + ("from_usa", "pta_copy"), "test")
    with pytest.raises(SpecificationError, match="'from_usa' is collinear with the importer"):
        build_specification(d, "lndist + from_usa")
    with pytest.raises(SpecificationError, match="'pta_copy' is collinear"):
        build_specification(d, "lndist + pta + pta_copy")


def test_formula_adds_constant_unless_bins(d30):
    s = build_specification(d30, FORMULA30)
    assert s.names[0] == "const" and s.n_bins == 1
    assert s.X.shape == (870, 5)
    e = build_specification(ek_trade_data(), EK_FORMULA)
    assert e.names[0] == "bin375" and e.n_bins == 6


def test_ek_generic_builds_the_same_regression():
    """The EK data through the generic path: same pairs, regressors, moment operator and
    data moments as the paper's path."""
    cs = prepare(ek_trade_data(), EK_FORMULA)
    ek = ek_setup()
    assert cs.setup.countries == ek.countries
    assert np.array_equal(cs.setup.importer, ek.importer)
    assert np.array_equal(cs.setup.exporter, ek.exporter)
    assert np.array_equal(cs.setup.X, ek.X) and cs.setup.n_bins == ek.n_bins
    np.testing.assert_allclose(cs.setup.G, ek.G, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cs.targets, data_moments(), rtol=0, atol=1e-12)


def test_shipped_ek_tidy_files_match_converter():
    tp, cp = ek_files()
    t, c = ek_tables()
    pd.testing.assert_frame_equal(pd.read_csv(tp), t, check_dtype=False, rtol=1e-15)
    pd.testing.assert_frame_equal(pd.read_csv(cp), c, check_dtype=False, rtol=1e-15)


def test_ppml_targets_match_pyfixest(d30):
    pf = pytest.importorskip("pyfixest")
    spec = build_specification(d30, FORMULA30)
    setup = gravity_setup(spec, "ppml")
    m = data_targets(d30, setup)
    X = d30.matrix()
    rows = pd.DataFrame(
        {
            "y": X[spec.importer, spec.exporter] / X[spec.importer, spec.importer],
            "imp": np.asarray(spec.countries)[spec.importer],
            "exp": np.asarray(spec.countries)[spec.exporter],
        }
    )
    for k, name in enumerate(spec.names[1:], start=1):
        rows[name] = spec.X[:, k]
    fit = pf.fepois(f"y ~ {' + '.join(spec.names[1:])} | imp + exp", data=rows, iwls_tol=1e-14)
    coef = fit.coef()
    np.testing.assert_allclose(m[-4:], coef[list(spec.names[1:])].to_numpy(), rtol=0, atol=1e-7)


def test_ols_targets_reject_zero_flows(d30):
    t = d30.trade.copy()
    t.loc[(t.exporter == "GBR") & (t.importer == "AUS"), "trade"] = 0.0
    d = read_trade_data(t)
    spec = build_specification(d, FORMULA30)
    with pytest.raises(DataCheckError, match="GBR->AUS.*ppml"):
        data_targets(d, gravity_setup(spec, "ols"))
    assert np.isfinite(data_targets(d, gravity_setup(spec, "ppml"))).all()


def test_cli_data_check():
    runner = CliRunner()
    ok = runner.invoke(app, ["data", "check", str(DATA30), "--formula", FORMULA30])
    assert ok.exit_code == 0, ok.output
    assert "formula ok" in ok.output


def test_cli_data_check_rejects(tmp_path, d30):
    t = d30.trade[~((d30.trade.exporter == "USA") & (d30.trade.importer == "DEU"))]
    p = tmp_path / "bad.csv"
    t.to_csv(p, index=False)
    res = CliRunner().invoke(app, ["data", "check", str(p)])
    assert res.exit_code == 2
    assert "USA->DEU" in res.output


def test_world_folder_round_trip_and_cli_solve(tmp_path):
    """A world folder's world.toml is read by --world DIR (load_config) exactly, and
    commands run on it."""
    from hatrade.io.config import load_config
    from hatrade.io.world_folder import WORLD_FILE, world_toml
    from smallworld import D3, small_household, small_world

    w, hh = small_world(), small_household()
    folder = tmp_path / "myworld"
    folder.mkdir()
    text = world_toml(
        "myworld",
        w.countries,
        w.tfp,
        w.labor,
        np.asarray(D3) * (1 + 1e-13),
        {k: getattr(hh, k) for k in ("gamma", "sigma_eps", "psi_slope", "phi", "a_max", "n_a")},
        R=1.01,
        beta=0.92,
        wages=[1.1, 0.95, 0.95],
        income=dict(rho_perm=0.9, var_perm=0.039, n_perm=2, var_iid=0.0522, n_iid=1),
    )
    (folder / WORLD_FILE).write_text(text)
    cfg = load_config(folder)
    assert cfg.name == "myworld" and cfg.solve_for == "beta"
    assert np.array_equal(cfg.world.d, np.asarray(D3) * (1 + 1e-13))
    assert cfg.household.n_a == hh.n_a and cfg.household.psi_slope == hh.psi_slope
    out = tmp_path / "solved"
    res = CliRunner().invoke(app, ["solve", "--world", str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").is_file()
    bad = CliRunner().invoke(app, ["solve", "--world", str(tmp_path), "--out", str(out)])
    assert bad.exit_code == 2 and "it is a folder" in bad.output


def test_trade_costs_with_covariate_changes(d30):
    """Counterfactual covariates: unchanged gives the calibrated costs; removing PTAs raises
    the costs of PTA pairs by exp(delta_pta / 4) where the floor does not bind."""
    from hatrade.calibration.generic import default_start, trade_costs_with
    from hatrade.calibration.moments import world_from_params

    cs = prepare(d30, FORMULA30)
    theta = default_start(cs.setup, cs.targets)
    d0 = world_from_params(theta, cs.setup, np.ones(30)).d
    np.testing.assert_array_equal(trade_costs_with(cs, theta, {}), d0)
    d1 = trade_costs_with(cs, theta, {"pta": 0.0})
    k = cs.setup.names.index("pta")
    pta = cs.setup.X[:, k] == 1
    i, j = cs.setup.importer, cs.setup.exporter
    ratio = d1[i, j] / d0[i, j]
    free = d0[i, j] > 1
    np.testing.assert_allclose(ratio[pta & free], np.exp(theta[-5:][k] / 4), rtol=1e-12)
    np.testing.assert_array_equal(ratio[~pta], 1.0)
    with pytest.raises(Exception, match="'tariff' is not allowed"):
        trade_costs_with(cs, theta, {"tariff": 0.0})
