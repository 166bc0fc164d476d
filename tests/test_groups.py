"""One definition of the income and expenditure groups (hatrade.analysis.groups): the
welfare summaries, the cross-section's micro table and the calibration's home-share gap
weight the same households."""

from __future__ import annotations

import numpy as np
import pytest

import hatrade
from hatrade.analysis.counterfactual import Scenario, run_counterfactual
from hatrade.analysis.cross_section import cross_section, micro_table
from hatrade.analysis.groups import (
    INCOME_GROUPS,
    QUINTILES,
    group_weights,
    income_fractions,
    quantile_weights,
)
from hatrade.calibration.calibrate import GAP_GROUPS, income_group_fractions
from hatrade.welfare import country_welfare, expenditure_quintiles, income_groups
from smallworld import small_household, small_world


def test_ties_are_split_by_mass():
    """A block of equal values straddling a boundary is split in proportion to mass (not
    in state order): both states of the tied block get the same fraction."""
    values = np.array([1.0, 1.0, 2.0, 2.0])
    mass = np.array([0.1, 0.4, 0.3, 0.2])
    w = group_weights(values, mass, 0.0, 0.2)
    np.testing.assert_allclose(w, [0.04, 0.16, 0.0, 0.0], rtol=0, atol=1e-15)
    W = quantile_weights(values, mass, QUINTILES)
    np.testing.assert_allclose(sum(W.values()), mass, rtol=0, atol=1e-15)
    np.testing.assert_allclose([x.sum() for x in W.values()], 0.2, rtol=0, atol=1e-15)


@pytest.fixture(scope="module")
def small():
    base = hatrade.solve_equilibrium(small_world(), small_household(), solve_for="R", R_guess=1.02)
    cut = run_counterfactual(base, Scenario(importer="H", trade_cost_change=-0.1))
    return base, cut, country_welfare(cut, country="H"), cross_section(base, "H")


def test_welfare_and_micro_table_use_the_same_groups(small):
    base, _, cw, xs = small
    t = xs.table
    mass = t["mass"].to_numpy()
    # the weights, group by group: welfare's against the micro table's
    _, Wi = income_groups(base, "H")
    assert list(Wi) == list(INCOME_GROUPS)
    for name, (lo, hi) in INCOME_GROUPS.items():
        ref = group_weights(t["labor_income"].to_numpy(), mass, lo, hi)
        np.testing.assert_allclose(Wi[name], ref, rtol=0, atol=1e-15, err_msg=name)
    _, Wq = expenditure_quintiles(base, "H")
    for k, (lo, hi) in enumerate(QUINTILES.values()):
        ref = group_weights(t["expenditure"].to_numpy(), mass, lo, hi)
        np.testing.assert_allclose(Wq[k], ref, rtol=0, atol=1e-15, err_msg=f"Q{k + 1}")
    # end to end: the micro table of the welfare gains is the welfare summary
    gain = cw.table["gain_percent"].to_numpy()
    assert np.all(np.isfinite(gain))
    df = t.assign(import_share=gain)
    tab = micro_table(df).set_index("group")
    s = cw.summary
    for name in INCOME_GROUPS:
        assert tab.loc[name, "import_share"] == pytest.approx(
            s["income_group_gain_percent"][name], rel=1e-12, abs=1e-14
        ), name
    for k in range(5):
        assert tab.loc[f"q{k + 1}", "import_share"] == pytest.approx(
            s["quintile_gain_percent"][f"Q{k + 1}"], rel=1e-12, abs=1e-14
        )


def test_calibration_gap_groups_are_the_same_households(small):
    """The calibration's fixed income-state fractions give the same weights, to the
    tolerance of the stationary distribution (its z-marginal is the income chain's)."""
    base = small[0]
    lam = np.asarray(base.lam[0])
    _, Wi = income_groups(base, "H")
    for key, name in (("bottom", "bottom_20"), ("top", "top_20")):
        lo, hi = GAP_GROUPS[key]
        assert (lo, hi) == INCOME_GROUPS[name]
        f = income_group_fractions(base.income, lo, hi)
        np.testing.assert_array_equal(f, income_fractions(base.income, lo, hi))
        np.testing.assert_allclose((lam * f[None, :]).ravel(), Wi[name], rtol=0, atol=1e-10)
