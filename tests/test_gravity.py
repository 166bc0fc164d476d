"""Tests for the gravity regression (hatrade.analysis.gravity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hatrade.analysis.gravity import (
    COEFFICIENT_NAMES,
    TradeTableError,
    gravity_regression,
    model_trade_table,
    table1,
    validate_trade_table,
)
from hatrade.data import BIN_COLUMNS, COUNTRIES, COVARIATES, load_calibration, load_trade_data
from hatrade.data.published import table1_values

# The paper's Table 1 (Eaton and Kortum 2002, Table 3), printed to two decimals.
TABLE1 = table1_values()


@pytest.fixture(scope="module")
def df():
    return load_trade_data()


@pytest.fixture(scope="module")
def fast(df):
    return gravity_regression(df, method="fast")


@pytest.fixture(scope="module")
def sm(df):
    return gravity_regression(df, method="statsmodels")


def test_table1_moments(fast):
    assert list(fast.coefficients.index) == list(COEFFICIENT_NAMES)
    for name, value in TABLE1.items():
        assert fast.coefficients[name] == pytest.approx(value, abs=0.006), name


def test_normalization(fast):
    assert fast.S.mean() == pytest.approx(0.0, abs=1e-12)
    assert fast.theta_m.sum() == pytest.approx(0.0, abs=1e-12)
    assert tuple(fast.S.index) == COUNTRIES == tuple(fast.theta_m.index)
    m = fast.moments
    assert m.shape == (46,)
    np.testing.assert_array_equal(m[:18], fast.S.to_numpy()[:18])
    np.testing.assert_array_equal(m[18:36], fast.theta_m.to_numpy()[:18])
    np.testing.assert_array_equal(m[36:], fast.coefficients.to_numpy())
    assert 0.9 < fast.r2 < 1.0
    assert fast.nobs == 342


def test_fitted_values_decompose(df, fast):
    # y_hat_ij = S_j - S_i + theta_m_i + delta_k + ...: the normalized objects reproduce the fit
    i, j = df["importer"], df["exporter"]
    coef = fast.coefficients.to_numpy()
    yhat = (
        fast.S[j].to_numpy()
        - fast.S[i].to_numpy()
        + fast.theta_m[i].to_numpy()
        + df[list(COVARIATES)].to_numpy(dtype=float) @ coef
    )
    np.testing.assert_allclose(yhat, fast.fitted.to_numpy(), atol=1e-10)
    np.testing.assert_allclose(fast.fitted + fast.residuals, df["log_trade"], atol=1e-12)


def test_fast_and_statsmodels_agree(fast, sm):
    np.testing.assert_allclose(fast.moments, sm.moments, rtol=0, atol=1e-8)
    assert fast.r2 == pytest.approx(sm.r2, abs=1e-10)
    assert fast.standard_errors is None
    assert sm.standard_errors is not None
    assert list(sm.standard_errors.index) == list(COEFFICIENT_NAMES)
    assert (sm.standard_errors > 0.05).all() and (sm.standard_errors < 0.3).all()
    text = sm.summary()
    assert "European Community" in text and "s.e." in text and "USA" in text
    assert "EFTA" in fast.summary()


def test_standard_errors_match_effects_coding(df, sm):
    """Independent check: with effects (sum-to-zero) coding of both fixed effects the
    bin coefficients ARE the normalized ones, so statsmodels' own s.e. must match."""
    import statsmodels.api as smapi

    cols = {}
    for role in ("importer", "exporter"):
        codes = df[role].to_numpy()
        for c in COUNTRIES[:-1]:
            cols[f"{role}_{c}"] = (codes == c).astype(float) - (codes == COUNTRIES[-1]).astype(
                float
            )
    x = pd.DataFrame(cols, index=df.index)
    for c in COVARIATES:
        x[c] = df[c].astype(float)
    res = smapi.OLS(df["log_trade"].to_numpy(), x).fit()
    np.testing.assert_allclose(
        res.params[list(COVARIATES)].to_numpy(), sm.coefficients.to_numpy(), atol=1e-10
    )
    np.testing.assert_allclose(
        res.bse[list(COVARIATES)].to_numpy(), sm.standard_errors.to_numpy(), rtol=1e-8
    )
    # S_j is the exporter effect, theta_m_i the sum of the two effects
    np.testing.assert_allclose(
        res.params[[f"exporter_{c}" for c in COUNTRIES[:-1]]].to_numpy(),
        sm.S.to_numpy()[:-1],
        atol=1e-10,
    )


