"""Tests for hatrade.analysis.elasticity: Proposition 1 trade elasticities by exact AD."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hatrade as ht
from hatrade.analysis.cross_section import INCOME_GROUPS, cross_section, micro_table
from hatrade.analysis.elasticity import (
    ElasticityError,
    country_problem,
    longrun_elasticities,
    trade_elasticities,
    world_elasticities,
)
from hatrade.core.household import policies, solve_fixed_point
from hatrade.core.params import ParameterError
from hatrade.data import load_calibration
from hatrade.data.published import published

CODES = ("AAA", "BBB", "CCC")


def small_world():
    return ht.World(
        countries=CODES,
        tfp=[1.0, 0.8, 1.2],
        labor=[1.0, 0.5, 2.0],
        d=[[1.0, 1.6, 2.0], [1.5, 1.0, 1.8], [2.2, 1.7, 1.0]],
    )


def small_eq(gamma=1.45, sigma=0.33, psi=0.725):
    hh = ht.Household(gamma=gamma, sigma_eps=sigma, psi_slope=psi, n_a=30, beta=0.92)
    return ht.evaluate(small_world(), hh, [1.0, 0.9, 1.1], R=1.01, beta=0.92)


@pytest.fixture(scope="module")
def crra():
    return small_eq()


@pytest.fixture(scope="module")
def crra_el(crra):
    return trade_elasticities(crra, "AAA")


@pytest.fixture(scope="module")
def baseline():
    cal = load_calibration("baseline")
    return ht.evaluate(
        ht.ek_world("baseline"),
        ht.published_household("baseline"),
        cal.wages.values,
        R=1.01,
        beta=cal.beta,
    )


# ----------------------------------------------------------------------------- helpers


@jax.jit
def _solve_policies(prm, x0):
    x, it = solve_fixed_point(prm, x0, 1e-12, 20000)
    pol = policies(x, prm)
    return pol.c, pol.pi, it


def _resolve_policies(cp, p):
    """Re-solve country cp's household problem at prices p (tight tolerance)."""
    with jax.enable_x64(True):
        c, pi, it = _solve_policies(cp.prm._replace(p=jnp.asarray(p)), cp.state)
        assert int(it) < 20000
        return np.asarray(c), np.asarray(pi)


