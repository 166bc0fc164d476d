r"""Peer check against gegravity (issue 19, item 5; docs/own-data.md "Peer check").

With log utility and financial autarky, every household spends its whole income and its
choice probabilities are :math:`\pi_{ij} \propto p_{ij}^{-1/\sigma_\epsilon}` whatever its
state (docs/model.md, Proposition 3), so country :math:`i` spends :math:`Y_i` with shares
:math:`s_{ij} = (d_{ij} w_j/A_j)^{-\theta} / \sum_k (d_{ik} w_k/A_k)^{-\theta}`,
:math:`\theta = 1/\sigma_\epsilon`: Armington-CES structural gravity with balanced trade and
elasticity of substitution :math:`\sigma = 1 + \theta`, which is what gegravity's
``OneSectorGE`` solves. Given hatrade's own baseline trade (balanced), trade costs entering
gegravity as :math:`t_{ij}^{1-\sigma} = \exp(-\theta \log d_{ij})` and the same cost change,
the two must agree on the changes in factory-gate prices :math:`w_j/A_j` (up to the
numeraire: hatrade's mean wage is one, gegravity fixes a reference importer's price index,
so ratios across countries are compared) and in trade shares.

gegravity 0.3's full-GE equations (``OneSectorGE._calculate_full_ge``, ``_full_ge``) keep
the output and expenditure shares :math:`Y_i/Y`, :math:`E_j/Y` at their baseline values in
the multilateral-resistance and price equations, although output moves with the factory-gate
price (:math:`Y_i' = p_i' Y_i`): a first-order difference from the exact counterfactual
(here about 14% of the price changes, proportional to the shock). hatrade agrees with an
independent hat-algebra solve to 1e-9, with gegravity's baseline to 1e-8, and with
gegravity's counterfactual to 1e-8 once the shares in its equations move with the prices
(:func:`_full_ge_with_updated_shares`, a patch of that one function for the test); the
comparison with gegravity as published is kept as a strict xfail.

Not comparable: welfare (gegravity's is a representative consumer's real expenditure;
hatrade's households differ and its welfare measures are consumption equivalents over
their distribution), anything with savings, rates or beta, and non-log preferences
(gamma != 1 or psi_slope != 0 break the aggregation).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from hatrade import Household, World, solve_equilibrium

ge = pytest.importorskip("gegravity")

COUNTRIES = ["AAA", "BBB", "CCC", "DDD"]
SIGMA_EPS = 0.25  # theta = 4, sigma = 5
D0 = np.array(
    [
        [1.0, 1.5, 1.8, 2.1],
        [1.6, 1.0, 1.4, 1.9],
        [1.7, 1.3, 1.0, 1.5],
        [2.0, 1.8, 1.6, 1.0],
    ]
)


def _change(d):
    """10% cut of AAA's import costs and a 20% rise of CCC->DDD (importer DDD row)."""
    d1 = d.copy()
    d1[0, 1:] *= 0.9
    d1[3, 2] *= 1.2
    return d1


@pytest.fixture(scope="module")
def hatrade_pair():
    hh = Household(gamma=1.0, sigma_eps=SIGMA_EPS, psi_slope=0.0, beta=0.92, n_a=20)
    hh = hh.replace(n_perm=2, n_iid=2)
    kw = dict(countries=COUNTRIES, tfp=[1.0, 0.8, 1.2, 0.9], labor=[1.0, 0.6, 0.4, 0.8])
    w0 = World(d=D0, financial="autarky", **kw)
    w1 = World(d=_change(D0), financial="autarky", **kw)
    eq0 = solve_equilibrium(w0, hh)
    eq1 = solve_equilibrium(w1, hh, wages=eq0.prices.w, state=eq0.state)
    return eq0, eq1


def _full_ge_with_updated_shares(original):
    """gegravity's full-GE equations with the output and expenditure shares moved with the
    factory-gate prices (endowment economy: Y_i' = p_i Y_i, E_j' = Y_j' when balanced)."""

    def full_ge(x, ge_params):
        n = ge_params["number_of_countries"]
        y = np.asarray(ge_params["output_shr"], float)
        p = np.asarray(x[2 * n - 1 :], float)
        ratio = (y * p / np.sum(y * p)) / y
        params = dict(ge_params)
        params["cost_out_shr"] = ge_params["cost_out_shr"] * ratio[:, None]  # exporter rows
        params["cost_exp_shr"] = ge_params["cost_exp_shr"] * ratio[None, :]  # importer columns
        params["output_shr"] = list(y * ratio)
        return original(x, params)

    return full_ge


