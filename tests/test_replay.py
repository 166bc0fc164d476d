"""The author's stopping rule replayed with hatrade's step (hatrade.welfare.replay; issue 20).

On the small world (20 asset points, 2 income states) with log utility: the rule stops
when consumption has converged (to the converged policy within 1e-11) while the value
level still carries the error the contraction predicts, beta^n (v0 - v*), negative (the
start -1/(1-beta) is below the values); the welfare replay lowers the mean gain, and its
inversion with converged values reproduces hatrade's EV.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import hatrade
from hatrade.analysis.counterfactual import Scenario, run_counterfactual
from hatrade.core.household import initial_state, logit
from hatrade.core.params import ParameterError
from hatrade.welfare import country_welfare, household_problem
from hatrade.welfare.replay import (
    StoppingRule,
    converged_values,
    node_roots,
    replay_welfare,
    stopping_rule_values,
)
from smallworld import small_household, small_world


@pytest.fixture(scope="module")
def log_cut():
    base = hatrade.solve_equilibrium(
        small_world(), small_household(gamma=1.0), solve_for="R", R_guess=1.02
    )
    return run_counterfactual(base, Scenario(importer="H", trade_cost_change=-0.1))


@pytest.fixture(scope="module")
def replay(log_cut):
    return replay_welfare(log_cut, "H", spacing=5e-4, low=0.98, high=1.06)


def test_rule_stops_on_consumption_with_the_predicted_value_error(log_cut):
    """Consumption as converged; the value level off by beta^n (V0 - V*) (within 10%),
    the same in every state (a level error), and negative under log utility."""
    with jax.enable_x64(True):
        prm, _ = household_problem(log_cut.baseline, "H")
        V_rule, c_rule, n, dc = stopping_rule_values(prm, 1e-12, 500)
        V_conv, c_conv, _ = converged_values(prm, 1e-12, 5000)
        V0 = logit(initial_state(prm).v, prm)[1]
        _, _, n_max, _ = stopping_rule_values(prm, 1e-12, 500, "max")
    n = int(n)
    assert n < 500 and float(dc) < 1e-12
    assert int(n_max) <= n  # the Euclidean norm of the change is at least its largest entry
    assert np.max(np.abs(np.asarray(c_rule - c_conv))) < 1e-10
    err = np.asarray(V_rule - V_conv)
    w = np.asarray(log_cut.baseline.lam[0])
    predicted = float(prm.beta) ** n * float(np.sum(w * np.asarray(V0 - V_conv)))
    assert predicted < 0 and np.all(err < 0)
    assert np.sum(w * err) == pytest.approx(predicted, rel=0.1)
    assert np.ptp(err) < 1e-3 * np.max(np.abs(err))


def test_replay_lowers_the_log_models_gain(replay):
    s = replay.summary()
    assert not replay.hit_max_iter
    assert np.all(np.isfinite(replay.lam_rule)) and np.all(np.isfinite(replay.lam_converged))
    # the new equilibrium's values stop further below their fixed point than the old ones
    assert s["value_error_new_mean"] < s["value_error_old_mean_at_lambda_1"] < 0
    assert replay.mean_gain_rule < replay.mean_gain_converged - 1e-3


@pytest.mark.slow  # compiles the EV machinery (about 10 s on a quiet machine)
def test_replay_inversion_reproduces_hatrades_ev(log_cut, replay):
    """With converged values the node inversion gives hatrade's EV: the mean within 0.001
    points, every state's Lambda within 1e-4 (the EV's own interpolation tolerance)."""
    official = country_welfare(log_cut, country="H")
    assert replay.mean_gain_converged == pytest.approx(
        official.summary["mean_gain_percent"], abs=1e-3
    )
    ok = official.ev.defined
    assert np.max(np.abs(replay.lam_converged[ok] - official.ev.lam[ok])) < 1e-4


def test_node_roots_on_known_functions():
    lams = 1.0 + np.arange(-20, 41) * 1e-3
    # increasing: log(lam); a gain, a loss, no change
    V = np.log(lams)[:, None] * np.ones((1, 3))
    target = np.log([1.0123, 0.995, 1.0])
    root = node_roots(lams, V, target)
    np.testing.assert_allclose(root, [1.0123, 0.995, 1.0], atol=1e-7)
    # a borrower: V falls, then rises above the target; the first root above one
    W = (lams - 1.01) ** 2
    assert node_roots(lams, W[:, None], np.array([1e-4 + 1e-12]))[0] == pytest.approx(
        1.02, abs=1e-6
    )
    # no crossing in the node range: undefined
    assert np.isnan(node_roots(lams, V, np.array([np.log(1.5)]))[0])


@pytest.mark.parametrize(
    "field, value",
    [("tol_new", 0.0), ("tol_old", float("nan")), ("max_iter", 0), ("norm", "sup")],
)
def test_stopping_rule_rejects_bad_values(field, value):
    with pytest.raises(ParameterError, match=f"^{field} = "):
        StoppingRule(**{field: value})


def test_reproduction_table_quotes_the_replay():
    """The log model's two mean rows, when they disagree, quote the stored replay."""
    from hatrade.data.published import AUTHOR_RULE_REPLAY, WELFARE_GAP_NOTE
    from hatrade.replicate import paper_setup
    from hatrade.replicate.table import reproduction_table

    welfare = {
        kind: {"log": {"mean_gain_percent": m}, "baseline": {"mean_gain_percent": b}}
        for kind, m, b in (("unilateral", 0.4705, 1.3373), ("global", 0.7390, 1.9605))
    }
    rep = reproduction_table(paper_setup(), {"welfare": welfare}).set_index("quantity")
    for kind in ("unilateral", "global"):
        note = rep.loc[f"USA mean welfare gain (%), {kind}, log", "note"]
        value = AUTHOR_RULE_REPLAY[f"welfare.{kind}.log.mean"]
        assert f"gives {value:.3f}" in note and "docs/differences.md" in note
        assert rep.loc[f"USA mean welfare gain (%), {kind}, baseline", "note"] == ""
    assert "docs/differences.md" in WELFARE_GAP_NOTE