def _central_differences(eq, country, h=1e-5):
    """Micro elasticities and theta_ij by central differences in log p_ij (lambda fixed)."""
    cp = country_problem(eq, country)
    i = cp.index
    p0 = np.asarray(cp.prm.p)
    lam = cp.lam
    out = {k: [] for k in ("th_c", "th_pi", "th_c_home", "th_pi_home", "theta")}
    for j in range(len(p0)):
        if j == i:
            continue
        res = []
        for s in (1.0, -1.0):
            p = p0.copy()
            p[j] *= np.exp(s * h)
            c, pi = _resolve_policies(cp, p)
            M = np.einsum("az,azj->j", lam, pi * c * p)
            res.append((np.log(c), np.log(pi), np.log(M[j] / M[i])))
        (lcu, lpu, lMu), (lcd, lpd, lMd) = res
        out["th_c"].append((lcu[..., j] - lcd[..., j]) / (2 * h))
        out["th_pi"].append((lpu[..., j] - lpd[..., j]) / (2 * h))
        out["th_c_home"].append((lcu[..., i] - lcd[..., i]) / (2 * h))
        out["th_pi_home"].append((lpu[..., i] - lpd[..., i]) / (2 * h))
        out["theta"].append((lMu - lMd) / (2 * h))
    return {k: np.array(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- checks


def test_log_model_every_elasticity_is_minus_one_over_sigma():
    """Proposition 3: with log utility (and no income-dependent home bias, as in the
    published log calibration) every micro and aggregate elasticity is -1/sigma."""
    sigma = 0.25
    eq = small_eq(gamma=1.0, sigma=sigma, psi=0.0)
    for country in ("AAA", "CCC"):
        lr = longrun_elasticities(eq, country)
        r = lr.impact
        target = -1.0 / sigma
        np.testing.assert_allclose(r.table["theta"], target, rtol=0, atol=1e-8)
        np.testing.assert_allclose(r.table["theta_direct"], target, rtol=0, atol=1e-8)
        assert abs(r.theta - target) < 1e-8
        np.testing.assert_allclose(r.micro["elasticity"].values, target, rtol=0, atol=1e-8)
        np.testing.assert_allclose(
            r.micro["household_elasticity"].values, target, rtol=0, atol=1e-8
        )
        np.testing.assert_allclose(lr.table["theta_longrun"], target, rtol=0, atol=1e-8)
        # the margins: extensive -1/sigma - (intensive) with intensive = 1 - 1 = 0
        np.testing.assert_allclose(r.table["theta_intensive"], 0.0, atol=1e-8)


@pytest.mark.slow
def test_log_model_with_home_bias_keeps_micro_but_not_aggregate():
    """With log utility the *micro* elasticity is -1/sigma in every state even when the
    home bias varies with income; the aggregate then differs (weights differ)."""
    sigma = 0.25
    eq = small_eq(gamma=1.0, sigma=sigma, psi=0.5)
    r = trade_elasticities(eq, "BBB")
    np.testing.assert_allclose(r.micro["elasticity"].values, -1 / sigma, rtol=0, atol=1e-8)
    assert np.all(np.abs(r.table["theta"] + 1 / sigma) > 1e-3)


def test_ad_matches_central_differences(crra, crra_el):
    fd = _central_differences(crra, "AAA")
    for key in ("th_c", "th_pi", "th_c_home", "th_pi_home"):
        ad = crra_el.micro[key].values
        assert ad.shape == fd[key].shape
        np.testing.assert_allclose(ad, fd[key], rtol=0, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(crra_el.table["theta"], fd["theta"], rtol=0, atol=1e-6)
    # the elasticities are not trivially -1/sigma here (gamma != 1)
    assert np.ptp(crra_el.micro["household_elasticity"].values) > 0.1


def test_proposition1_identity(crra, crra_el):
    """The aggregate built from the micro pieces equals d log(M_ij/M_ii)/d log d_ij
    computed from aggregates with the distribution at the baseline."""
    t = crra_el.table
    np.testing.assert_allclose(t["theta"], t["theta_direct"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        t["theta"], t["theta_extensive"] + t["theta_intensive"], rtol=0, atol=1e-14
    )
    # independently: a derivative of aggregate spending in the trade cost d_ij itself
    cp = country_problem(crra, "AAA")
    i = cp.index
    arrs_d = np.asarray(crra.world.d)
    w, A = crra.prices.w, crra.world.tfp
    for row, j in zip(t.itertuples(), [CODES.index(c) for c in t["partner"]]):

        def log_ratio(log_dij, j=j):
            d = arrs_d.copy()
            d[i, j] = np.exp(log_dij)
            p = d[i] * w / A
            c, pi = _resolve_policies(cp, p)
            M = np.einsum("az,azj->j", cp.lam, pi * c * p)
            return np.log(M[j] / M[i])

        h = 1e-5
        x0 = np.log(arrs_d[i, j])
        direct = (log_ratio(x0 + h) - log_ratio(x0 - h)) / (2 * h)
        assert abs(direct - row.theta) < 1e-8, (row.partner, direct, row.theta)


@pytest.mark.slow
def test_direct_method_matches_jvp_method(crra, crra_el):
    rj = trade_elasticities(crra, "AAA", method="jvp")
    assert rj.method == "jvp"
    np.testing.assert_allclose(crra_el.table["theta"], rj.table["theta"], rtol=0, atol=1e-8)
    for key in ("th_c", "th_pi", "th_c_home", "th_pi_home"):
        np.testing.assert_allclose(
            crra_el.micro[key].values, rj.micro[key].values, rtol=0, atol=1e-7, err_msg=key
        )


def test_micro_dataset_and_weights(crra, crra_el):
    ds = crra_el.micro
    assert list(ds["partner"].values) == ["BBB", "CCC"]
    assert ds["th_pi"].dims == ("partner", "a_index", "z_index")
    np.testing.assert_allclose(ds["weight_partner"].sum(("a_index", "z_index")), 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["weight_home"].sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["distribution"].values, crra.lam[0])
    imp = ds["import_share"].values
    assert np.all((imp > 0) & (imp < 1))
    # the household elasticity is a convex combination of the partner elasticities
    el = ds["elasticity"].values
    hh = ds["household_elasticity"].values
    assert np.all(hh <= el.max(axis=0) + 1e-12) and np.all(hh >= el.min(axis=0) - 1e-12)
    # country elasticity: trade-weighted mean over partners
    t = crra_el.table
    s = crra.trade_shares[0, 1:]
    assert abs(crra_el.theta - float(s @ t["theta"]) / s.sum()) < 1e-12
    assert set(crra_el.summary()) >= {"country", "theta"}
    assert crra_el.residual < 1e-12


def test_partner_subset_and_world(crra, crra_el):
    r = trade_elasticities(crra, "AAA", partners=["CCC", "BBB"])
    assert list(r.table["partner"]) == ["CCC", "BBB"]
    assert list(r.micro["partner"].values) == ["CCC", "BBB"]
    np.testing.assert_allclose(r.table["theta"], crra_el.table["theta"][::-1], atol=1e-10)
    np.testing.assert_allclose(
        r.micro["th_pi"].values, crra_el.micro["th_pi"].values[::-1], atol=1e-10
    )
    world = world_elasticities(crra)
    assert len(world.pairs) == 6
    assert list(world.by_country["country"]) == list(CODES)
    a = world.pairs[world.pairs["importer"] == "AAA"]
    np.testing.assert_allclose(a["theta"], crra_el.table["theta"], atol=1e-12)
    assert abs(world.by_country["theta"].iloc[0] - crra_el.theta) < 1e-12


def test_longrun_differs_from_impact(crra):
    lr = longrun_elasticities(crra, "AAA")
    assert np.all(np.isfinite(lr.table["theta_longrun"]))
    assert np.all(np.abs(lr.table["theta_longrun"] - lr.table["theta_impact"]) > 1e-6)
    assert abs(lr.theta_impact - lr.impact.theta) < 1e-14


def test_baseline_us(baseline):
    """Published calibration: the US elasticity is about -4.23 (published -4.230), partners
    from about -4.1 to -5.9, more expensive (more distant) partners more elastic, and the
    long-run elasticity about -4.246."""
    lr = longrun_elasticities(baseline, "USA")
    r = lr.impact
    assert abs(r.theta - published("theta.impact").value) < 0.005
    t = r.table
    assert len(t) == 18
    assert -4.2 < t["theta"].max() < -4.0
    assert -6.0 < t["theta"].min() < -5.7
    rank = t[["price", "theta"]].rank()
    assert rank["price"].corr(rank["theta"]) < -0.95
    assert abs(lr.theta_longrun - published("theta.longrun").value) < 0.005
    assert lr.theta_longrun < r.theta
    np.testing.assert_allclose(t["theta"], t["theta_direct"], atol=1e-10)
    # extensive margin dominates; the intensive margin is small and positive
    assert np.all(t["theta_extensive"] < -4) and np.all(
        (t["theta_intensive"] > 0) & (t["theta_intensive"] < 0.5)
    )


def test_baseline_us_households(baseline):
    """The US micro table (hatrade.analysis.cross_section, here to share the 19-country fixture):
    poorer households are more price elastic and have higher MPCs, with similar import
    shares."""
    xs = cross_section(baseline, "USA")
    tab = micro_table(xs).set_index("group")
    for poor, rich in (
        ("below_median", "above_median"),
        ("bottom_20", "top_20"),
        ("q1", "q5"),
        ("q2", "q4"),
    ):
        assert tab.loc[poor, "elasticity"] < tab.loc[rich, "elasticity"] - 0.5, (poor, rich)
        assert tab.loc[poor, "mpc"] > tab.loc[rich, "mpc"] + 0.05, (poor, rich)
    # by income: median band between the halves
    assert (
        tab.loc["below_median", "elasticity"]
        < tab.loc["median_45_55", "elasticity"]
        < tab.loc["above_median", "elasticity"]
    )
    # similar import shares across income groups (about 0.07-0.08)
    shares = tab.loc[list(INCOME_GROUPS), "import_share"]
    assert shares.max() - shares.min() < 0.03 and 0.05 < shares.mean() < 0.1
    # the average household is more elastic than the spending-weighted aggregate (the
    # poor are more elastic and spend less)
    t = xs.table
    assert (t["elasticity"] * t["mass"]).sum() < xs.elasticities.theta - 0.1


# ----------------------------------------------------------------------------- bad input


def test_unknown_country_is_a_clear_error(crra):
    with pytest.raises(ParameterError, match="unknown country code 'XYZ'.*AAA, BBB, CCC"):
        trade_elasticities(crra, "XYZ")
    with pytest.raises(ParameterError, match="unknown country code"):
        trade_elasticities(crra, "AAA", partners=["XYZ"])
    with pytest.raises(ParameterError, match="home country"):
        trade_elasticities(crra, "AAA", partners=["AAA"])
    with pytest.raises(ParameterError, match="method"):
        trade_elasticities(crra, "AAA", method="finite-differences")


def test_country_without_partners_is_a_clear_error(crra):
    one = ht.World(countries=("AAA",), tfp=[1.0], labor=[1.0], d=[[1.0]])
    lonely = dataclasses.replace(crra, world=one)
    with pytest.raises(ParameterError, match="no trade partners"):
        trade_elasticities(lonely, "AAA")
    with pytest.raises(ParameterError, match="no trade partners"):
        world_elasticities(lonely)


def test_non_converged_solution_is_a_clear_error(crra):
    bad = dataclasses.replace(crra, converged=False, residual=0.3, iterations=30)
    with pytest.raises(ElasticityError, match="did not converge"):
        trade_elasticities(bad, "AAA")
    with pytest.raises(ElasticityError, match="did not converge"):
        longrun_elasticities(bad, "AAA")
    nan = dataclasses.replace(
        crra, policies=crra.policies._replace(c=np.full_like(crra.policies.c, np.nan))
    )
    with pytest.raises(ElasticityError, match="NaN"):
        trade_elasticities(nan, "AAA")
    # ElasticityError is an EquilibriumError, so the CLI reports it as one clear line
    assert issubclass(ElasticityError, ht.EquilibriumError)


@pytest.mark.slow
def test_direct_method_falls_back_when_the_residual_stays_large(crra, crra_el, monkeypatch, caplog):
    """The direct solve checks its true residual; with a useless assembled Jacobian (an
    identity) the refinement cannot reach the tolerance and the jvp route is used."""
    import hatrade.analysis.tangents as mod

    def bad_assemble(prm, Af, Bf, c1, v1, a1, dXc, dXv):
        n = 2 * c1.shape[0] * Af.shape[1]
        return jax.scipy.linalg.lu_factor(jnp.eye(n, dtype=c1.dtype))

    monkeypatch.setattr(mod, "_direct_assemble", bad_assemble)
    with caplog.at_level("WARNING", logger="hatrade.analysis.elasticity"):
        r = trade_elasticities(crra, "AAA", max_refine=2)
    assert r.method == "jvp"
    assert "recomputing with method='jvp'" in caplog.text
    np.testing.assert_allclose(r.table["theta"], crra_el.table["theta"], atol=1e-8)
