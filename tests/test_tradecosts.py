"""Tests for the calibration-vector layout and trade costs (hatrade.core.tradecosts)."""

from __future__ import annotations

import numpy as np
import pytest

from hatrade.core.tradecosts import (
    n_parameters,
    pack_parameters,
    tfp,
    trade_costs,
    trade_costs_from,
    unpack_parameters,
)
from hatrade.data import COUNTRIES, load_calibration, load_covariates


@pytest.fixture(scope="module")
def params():
    return np.array(load_calibration("baseline").params)


def test_unpack_layout(params):
    u = unpack_parameters(params)
    assert u["log_tfp"].shape == (19,) and u["log_tfp"][18] == 0.0
    np.testing.assert_array_equal(u["log_tfp"][:18], params[:18])
    assert u["theta_m"].shape == (19,)
    np.testing.assert_array_equal(u["theta_m"][:18], params[18:36])
    assert u["theta_m"].sum() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(u["dist_bins"], params[36:42])
    assert (u["border"], u["language"], u["ec"], u["efta"]) == tuple(params[42:46])


def test_pack_unpack_round_trip(params):
    np.testing.assert_array_equal(pack_parameters(unpack_parameters(params)), params)
    rng = np.random.default_rng(1)
    v = rng.normal(size=46)
    np.testing.assert_array_equal(pack_parameters(unpack_parameters(v)), v)
    # free entries only are accepted too
    u = unpack_parameters(v)
    u["log_tfp"], u["theta_m"] = u["log_tfp"][:18], u["theta_m"][:18]
    np.testing.assert_array_equal(pack_parameters(u), v)


def test_pack_rejects_unrepresentable(params):
    u = unpack_parameters(params)
    u["log_tfp"] = u["log_tfp"].copy()
    u["log_tfp"][18] = 0.1
    with pytest.raises(ValueError, match="A_M = 1"):
        pack_parameters(u)
    u = unpack_parameters(params)
    u["theta_m"] = u["theta_m"] + 0.1
    with pytest.raises(ValueError, match="sums to"):
        pack_parameters(u)
    u = unpack_parameters(params)
    del u["efta"]
    with pytest.raises(ValueError, match="efta"):
        pack_parameters(u)


@pytest.mark.parametrize("n", [45, 47, 0])
def test_wrong_length(n):
    with pytest.raises(ValueError, match="expected 46"):
        unpack_parameters(np.zeros(n))
    with pytest.raises(ValueError, match="expected 46"):
        trade_costs(np.zeros(n))


def test_non_finite_rejected():
    v = np.zeros(46)
    v[40] = np.inf
    with pytest.raises(ValueError, match="non-finite.*41"):
        unpack_parameters(v)


def test_n_parameters():
    assert n_parameters() == 46
    assert n_parameters(3) == 14
    assert len(unpack_parameters(np.zeros(14), n_countries=3)["theta_m"]) == 3


def test_tfp(params):
    a = tfp(params)
    assert a.shape == (19,)
    assert a[-1] == 1.0
    np.testing.assert_allclose(np.log(a[:18]), params[:18], rtol=1e-14)


def test_trade_costs_properties(params):
    d = trade_costs(params)
    assert d.shape == (19, 19)
    np.testing.assert_array_equal(np.diag(d), 1.0)
    assert (d >= 1.0).all()
    assert np.isfinite(d).all()
    assert (d > 1.0).sum() > 300  # the floor binds only for a few pairs


def test_trade_costs_hand_entry(params):
    # USA importing from CAN: bin [375,750)? read the covariates to be sure, then compute by hand.
    cov = load_covariates().set_index(["importer", "exporter"])
    row = cov.loc[("USA", "CAN")]
    assert row["border"] == 1 and row["language"] == 1 and row["ec"] == 0 and row["efta"] == 0
    k = [
        row["bin375"],
        row["bin750"],
        row["bin1500"],
        row["bin3000"],
        row["bin6000"],
        row["binmax"],
    ].index(1)
    theta_usa = -params[18:36].sum()
    x = params[36 + k] + params[42] + params[43] + theta_usa
    expected = max(1.0, np.exp(-x / 4))
    i, j = COUNTRIES.index("USA"), COUNTRIES.index("CAN")
    assert trade_costs(params)[i, j] == pytest.approx(expected, rel=1e-14)


def test_trade_costs_fully_hand_computed():
    # A vector with only bins and theta_m: AUS (theta 0.4) importing from AUT (bin 6000+).
    v = np.zeros(46)
    v[18] = 0.4  # theta_m AUS
    v[36:42] = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    v[42:46] = [0.3, 0.5, 0.1, 0.2]
    d = trade_costs(v)
    # AUS<-AUT: binmax, no border/language/bloc: x = -6 + 0.4 = -5.6 -> d = exp(1.4)
    assert d[0, 1] == pytest.approx(np.exp(1.4), rel=1e-14)
    # AUT<-AUS: theta_m AUT = 0: d = exp(6/4)
    assert d[1, 0] == pytest.approx(np.exp(1.5), rel=1e-14)
    # USA (theta = -0.4) from CAN: x = bin + 0.3 + 0.5 - 0.4
    cov = load_covariates().set_index(["importer", "exporter"]).loc[("USA", "CAN")]
    k = int(
        np.argmax(cov[["bin375", "bin750", "bin1500", "bin3000", "bin6000", "binmax"]].to_numpy())
    )
    assert d[18, 3] == pytest.approx(np.exp(-(v[36 + k] + 0.4) / 4), rel=1e-14)


def test_floor_at_one():
    v = np.zeros(46)
    v[36:42] = 2.0  # positive x -> exp(-x/4) < 1 -> floored
    d = trade_costs(v)
    np.testing.assert_array_equal(d, 1.0)


def test_trade_costs_from_subset(params):
    full = trade_costs(params)
    sub = ("USA", "CAN", "JPN")
    u = unpack_parameters(params)
    idx = [COUNTRIES.index(c) for c in sub]
    parts = dict(u, theta_m=u["theta_m"][idx])
    d = trade_costs_from(parts, load_covariates(), sub)
    np.testing.assert_array_equal(d, full[np.ix_(idx, idx)])


def test_trade_costs_from_missing_pair(params):
    cov = load_covariates()
    cov = cov[~((cov["importer"] == "USA") & (cov["exporter"] == "CAN"))]
    with pytest.raises(ValueError, match=r"missing \[\('USA', 'CAN'\)\]"):
        trade_costs(params, cov)
