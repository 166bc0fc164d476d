"""Tests for the shipped-data loaders (hatrade.data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hatrade import data
from hatrade.data import (
    COUNTRIES,
    COVARIATES,
    DataFileError,
    ParameterFileError,
    _data_path,
    _join_trade_files,
    load_calibration,
    load_covariates,
    load_initial_prices,
    load_labor,
    load_trade_data,
    read_parameter_file,
)
from hatrade.io.parameters import write_parameter_file


def test_constants():
    assert COUNTRIES == (
        "AUS", "AUT", "BEL", "CAN", "DNK", "FIN", "FRA", "DEU", "GRC", "ITA",
        "JPN", "NLD", "NZL", "NOR", "PRT", "ESP", "SWE", "GBR", "USA",
    )  # fmt: skip
    assert COVARIATES == (
        "bin375", "bin750", "bin1500", "bin3000", "bin6000", "binmax",
        "border", "language", "ec", "efta",
    )  # fmt: skip
    assert data.INITIAL_BETA == 0.93


def test_trade_data_shape_and_content():
    df = load_trade_data()
    assert df.shape == (342, 14)
    assert list(df.columns) == ["importer", "exporter", "log_trade", "distance_miles", *COVARIATES]
    assert set(df["importer"]) == set(COUNTRIES) == set(df["exporter"])
    assert (df["importer"] != df["exporter"]).all()
    assert not df[["importer", "exporter"]].duplicated().any()
    # importer-major order, as in the files
    assert list(df["importer"][:18]) == ["AUS"] * 18
    assert list(df["exporter"][:3]) == ["AUT", "BEL", "CAN"]
    # first rows of ek-data.csv: AUS<-AUT -7.41, AUS<-BEL -10.074; AUS-CAN share a language
    assert df["log_trade"].iloc[0] == pytest.approx(-7.41)
    assert df["log_trade"].iloc[1] == pytest.approx(-10.074)
    assert df["language"].iloc[2] == 1
    assert np.isfinite(df["log_trade"]).all()
    assert (df[list(data.BIN_COLUMNS)].sum(axis=1) == 1).all()
    # EC: 90 ordered pairs; EFTA: 12 (docs/model.md section 4)
    assert df["ec"].sum() == 90
    assert df["efta"].sum() == 12
    # symmetric covariates
    key = df.set_index(["importer", "exporter"])
    assert key.loc[("FRA", "DEU"), "border"] == key.loc[("DEU", "FRA"), "border"] == 1


def test_load_returns_copy():
    a = load_trade_data()
    a.loc[0, "log_trade"] = 99.0
    assert load_trade_data().loc[0, "log_trade"] != 99.0


def test_covariates_match_trade_data():
    cov = load_covariates()
    df = load_trade_data()
    assert cov.shape == (342, 13)
    assert "log_trade" not in cov.columns
    pd.testing.assert_frame_equal(cov, df.drop(columns="log_trade"))


def test_labor_and_germany_option():
    lab = load_labor()
    assert lab.name == "labor"
    assert tuple(lab.index) == COUNTRIES
    assert lab["USA"] == 1.0
    assert lab["DEU"] == pytest.approx(0.0225)
    fixed = load_labor(correct_germany=True)
    assert fixed["DEU"] == pytest.approx(0.225)
    pd.testing.assert_series_equal(fixed.drop("DEU"), lab.drop("DEU"))


@pytest.mark.parametrize(
    "name, gamma, sigma, psi",
    [("baseline", 1.45, 0.33, 0.725), ("log", 1.0, 0.2369, 0.0)],
)
def test_calibration(name, gamma, sigma, psi):
    cal = load_calibration(name)
    assert cal.name == name
    assert cal.params.shape == (46,)
    assert np.isfinite(cal.params).all()
    assert (cal.gamma, cal.sigma_eps, cal.psi_slope) == (gamma, sigma, psi)
    assert tuple(cal.wages.index) == COUNTRIES
    assert cal.wages.sum() == pytest.approx(19.0, abs=1e-12)
    assert (cal.wages > 0).all()
    assert 0.9 < cal.beta < 0.96
    with pytest.raises(ValueError):
        cal.params[0] = 1.0  # read-only


def test_calibration_values():
    cal = load_calibration()
    assert cal.beta == pytest.approx(0.9293630720608874, rel=1e-15)
    assert cal.params[0] == pytest.approx(-3.3182656213003865, rel=1e-15)
    assert cal.wages["AUS"] == pytest.approx(0.07857597836285106, rel=1e-15)


def test_calibration_unknown_name():
    with pytest.raises(ValueError, match=r"'baseline'.*'log'"):
        load_calibration("bogus")


def test_initial_prices():
    w = load_initial_prices()
    assert tuple(w.index) == COUNTRIES
    assert w.mean() == pytest.approx(1.0, abs=1e-14)
    raw = np.loadtxt(_data_path("calibration", "initial-prices.csv"), skiprows=1)
    assert raw[-1] == 1.0
    np.testing.assert_allclose(w.to_numpy(), raw / raw.mean(), rtol=1e-15)
    assert w["AUS"] / w["USA"] == pytest.approx(raw[0])


# ----- parameter files ---------------------------------------------------------------


def test_parameter_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.normal(size=46) * 10.0 ** rng.integers(-8, 4, size=46)
    f = tmp_path / "p.csv"
    write_parameter_file(f, p)
    assert f.read_text().splitlines()[0] == "guess"
    np.testing.assert_array_equal(read_parameter_file(f), p)
    # no temp files left behind
    assert [x.name for x in tmp_path.iterdir()] == ["p.csv"]


def test_published_file_round_trip(tmp_path):
    src = _data_path("calibration", "baseline-parameters.csv")
    p = read_parameter_file(src)
    write_parameter_file(tmp_path / "b.csv", p)
    np.testing.assert_array_equal(read_parameter_file(tmp_path / "b.csv"), p)


def _write(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parameter_file_wrong_length(tmp_path):
    f = _write(tmp_path / "short.csv", ["guess"] + ["1.0"] * 45)
    with pytest.raises(ParameterFileError, match=r"short\.csv.*45.*expected 46"):
        read_parameter_file(f)


@pytest.mark.parametrize(
    "line, value, pattern",
    [
        (5, "abc", r"bad\.csv.*line 6.*'abc'"),
        (10, "nan", r"bad\.csv.*line 11.*finite"),
        (10, "inf", r"bad\.csv.*line 11.*finite"),
    ],
    ids=["non_numeric", "nan", "inf"],
)
def test_parameter_file_bad_value(tmp_path, line, value, pattern):
    lines = ["guess"] + ["1.0"] * 46
    lines[line] = value
    with pytest.raises(ParameterFileError, match=pattern):
        read_parameter_file(_write(tmp_path / "bad.csv", lines))


def test_parameter_file_missing_header_and_file(tmp_path):
    f = _write(tmp_path / "nohead.csv", ["1.0"] * 46)
    with pytest.raises(ParameterFileError, match="guess"):
        read_parameter_file(f)
    with pytest.raises(ParameterFileError, match="does not exist"):
        read_parameter_file(tmp_path / "absent.csv")


def test_write_parameter_file_rejects_bad_input(tmp_path):
    with pytest.raises(ParameterFileError, match="46"):
        write_parameter_file(tmp_path / "x.csv", np.zeros(45))
    p = np.zeros(46)
    p[3] = np.nan
    with pytest.raises(ParameterFileError, match="non-finite"):
        write_parameter_file(tmp_path / "x.csv", p)
    assert not any(tmp_path.iterdir())


def test_write_parameter_file_replaces_atomically(tmp_path):
    f = tmp_path / "p.csv"
    write_parameter_file(f, np.zeros(46))
    write_parameter_file(f, np.ones(46))
    np.testing.assert_array_equal(read_parameter_file(f), np.ones(46))
    assert [x.name for x in tmp_path.iterdir()] == ["p.csv"]


# ----- joining the trade files ---------------------------------------------------------


@pytest.fixture
def trade_files(tmp_path):
    """Copies of the three shipped files that tests can corrupt."""
    out = {}
    for name in ("ek-data.csv", "ek-language.csv", "ek-cntryfix.csv"):
        dst = tmp_path / name
        dst.write_text(_data_path(name).read_text())
        out[name] = dst
    return out


def _join(files):
    return _join_trade_files(
        files["ek-data.csv"], files["ek-language.csv"], files["ek-cntryfix.csv"]
    )


def test_join_reproduces_loader(trade_files):
    pd.testing.assert_frame_equal(_join(trade_files), load_trade_data())


def test_join_wrong_row_count(trade_files):
    f = trade_files["ek-language.csv"]
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataFileError, match=r"ek-language\.csv has 341 .*expected 342"):
        _join(trade_files)


def test_join_shifted_language_rows(trade_files):
    # drop the first language row and duplicate the last: same count, wrong order
    f = trade_files["ek-language.csv"]
    lines = f.read_text().splitlines()
    f.write_text("\n".join([lines[0]] + lines[2:] + [lines[-1]]) + "\n")
    with pytest.raises(DataFileError, match=r"do not match.*ek-language\.csv"):
        _join(trade_files)


@pytest.mark.parametrize(
    "name, row, column, value, pattern",
    [
        ("ek-cntryfix.csv", 5, "importer", 2, r"'importer'.*row 6 \(AUS->"),
        ("ek-data.csv", 3, "exporter", 20, r"outside 1\.\.19"),
    ],
    ids=["importer_mismatch", "bad_country_index"],
)
def test_join_bad_country_column(trade_files, name, row, column, value, pattern):
    f = trade_files[name]
    df = pd.read_csv(f)
    df.loc[row, column] = value
    df.to_csv(f, index=False)
    with pytest.raises(DataFileError, match=pattern):
        _join(trade_files)


def test_join_missing_column(trade_files):
    f = trade_files["ek-language.csv"]
    pd.read_csv(f).drop(columns="efta").to_csv(f, index=False)
    with pytest.raises(DataFileError, match=r"lacks column.*efta"):
        _join(trade_files)