def _gegravity(X0: np.ndarray, update_shares: bool = False):
    """gegravity's OneSectorGE on baseline trade X0 (importer rows) and the same change."""
    rows = []
    for i, imp in enumerate(COUNTRIES):
        for j, exp in enumerate(COUNTRIES):
            rows.append(
                dict(
                    exporter=exp,
                    importer=imp,
                    year="2000",
                    trade=X0[i, j],
                    Y=X0[:, j].sum(),
                    E=X0[i].sum(),
                    lnd=np.log(D0[i, j]),
                )
            )
    base = pd.DataFrame(rows)
    exper = base.copy()
    d1 = _change(D0)
    pos = {c: k for k, c in enumerate(COUNTRIES)}
    exper["lnd"] = [np.log(d1[pos[i], pos[j]]) for i, j in zip(base.importer, base.exporter)]
    theta = 1.0 / SIGMA_EPS
    cc = ge.CostCoeffs(
        estimates=pd.DataFrame({"var": ["lnd"], "coeff": [-theta]}),
        identifier_col="var",
        coeff_col="coeff",
    )
    bd = ge.BaselineData(
        base,
        imp_var_name="importer",
        exp_var_name="exporter",
        year_var_name="year",
        trade_var_name="trade",
        expend_var_name="E",
        output_var_name="Y",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ge.OneSectorGE(
            bd,
            year="2000",
            expend_var_name="E",
            output_var_name="Y",
            cost_coeff_values=cc,
            cost_variables=["lnd"],
            reference_importer="DDD",
            sigma=1.0 + theta,
            quiet=True,
        )
        model.build_baseline(omr_rescale=1, mr_tolerance=1e-14, mr_max_iter=10000)
        model.define_experiment(exper)
        module = sys.modules[type(model).__module__]
        original = module._full_ge
        if update_shares:
            module._full_ge = _full_ge_with_updated_shares(original)
        try:
            model.simulate(ge_tolerance=1e-14, ge_max_iter=10000)
        finally:
            module._full_ge = original
    return model


def _matrix(series: pd.Series) -> np.ndarray:
    """(exporter, importer)-indexed values as an importer-row matrix."""
    out = np.empty((len(COUNTRIES), len(COUNTRIES)))
    for (exp, imp), v in series.items():
        out[COUNTRIES.index(imp), COUNTRIES.index(exp)] = v
    return out


def test_log_autarky_is_balanced_armington(hatrade_pair):
    """Proposition 3 on the baseline: spending = output and CES shares with theta = 1/sigma."""
    eq0, _ = hatrade_pair
    X = np.asarray(eq0.spending)
    Y = np.asarray(eq0.aggregates["Y"])
    np.testing.assert_allclose(X.sum(axis=1), Y, rtol=1e-9)
    np.testing.assert_allclose(X.sum(axis=0), Y, rtol=1e-9)
    p = D0 * (eq0.prices.w / np.asarray(eq0.world.tfp))[None, :]
    s = p ** (-1 / SIGMA_EPS)
    np.testing.assert_allclose(eq0.trade_shares, s / s.sum(axis=1, keepdims=True), rtol=1e-9)


def _hat_algebra(X0, dhat, theta):
    """Exact Armington counterfactual (factory-gate price changes, new shares) by hat
    algebra, solved independently with scipy."""
    from scipy.optimize import root

    s0 = X0 / X0.sum(axis=1, keepdims=True)
    Y0 = X0.sum(axis=0)

    def shares(lw):
        w = np.exp(np.append(lw, 0.0))
        num = s0 * (dhat * w[None, :]) ** (-theta)
        return w, num / num.sum(axis=1, keepdims=True)

    def F(lw):
        w, s1 = shares(lw)
        Y1 = w * Y0
        return ((s1 * Y1[:, None]).sum(axis=0) - Y1)[1:] / Y1[1:]

    sol = root(F, np.zeros(len(Y0) - 1), method="hybr", tol=1e-14)
    assert np.abs(F(sol.x)).max() < 1e-12
    w, s1 = shares(sol.x)
    return w, s1


def test_counterfactual_is_exact_hat_algebra(hatrade_pair):
    eq0, eq1 = hatrade_pair
    w, s1 = _hat_algebra(np.asarray(eq0.spending), _change(D0) / D0, 1.0 / SIGMA_EPS)
    h = np.asarray(eq1.prices.w) / np.asarray(eq0.prices.w)
    np.testing.assert_allclose(h / h[-1], w / w[-1], rtol=1e-9)
    np.testing.assert_allclose(eq1.trade_shares, s1, rtol=1e-9)


def _compare(eq0, eq1, model, rtol):
    res = model.bilateral_trade_results
    base = _matrix(res["baseline modeled trade"])
    fgp = model.factory_gate_prices["experiment factory gate price"]
    g = fgp.reindex(COUNTRIES).to_numpy(float)
    h = np.asarray(eq1.prices.w) / np.asarray(eq0.prices.w)  # TFP unchanged
    np.testing.assert_allclose(g / g[-1], h / h[-1], rtol=rtol)
    new = _matrix(res["experiment trade"])
    s_ge = new / new.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(s_ge, eq1.trade_shares, rtol=rtol)
    ds_ge = s_ge / (base / base.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ds_ge, eq1.trade_shares / eq0.trade_shares, rtol=rtol)


@pytest.fixture(scope="module")
def ge_models(hatrade_pair):
    """gegravity as published and with the share update (:func:`_full_ge_with_updated_shares`)."""
    X0 = np.asarray(hatrade_pair[0].spending)
    return _gegravity(X0), _gegravity(X0, update_shares=True)


def test_gegravity_baseline_is_hatrade_trade(hatrade_pair, ge_models):
    """gegravity's baseline (multilateral resistances from hatrade's Y, E and costs)
    reproduces hatrade's trade matrix."""
    X0 = np.asarray(hatrade_pair[0].spending)
    for model in ge_models:
        base = _matrix(model.bilateral_trade_results["baseline modeled trade"])
        np.testing.assert_allclose(base, X0, rtol=1e-8)


def test_counterfactual_agrees_with_gegravity(hatrade_pair, ge_models):
    """gegravity's full-GE system with the output and expenditure shares updated by the
    new factory-gate prices agrees with hatrade to solver precision."""
    _compare(*hatrade_pair, ge_models[1], 1e-8)


@pytest.mark.xfail(
    strict=True,
    reason="gegravity 0.3 holds output and expenditure shares at baseline values in its "
    "full-GE equations, a first-order difference (about 14% of the price changes here)",
)
def test_counterfactual_agrees_with_unmodified_gegravity(hatrade_pair, ge_models):
    _compare(*hatrade_pair, ge_models[0], 1e-3)