def test_invariant_to_dropped_country_and_row_order(df, fast):
    # Reversing the country order drops a different importer/exporter dummy.
    rev = tuple(reversed(COUNTRIES))
    r = gravity_regression(df, countries=rev)
    pd.testing.assert_series_equal(r.S.reindex(COUNTRIES), fast.S, atol=1e-10, check_exact=False)
    pd.testing.assert_series_equal(
        r.theta_m.reindex(COUNTRIES), fast.theta_m, atol=1e-10, check_exact=False
    )
    np.testing.assert_allclose(r.coefficients, fast.coefficients, atol=1e-10)
    shuffled = df.sample(frac=1.0, random_state=3)
    r2 = gravity_regression(shuffled)
    np.testing.assert_allclose(r2.moments, fast.moments, atol=1e-10)
    pd.testing.assert_series_equal(
        r2.fitted.sort_index(), fast.fitted, atol=1e-10, check_exact=False
    )


def _synthetic(df, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=19)
    s -= s.mean()
    theta = rng.normal(size=19)
    theta -= theta.mean()
    coef = np.r_[np.sort(rng.normal(-4, 1, size=6))[::-1], rng.normal(0.3, 0.2, size=4)]
    i = df["importer"].map({c: k for k, c in enumerate(COUNTRIES)}).to_numpy()
    j = df["exporter"].map({c: k for k, c in enumerate(COUNTRIES)}).to_numpy()
    y = s[j] - s[i] + theta[i] + df[list(COVARIATES)].to_numpy(dtype=float) @ coef
    return df.assign(log_trade=y), s, theta, coef


@pytest.mark.parametrize("method", ["fast", "statsmodels"])
def test_exact_recovery(df, method):
    syn, s, theta, coef = _synthetic(df, seed=11)
    r = gravity_regression(syn, method=method)
    np.testing.assert_allclose(r.S.to_numpy(), s, atol=1e-10)
    np.testing.assert_allclose(r.theta_m.to_numpy(), theta, atol=1e-10)
    np.testing.assert_allclose(r.coefficients.to_numpy(), coef, atol=1e-10)
    np.testing.assert_allclose(r.moments, np.r_[s[:18], theta[:18], coef], atol=1e-10)
    assert np.abs(r.residuals).max() < 1e-10
    assert r.r2 == pytest.approx(1.0, abs=1e-12)


def test_exact_recovery_after_shifting_constants(df):
    # Adding a constant to every y shifts only the bins (the constant is not separately
    # identified from them), and S, theta_m stay put.
    syn, s, theta, coef = _synthetic(df, seed=5)
    r = gravity_regression(syn.assign(log_trade=syn["log_trade"] + 2.5))
    np.testing.assert_allclose(r.S.to_numpy(), s, atol=1e-10)
    np.testing.assert_allclose(r.theta_m.to_numpy(), theta, atol=1e-10)
    np.testing.assert_allclose(r.coefficients.to_numpy()[:6], coef[:6] + 2.5, atol=1e-10)
    np.testing.assert_allclose(r.coefficients.to_numpy()[6:], coef[6:], atol=1e-10)


# ----- model trade tables ------------------------------------------------------------


def _shares_from_data(df):
    """Trade shares s_ij whose log(s_ij/s_ii) equal the data's log_trade."""
    pos = {c: k for k, c in enumerate(COUNTRIES)}
    rel = np.eye(19)
    rel[df["importer"].map(pos), df["exporter"].map(pos)] = np.exp(df["log_trade"])
    return rel / rel.sum(axis=1, keepdims=True)


def test_model_trade_table_round_trip(df, fast):
    shares = _shares_from_data(df)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    tab = model_trade_table(shares, COUNTRIES)
    assert list(tab.columns) == list(df.columns)
    assert (tab["importer"].to_numpy() == df["importer"].to_numpy()).all()
    assert (tab["exporter"].to_numpy() == df["exporter"].to_numpy()).all()
    np.testing.assert_allclose(tab["log_trade"], df["log_trade"], atol=1e-12)
    pd.testing.assert_frame_equal(tab.drop(columns="log_trade"), df.drop(columns="log_trade"))
    np.testing.assert_allclose(gravity_regression(tab).moments, fast.moments, atol=1e-10)


