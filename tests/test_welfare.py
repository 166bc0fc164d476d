"""Household welfare: equivalent variation, Lucas measure, summaries, Propositions 2 and 3."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hatrade
from hatrade.analysis.counterfactual import Scenario, run_counterfactual
from hatrade.analysis.groups import QUINTILES, quantile_weights
from hatrade.data.published import published
from hatrade.welfare import (
    acr_gain,
    consumption_equivalent,
    country_welfare,
    decompose,
    equivalent_variation,
    household_problem,
    value_split,
)
from hatrade.welfare.problem import scale_income
from smallworld import small_household, small_world


@pytest.fixture(scope="module")
def base():
    return hatrade.solve_equilibrium(small_world(), small_household(), solve_for="R", R_guess=1.02)


@pytest.fixture(scope="module")
def cut(base):
    return run_counterfactual(base, Scenario(importer="H", trade_cost_change=-0.1))


@pytest.fixture(scope="module")
def verified(cut):
    return country_welfare(cut, country="H", verify=True)


def _V_old_at(eq, country, lam):
    """Independent evaluation: the old problem at (lam R, lam w, lam T), from a cold start."""
    from hatrade.core.household import initial_state, policies, solve_fixed_point

    with jax.enable_x64(True):
        prm, _ = household_problem(eq, country)
        p = scale_income(prm, jnp.asarray(lam))
        x, _ = solve_fixed_point(p, initial_state(p), 1e-12, 10000)
        return np.asarray(policies(x, p).V)


# ----------------------------------------------------------------------------- EV


def test_zero_change_gives_lambda_one(base):
    cf = run_counterfactual(base, Scenario())
    cw = country_welfare(cf, country="H", verify=True)
    assert np.max(np.abs(cw.ev.lam - 1.0)) < 1e-10
    assert np.all(np.abs(cw.ev.residual) < 1e-10)
    assert cw.summary["share_losers"] == 0.0
    assert abs(cw.summary["mean_gain_percent"]) < 1e-8


def test_ev_residuals_below_tolerance_in_every_state(verified, cut):
    ev = verified.ev
    assert ev.verified and ev.residual.shape == (20, 2)
    assert np.all(np.isfinite(ev.residual))
    assert np.max(np.abs(ev.residual)) < 1e-10
    # independent check on a few states: a cold solve at the state's own lambda
    for a, z in [(0, 0), (7, 1), (19, 0)]:
        V = _V_old_at(cut.baseline, "H", ev.lam[a, z])
        assert abs(V[a, z] - ev.V_new[a, z]) < 2e-10


def test_interpolated_ev_close_to_verified(cut, verified):
    ev = equivalent_variation(cut.baseline, cut.new, "H", verify=False)
    assert not ev.verified and np.all(np.isnan(ev.residual))
    assert np.all(ev.bracketed)
    # interpolation from a few nodes (V is only piecewise smooth in lambda, with kinks that
    # are large on this coarse 20-point grid): gains to within 0.05 percentage points
    assert np.max(np.abs(ev.lam - verified.ev.lam)) < 5e-4
    # the leave-one-out error estimate has the right size
    err_v = np.abs((ev.lam - verified.ev.lam) * ev.dV_dlam)
    assert np.median(err_v) < 10 * np.median(ev.residual_estimate)
    assert np.max(err_v) < 10 * np.max(ev.residual_estimate)
    # the same estimate in lambda (gain units)
    err_l = np.abs(ev.lam - verified.ev.lam)
    assert np.all(np.isfinite(ev.lam_error_estimate))
    assert np.max(err_l) < 10 * np.max(ev.lam_error_estimate)
    assert np.median(err_l) < 10 * np.median(ev.lam_error_estimate)


def test_extrapolated_roots_are_reported(cut, caplog, monkeypatch):
    """Roots outside the solved lambda nodes (here: no nodes besides lambda = 1) are not
    returned silently: flagged in ``bracketed`` and warned about, with what to do."""
    import logging

    # n_nodes must be >= 3 (EVOptions); no bulk nodes is what a skipped step 2 leaves
    monkeypatch.setattr("hatrade.welfare.ev.cover_roots", lambda *args: None)
    with caplog.at_level(logging.WARNING, logger="hatrade.welfare.ev"):
        ev = equivalent_variation(cut.baseline, cut.new, "H")
    assert not np.any(ev.bracketed[ev.defined])
    msgs = [
        r.getMessage()
        for r in caplog.records
        if "outside the solved lambda nodes" in r.getMessage()
    ]
    assert len(msgs) == 1 and "verify=True" in msgs[0] and "mass" in msgs[0]


def test_ev_and_lucas_agree_in_sign(verified):
    gain, cev = verified.ev.gain_percent, 100 * verified.cev
    assert verified.ev.defined.all()  # no negative-income states in this world
    assert np.all(np.sign(gain) == np.sign(cev))
    assert verified.summary["cev"]["ev_sign_agreement_share"] == 1.0
    assert verified.summary["cev"]["sign_matches_value_change"]


@pytest.fixture(scope="module")
def cut_borrowers():
    """The small world with a looser borrowing limit: some states at the limit have
    negative total income R a + w z."""
    base = hatrade.solve_equilibrium(
        small_world(), small_household(phi=1.0), solve_for="R", R_guess=1.02
    )
    return run_counterfactual(base, Scenario(importer="H", trade_cost_change=-0.1))


def test_ev_negative_income_states_first_root_above_one(cut_borrowers):
    """Where scaling income lowers V at lambda = 1, V_old turns up again: the EV is the
    first root above 1, exact (verified), and V_old stays below V_new between 1 and it."""
    cf = cut_borrowers
    ev = equivalent_variation(cf.baseline, cf.new, "H", verify=True)
    nm = ev.nonmonotone
    assert nm.sum() >= 2
    assert np.all(ev.dV_dlam[nm] <= 0) and np.all(ev.dV_dlam[~nm] > 0)
    assert ev.defined.all() and np.all(ev.lam[nm] > 1.0)
    assert np.max(np.abs(ev.residual)) < 1e-10
    prm, _ = household_problem(cf.baseline, "H")
    R, a_grid, w, z = (np.asarray(v) for v in (prm.R, prm.a_grid, prm.w, prm.z))
    inc = R * a_grid[:, None] + w * z[None, :]
    assert np.any(inc[nm] < 0)
    for a, z in zip(*np.where(nm)):
        assert a_grid[a] < 0  # borrowers (near the limit)
        # independent cold solves: equal at lambda, below in between (the first root)
        assert abs(_V_old_at(cf.baseline, "H", ev.lam[a, z])[a, z] - ev.V_new[a, z]) < 2e-10
        for lam in np.linspace(1.0, ev.lam[a, z], 5)[1:-1]:
            assert _V_old_at(cf.baseline, "H", lam)[a, z] < ev.V_new[a, z]
    # the interpolated EV (the default) is close, and bracketed
    ev_i = equivalent_variation(cf.baseline, cf.new, "H")
    assert np.all(ev_i.bracketed[nm])
    assert np.max(np.abs(ev_i.lam[nm] - ev.lam[nm])) < 2e-3
    # EV and Lucas measure agree in sign there too; the table and summary flag them
    cw = country_welfare(cf, country="H")
    assert np.all(np.sign(cw.ev.gain_percent[nm]) == np.sign(cw.cev[nm]))
    assert cw.table["ev_first_root_above_one"].sum() == nm.sum()
    assert cw.summary["ev"]["first_root_above_one_states"] == nm.sum()
    assert cw.summary["ev"]["undefined_states"] == 0 and cw.summary["share_losers"] == 0.0


def test_lucas_measure_policy_evaluation(cut):
    U_c, U_psi, T = value_split(cut.baseline, "H")
    prm, x = household_problem(cut.baseline, "H")
    from hatrade.core.household import policies

    with jax.enable_x64(True):
        V = np.asarray(policies(x, prm).V)
    assert np.max(np.abs(U_c + U_psi - V)) < 1e-8
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-12)
    # g solves (1+g)^(1-gamma) U_c + U_psi = V_target exactly
    target = V + 0.05
    g, _ = consumption_equivalent(cut.baseline, target, "H")
    gamma = cut.baseline.household.gamma
    np.testing.assert_allclose((1 + g) ** (1 - gamma) * U_c + U_psi, target, atol=1e-10)
    assert np.all(g > 0)


def test_summary_statistics(verified, cut):
    s, t = verified.summary, verified.table
    # verified: residuals evaluated in every state, no interpolation estimate
    assert t["ev_residual"].abs().max() < 1e-10 and t["ev_residual_verified"].all()
    assert t["ev_gain_error_estimate_points"].isna().all()
    mass = t["mass"].to_numpy()
    gain = t["gain_percent"].to_numpy()
    assert s["mean_gain_percent"] == pytest.approx(np.sum(mass * gain) / mass.sum())
    assert s["share_losers"] == pytest.approx(mass[gain < 0].sum())
    assert s["acr_percent"] == pytest.approx(
        100 / 4.22 * math.log(cut.baseline.trade_shares[0, 0] / cut.new.trade_shares[0, 0])
    )
    assert s["acr_percent"] == pytest.approx(acr_gain(cut.baseline, cut.new, "H"))
    q = s["quintile_gain_percent"]
    assert min(q.values()) <= s["mean_gain_percent"] <= max(q.values())
    ig = s["income_group_gain_percent"]
    assert set(ig) == {"bottom_20", "below_median", "median_45_55", "above_median", "top_20"}
    assert list(t.columns[:9]) == [
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
    # rows: assets then income state, 1-based
    assert t["a_index"].tolist()[:4] == [1, 1, 2, 2] and t["z_index"].tolist()[:4] == [1, 2, 1, 2]
    sw = s["social_welfare"]
    assert sw["change"] == pytest.approx(sw["change_households"] + sw["change_distribution"])


def test_quantile_groups_split_mass_exactly():
    rng = np.random.default_rng(0)
    key, mass = rng.normal(size=50), rng.random(50)
    W = np.stack(list(quantile_weights(key, mass, QUINTILES).values()))
    np.testing.assert_allclose(W.sum(axis=1), mass.sum() / 5)
    np.testing.assert_allclose(W.sum(axis=0), mass)
    # lower groups hold lower keys
    means = (W @ key) / W.sum(axis=1)
    assert np.all(np.diff(means) > 0)


# ----------------------------------------------------------------------------- Prop. 2 / 3


def test_decomposition_sums_to_total_derivative(base):
    dec = decompose(base, "H", Scenario(importer="H", trade_cost_change=-0.1))
    scale = np.max(np.abs(dec.total))
    assert dec.sum_error < 1e-8 * max(scale, 1.0)
    assert np.max(np.abs(dec.L)) < 1e-8 * scale  # logit envelope property
    assert np.max(np.abs(dec.A)) > 0 and np.max(np.abs(dec.B)) > 0
    # cheaper imports (dlog d = +1 is a cost increase): H's households lose on impact
    assert dec.dW["households"] < 0
    # general-equilibrium price responses: wages stay normalized
    assert abs(sum(dec.dprices["w"])) < 1e-10
    # the marginal EV agrees with a small finite counterfactual
    cf = run_counterfactual(base, Scenario(importer="H", trade_cost_change=-1e-3))
    ev = equivalent_variation(base, cf.new, "H", verify=False)
    lin = dec.gain_percent * math.log(0.999)  # per unit d log d, times d log d
    assert np.all(lin > 0)
    np.testing.assert_allclose(ev.gain_percent, lin, rtol=0.02, atol=0.02 * np.max(lin))


def test_proposition_3_log_preferences():
    """Log utility, no psi, prices fixed: dV/dlog d_ij = d log s_ii / (theta (1-beta))."""
    hh = small_household(gamma=1.0, sigma_eps=0.25, psi_slope=0.0)
    eq = hatrade.evaluate(small_world(), hh, wages=[1.0, 0.95, 1.05], R=1.01, beta=0.92)
    D = np.zeros((3, 3))
    D[0, 1] = 1.0  # H's imports from F
    dec = decompose(eq, "H", D, general_equilibrium=False)
    theta = -1.0 / 0.25
    expect = dec.dlog_home_share / (theta * (1 - 0.92))
    assert dec.dlog_home_share > 0
    np.testing.assert_allclose(dec.total, expect, rtol=0, atol=1e-8)
    assert np.max(np.abs(dec.B)) == 0.0


def test_log_preferences_finite_cut_lucas_gain_is_acr_in_every_state():
    """Log utility, no psi, wages and R fixed, a 10% cut of H's import costs (not marginal):
    the variety choice and the saving policy do not depend on goods prices or on (a, z),
    so every state's value rises by the same -Delta log P / (1 - beta) and the Lucas gain
    is (s_HH / s'_HH)^sigma - 1 in every state (the ACR term with theta = 1/sigma). The EV
    is above it where cash on hand is below spending (at the borrowing limit) and below it
    at the top of the asset grid."""
    from hatrade.analysis.counterfactual import apply_scenario

    sigma, beta, wages = 0.25, 0.92, [1.0, 0.95, 1.05]
    hh = small_household(gamma=1.0, sigma_eps=sigma, psi_slope=0.0)
    w0 = small_world()
    w1 = apply_scenario(w0, Scenario(importer="H", trade_cost_change=-0.1))
    old = hatrade.evaluate(w0, hh, wages=wages, R=1.01, beta=beta, hh_tol=1e-12)
    new = hatrade.evaluate(w1, hh, wages=wages, R=1.01, beta=beta, hh_tol=1e-12)
    s0, s1 = old.trade_shares[0, 0], new.trade_shares[0, 0]
    assert s1 < s0
    ev = equivalent_variation(old, new, "H", verify=True)
    dV = ev.V_new - ev.V_old
    np.testing.assert_allclose(dV, sigma * math.log(s0 / s1) / (1 - beta), rtol=0, atol=1e-9)
    g, split_err = consumption_equivalent(old, ev.V_new, "H")
    assert split_err < 1e-8
    np.testing.assert_allclose(g, (s0 / s1) ** sigma - 1, rtol=0, atol=1e-10)
    # ACR measures the same gain in log points
    assert 100 * math.log1p(g[0, 0]) == pytest.approx(
        acr_gain(old, new, "H", theta=1 / sigma), abs=1e-8
    )
    lam = ev.lam - 1
    assert np.all(lam[0] > g[0]) and np.all(lam[-1] < g[-1])


# ----------------------------------------------------------------------------- the paper


def _paper(kind: str, model: str, what: str) -> float:
    """The paper's US welfare number (hatrade.data.published), 10% cut of trade costs."""
    return published(f"welfare.{kind}.{model}.{what}").value


PUBLISHED = {  # the paper: US welfare, 10% cut of trade costs (docs/model.md section 8)
    ("baseline", "unilateral"): {
        k: _paper("unilateral", "baseline", w)
        for k, w in (
            ("mean", "mean"),
            ("q1", "Q1"),
            ("q5", "Q5"),
            ("acr", "ACR"),
            ("r_over_w", "R/w"),
        )
    },
    ("baseline", "global"): {
        "mean": _paper("global", "baseline", "mean"),
        "acr": _paper("global", "baseline", "ACR"),
    },
    ("log", "unilateral"): {"mean": _paper("unilateral", "log", "mean")},
    ("log", "global"): {"mean": _paper("global", "log", "mean")},
}


@pytest.fixture(scope="module")
def published_runs():
    """19-country counterfactuals of the paper (slow: several equilibrium solves)."""
    from hatrade.analysis.counterfactual import baseline_equilibrium

    out = {}
    for cal in ("baseline", "log"):
        eq = baseline_equilibrium(cal)
        for kind, sc in (
            (
                "unilateral",
                Scenario(importer="USA", trade_cost_change=-0.10, allow_d_below_one=True),
            ),
            ("global", Scenario(all_pairs=True, trade_cost_change=-0.10, allow_d_below_one=True)),
        ):
            cf = run_counterfactual(eq, sc)
            out[cal, kind] = (cf, country_welfare(cf, country="USA"))
    return out


@pytest.mark.slow
def test_published_prices_acr_and_losers(published_runs):
    cf, cw = published_runs["baseline", "unilateral"]
    us = cf.countries.index("USA")
    assert cf.R_over_w_change_percent()[us] == pytest.approx(
        PUBLISHED["baseline", "unilateral"]["r_over_w"], abs=0.1
    )
    assert cw.summary["acr_percent"] == pytest.approx(
        PUBLISHED["baseline", "unilateral"]["acr"], abs=0.03
    )
    assert cw.summary["share_losers"] == 0.0
    _, cwg = published_runs["baseline", "global"]
    assert cwg.summary["acr_percent"] == pytest.approx(
        PUBLISHED["baseline", "global"]["acr"], abs=0.01
    )
    for key, (_, w) in published_runs.items():
        s = w.summary
        # the EV and the Lucas measure agree in sign wherever the EV is defined
        assert s["cev"]["ev_sign_agreement_share"] == 1.0, key
        assert s["cev"]["sign_matches_value_change"], key
        assert s["ev"]["max_residual_estimate"] < 1e-3, key


@pytest.mark.slow
def test_published_mean_gains_baseline(published_runs):
    """The paper's baseline welfare (about 1.35% mean, 2.9% / 0.65% for the poorest /
    richest expenditure quintile; 1.97% global), within the published ACR's own distance
    from ours (0.02): the borrowers at the limit with negative income (first root above 1)
    carry the poorest quintile's gain."""
    for key in (("baseline", "unilateral"), ("baseline", "global")):
        pub, s = PUBLISHED[key], published_runs[key][1].summary
        assert s["mean_gain_percent"] == pytest.approx(pub["mean"], abs=0.05), key
        assert s["ev"]["undefined_states"] == 0, key
        if "q1" in pub:
            assert s["quintile_gain_percent"]["Q1"] == pytest.approx(pub["q1"], abs=0.15)
            assert s["quintile_gain_percent"]["Q5"] == pytest.approx(pub["q5"], abs=0.05)
    ev = published_runs["baseline", "unilateral"][1].ev
    assert ev.nonmonotone.sum() > 0 and np.all(ev.lam[ev.nonmonotone] > 1.0)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "The log model's published mean gains (0.21% unilateral, 0.44% global) lie below its "
        "own ACR (0.30%, 0.52%), which is every log household's price-index gain (Proposition "
        "3); ours (0.47%, 0.74%) lie above it: 70% of US households borrow, and a borrower's EV "
        "exceeds its Lucas gain. 0.21% is below the EV of every state (smallest 0.22%). No "
        "definition tried reproduces them (Lucas 0.35, utilitarian EV 0.46, utilitarian EV with "
        "the new distribution 0.36, labor income only 0.36, floor at d = 1 0.46, the start of "
        "the transition path +0.01). See hatrade.welfare.ev's docstring."
    ),
)
def test_published_log_model_gains(published_runs):
    for key in (("log", "unilateral"), ("log", "global")):
        s = published_runs[key][1].summary
        assert s["mean_gain_percent"] == pytest.approx(PUBLISHED[key]["mean"], abs=0.05), key