def test_model_trade_table_bad_input(df):
    shares = _shares_from_data(df)
    with pytest.raises(ValueError, match=r"shape"):
        model_trade_table(shares[:18, :18], COUNTRIES)
    bad = shares.copy()
    bad[2, 5] = 0.0
    with pytest.raises(ValueError, match=r"BEL->FIN"):
        model_trade_table(bad, COUNTRIES)


def test_model_trade_table_subset(df):
    sub = ("USA", "CAN", "GBR")
    idx = [COUNTRIES.index(c) for c in sub]
    shares = _shares_from_data(df)[np.ix_(idx, idx)]
    tab = model_trade_table(shares, sub)
    assert len(tab) == 6
    validate_trade_table(tab, sub)
    # 6 pairs cannot identify 2*2 + 10 coefficients
    with pytest.raises(TradeTableError, match="rank deficient"):
        gravity_regression(tab, countries=sub)


# ----- table 1 -----------------------------------------------------------------------


def test_table1(fast, sm):
    params = np.array(load_calibration().params)
    t = table1(fast, sm, params)
    assert list(t.columns) == ["barrier", "moment", "model_fit", "parameter"]
    assert list(t.index) == list(COEFFICIENT_NAMES)
    assert t.loc["ec", "barrier"] == "European Community"
    assert t.loc["efta", "barrier"] == "EFTA"
    assert t.loc["ec", "moment"] == pytest.approx(0.04, abs=0.006)
    assert t.loc["efta", "moment"] == pytest.approx(0.54, abs=0.006)
    assert t.loc["dist_[0,375)", "barrier"] == "Distance [0,375)"
    assert t.loc["border", "barrier"] == "Shared border"
    np.testing.assert_allclose(t["parameter"], np.exp(-params[36:] / 4), rtol=1e-15)
    assert list(table1(fast).columns) == ["barrier", "moment"]


# ----- validation --------------------------------------------------------------------


def test_validate_accepts_data(df):
    validate_trade_table(df)


def test_missing_pair(df):
    bad = df[~((df["importer"] == "FRA") & (df["exporter"] == "DEU"))]
    with pytest.raises(TradeTableError, match=r"lacks 1 ordered pair.*FRA->DEU"):
        gravity_regression(bad)


def test_duplicate_pair(df):
    bad = pd.concat([df, df.iloc[[7]]], ignore_index=True)
    with pytest.raises(TradeTableError, match=r"duplicated pair.*AUS->GRC"):
        validate_trade_table(bad)


def test_nan_log_trade(df):
    bad = df.copy()
    bad.loc[20, "log_trade"] = np.nan
    bad.loc[21, "log_trade"] = -np.inf
    with pytest.raises(TradeTableError, match=r"non-finite.*AUT->CAN, AUT->DNK"):
        gravity_regression(bad)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda d: d.assign(tariff=0.0), r"unknown column.*'tariff'"),
        (lambda d: d.drop(columns="efta"), r"lacks column.*'efta'"),
        (lambda d: d.assign(efta=0), r"rank deficient.*'efta'"),
    ],
    ids=["unknown_covariate", "missing_covariate", "rank_deficient"],
)
def test_bad_covariates(df, edit, pattern):
    with pytest.raises(TradeTableError, match=pattern):
        gravity_regression(edit(df))


def test_unknown_country(df):
    bad = df.copy()
    bad.loc[bad["importer"] == "DEU", "importer"] = "GER"
    bad.loc[bad["exporter"] == "DEU", "exporter"] = "GER"
    with pytest.raises(TradeTableError, match=r"unknown country code.*'GER'"):
        gravity_regression(bad)


def test_diagonal_row(df):
    row = df.iloc[[0]].assign(exporter="AUS")
    with pytest.raises(TradeTableError, match=r"diagonal.*AUS->AUS"):
        validate_trade_table(pd.concat([df, row], ignore_index=True))


def test_bins_not_one_hot(df):
    bad = df.copy()
    bad.loc[4, list(BIN_COLUMNS)] = 0
    with pytest.raises(TradeTableError, match=r"exactly one distance bin.*AUS->FIN"):
        validate_trade_table(bad)
    bad = df.copy()
    bad.loc[4, "border"] = 2
    with pytest.raises(TradeTableError, match=r"'border' must be a 0/1"):
        validate_trade_table(bad)


def test_unknown_method(df):
    with pytest.raises(ValueError, match="'fast', 'statsmodels'"):
        gravity_regression(df, method="gls")
