"""Issue 3, the rest: psi_slope as a 47th calibrated parameter (home-share gap), the outer
loop on micro moments, robustness grids on Dask, and input checks.

All in a three-country world with a coarse grid (n_a = 20). The functions share compiled
code (the same shapes and static arguments), so the module stays fast.
"""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hatrade import Household, solve_equilibrium
from hatrade.analysis.cross_section import micro_table
from hatrade.calibration.calibrate import (
    GAP_GROUPS,
    CalibrationError,
    GravitySetup,
    _composite_jacobian,
    block_jacobian_psi,
    calibrate,
    home_share_gaps,
    income_group_fractions,
    model_moments,
    world_from_params,
)
from hatrade.calibration.grid import calibration_grid, grid_points, parse_grid
from hatrade.calibration.micro import (
    MicroTarget,
    calibrate_micro,
    micro_moments,
    parse_micro_targets,
)
from hatrade.cli import app
from hatrade.core.markets import Layout
from hatrade.core.params import ParameterError
from hatrade.io.tasks import dask_available

COUNTRIES = ("AAA", "BBB", "CCC")
PAIRS = [(i, j) for i in range(3) for j in range(3) if i != j]
NEAR = {(0, 1), (1, 0), (1, 2)}
TRUE = np.array(
    [
        0.1,
        -0.2,  # log TFP of AAA, BBB (CCC = 1)
        0.3,
        -0.1,  # theta_m of AAA, BBB (CCC = -sum)
        -2.0,
        -3.0,
    ]
)  # near, far
LABOR = np.array([1.0, 0.6, 1.5])
HH = Household(n_a=20, psi_slope=0.5)


def small_setup() -> GravitySetup:
    X = np.array([[float(p in NEAR), float(p not in NEAR)] for p in PAIRS])
    return GravitySetup.build(
        COUNTRIES, [p[0] for p in PAIRS], [p[1] for p in PAIRS], X, ("near", "far"), n_bins=2
    )


@pytest.fixture(scope="module")
def truth():
    setup = small_setup()
    eq = solve_equilibrium(world_from_params(TRUE, setup, LABOR), HH, solve_for="beta", R=1.01)
    return setup, eq, model_moments(eq, setup)


def test_home_share_gap_is_the_micro_table_difference(truth):
    """The moment equals the micro table's bottom-20 minus top-20 import shares, i.e. top
    minus bottom home shares, and the income groups have their nominal masses."""
    _, eq, _ = truth
    for lo_hi in GAP_GROUPS.values():
        f = income_group_fractions(eq.income, *lo_hi)
        assert abs(f @ eq.income.dist - 0.2) < 1e-12
    gaps = home_share_gaps(eq)
    for i, c in enumerate(COUNTRIES):
        spend = eq.policies.pi[i] * eq.policies.c[i] * eq.p[i]
        lam = eq.lam[i]
        inc = eq.prices.w[i] * np.broadcast_to(eq.income.z, lam.shape)
        df = pd.DataFrame(
            {
                "labor_income": inc.ravel(),
                "expenditure": spend.sum(-1).ravel(),
                "import_share": (1 - spend[..., i] / spend.sum(-1)).ravel(),
                "elasticity": 0.0,
                "mpc": 0.0,
                "assets": 0.0,
                "mass": lam.ravel(),
            }
        )
        t = micro_table(df).set_index("group")
        ref = t.loc["bottom_20", "import_share"] - t.loc["top_20", "import_share"]
        assert abs(gaps[c] - ref) < 1e-9
    assert gaps["AAA"] > 0.01  # psi_slope > 0: the rich buy more at home


def test_psi_column_and_gap_row_match_finite_differences(truth):
    """d(moments, gap)/d psi_slope and d gap/d theta through the equilibrium (block Jacobian
    with the psi_slope direction + IFT) against re-solved equilibria."""
    setup, eq, _ = truth
    layout = Layout(
        M=3,
        financial="globalization",
        solve_for="beta",
        tariffs=False,
        R_fixed=1.01,
        beta_fixed=None,
    )
    bj, pb = block_jacobian_psi(eq)
    x0 = np.append(TRUE, HH.psi_slope)
    Eu, Et, mu, mt = _composite_jacobian(eq, bj, setup, x0, layout, pb, 0)
    total = mt - mu @ np.linalg.solve(Eu, Et)
    assert total.shape == (7, 7)

    def moments(x):
        e = solve_equilibrium(
            world_from_params(x[:6], setup, LABOR),
            HH.replace(psi_slope=x[6]),
            solve_for="beta",
            R=1.01,
            wages=eq.prices.w,
            beta_guess=eq.beta,
            state=eq.state,
            tol=1e-12,
            hh_tol=1e-12,
        )
        return np.append(model_moments(e, setup), home_share_gaps(e)["AAA"])

    h = 1e-5
    for k in (6, 4):  # psi_slope, a distance bin
        xp, xm = x0.copy(), x0.copy()
        xp[k] += h
        xm[k] -= h
        fd = (moments(xp) - moments(xm)) / (2 * h)
        np.testing.assert_allclose(total[:, k], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    assert abs(total[-1, 6]) > 0.1  # the gap moves with psi_slope: it identifies it


def test_psi_slope_recovered_with_the_gravity_parameters(truth, tmp_path):
    setup, eq, targets = truth
    gap = float(home_share_gaps(eq)["AAA"])
    start = TRUE * (1 + 0.05 * np.where(np.arange(TRUE.size) % 2 == 0, 1.0, -1.0))
    ck = tmp_path / "ckpt.json"
    res = calibrate(
        start,
        HH.replace(psi_slope=0.3),
        setup=setup,
        targets=targets,
        labor=LABOR,
        wages=eq.prices.w,
        beta_guess=eq.beta,
        tol=1e-10,
        home_share_gap=gap,
        gap_country="AAA",
        checkpoint=ck,
    )
    assert res.converged
    assert abs(res.psi_slope - HH.psi_slope) < 1e-6
    assert res.household.psi_slope == res.psi_slope
    np.testing.assert_allclose(res.params, TRUE, atol=1e-6)
    table = res.moment_table(setup)
    assert table["moment"].iloc[-1] == "home_share_gap_AAA"
    assert abs(table["difference"].iloc[-1]) < 1e-10
    assert json.loads(ck.read_text())["best"]["psi_slope"] == res.psi_slope
    # resuming a psi checkpoint without the gap target is refused
    with pytest.raises(ParameterError, match="psi_slope"):
        calibrate(start, HH, setup=setup, targets=targets, labor=LABOR, checkpoint=ck, resume=True)


def test_outer_loop_recovers_sigma_eps_and_resumes(truth, tmp_path):
    """sigma_eps from its own aggregate elasticity (outer Broyden), psi_slope from its own
    home-share gap (inner Newton), the 6 gravity parameters from their moments."""
    setup, eq, targets = truth
    micro = micro_moments(
        eq, [MicroTarget("elasticity", 0.0, "AAA"), MicroTarget("home_share_gap", 0.0, "AAA")]
    )
    tg = [
        {"name": "elasticity", "value": micro["elasticity_AAA"], "country": "AAA"},
        {"name": "home_share_gap", "value": micro["home_share_gap_AAA"], "country": "AAA"},
    ]
    ck = tmp_path / "micro.json"
    kw = dict(
        setup=setup,
        gravity_targets=targets,
        labor=LABOR,
        wages=eq.prices.w,
        beta_guess=eq.beta,
        tol=1e-9,
        inner_tol=1e-10,
        checkpoint=ck,
    )
    start = HH.replace(sigma_eps=0.36, psi_slope=0.4)
    # one outer step is not enough: a clear error, the best point and Jacobian saved
    with pytest.raises(CalibrationError, match="best max .* sigma_eps = "):
        calibrate_micro(TRUE, start, tg, ["sigma_eps", "psi_slope"], max_iter=1, **kw)
    saved = json.loads(ck.read_text())
    assert saved["step"] == 1 and np.shape(saved["B"]) == (1, 1)
    assert saved["best"]["residual"] < 0.1
    # resuming continues from there with the saved secant Jacobian
    res = calibrate_micro(TRUE, start, tg, ["sigma_eps", "psi_slope"], resume=True, **kw)
    assert res.converged
    assert sum(r["kind"].startswith("jacobian") for r in res.history) == 1
    assert abs(res.params["sigma_eps"] - HH.sigma_eps) < 1e-6
    assert abs(res.params["psi_slope"] - HH.psi_slope) < 1e-6
    np.testing.assert_allclose(res.inner.params, TRUE, atol=1e-6)
    assert len(res.history) <= 10  # inner calibrations, both runs
    assert set(res.table()["target"]) == {"elasticity", "home_share_gap"}
    saved = json.loads(ck.read_text())
    assert saved["params"] == ["sigma_eps"] and len(saved["history"]) == len(res.history)
    # resume: the saved point is already a solution, so one inner calibration confirms it
    again = calibrate_micro(TRUE, start, tg, ["sigma_eps", "psi_slope"], resume=True, **kw)
    assert again.evaluations == 1 and again.converged
    assert abs(again.params["sigma_eps"] - res.params["sigma_eps"]) < 1e-9


@pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed")
def test_grid_on_dask_saves_each_point_and_resumes(truth, tmp_path):
    setup, eq, targets = truth
    gap = float(home_share_gaps(eq)["AAA"])
    kw = dict(
        setup=setup,
        targets=targets,
        labor=LABOR,
        wages=eq.prices.w,
        beta_guess=eq.beta,
        tol=1e-9,
        home_share_gap=gap,
        gap_country="AAA",
        workers=2,
        processes=False,
    )
    seen = []
    df = calibration_grid(
        ["sigma_eps=0.33,0.335"],
        TRUE,
        HH,
        tmp_path / "g",
        progress=lambda d, n, row: seen.append(row),
        **kw,
    )
    assert list(df["status"]) == ["ok", "ok"] and df["converged"].all()
    assert len(seen) == 2 and not any(r.get("resumed") for r in seen)
    r0 = json.loads((tmp_path / "g" / "points" / "sigma_eps-0.33" / "result.json").read_text())
    np.testing.assert_allclose(r0["params"], TRUE, atol=1e-7)
    assert abs(r0["psi_slope"] - HH.psi_slope) < 1e-7
    r1 = json.loads((tmp_path / "g" / "points" / "sigma_eps-0.335" / "result.json").read_text())
    assert r1["household"]["sigma_eps"] == 0.335 and r1["status"] == "ok"
    assert r1["iterations"] >= 1 and r1["residual"] < 1e-9  # it had to move
    assert pd.read_csv(tmp_path / "g" / "grid_summary.csv").shape[0] == 2
    # the second run finds both points done and computes nothing
    mtimes = sorted(p.stat().st_mtime_ns for p in (tmp_path / "g" / "points").rglob("result.json"))
    seen.clear()
    df2 = calibration_grid(
        ["sigma_eps=0.33,0.335"],
        TRUE,
        HH,
        tmp_path / "g",
        progress=lambda d, n, row: seen.append(row),
        **kw,
    )
    assert len(seen) == 2 and all(r.get("resumed") for r in seen)
    assert list(df2["status"]) == ["ok", "ok"]
    assert (
        sorted(p.stat().st_mtime_ns for p in (tmp_path / "g" / "points").rglob("result.json"))
        == mtimes
    )


def test_bad_inputs_fail_early_naming_the_field(truth, tmp_path):
    setup, eq, targets = truth
    kw = dict(setup=setup, gravity_targets=targets, labor=LABOR)
    with pytest.raises(ParameterError, match="elasticity_ratio"):
        calibrate_micro(
            TRUE, HH, [MicroTarget("elasticity_ratio", -1.0, "AAA")], ["sigma_eps"], **kw
        )
    with pytest.raises(ParameterError, match="sigma_eps"):
        calibrate_micro(
            TRUE,
            HH.replace(sigma_eps=7.0),
            [MicroTarget("elasticity", -4.0, "AAA")],
            ["sigma_eps"],
            **kw,
        )
    with pytest.raises(ParameterError, match="beta"):
        calibrate_micro(TRUE, HH, [MicroTarget("elasticity", -4.0, "AAA")], ["beta"], **kw)
    with pytest.raises(ParameterError, match="as many targets as"):
        calibrate_micro(
            TRUE, HH, [MicroTarget("elasticity", -4.0, "AAA")], ["sigma_eps", "gamma"], **kw
        )
    with pytest.raises(ParameterError, match="country"):
        calibrate_micro(TRUE, HH, [MicroTarget("elasticity", -4.0, "USA")], ["sigma_eps"], **kw)
    with pytest.raises(ParameterError, match="home_share_gap"):
        calibrate(
            TRUE,
            HH,
            setup=setup,
            targets=targets,
            labor=LABOR,
            home_share_gap=1.5,
            gap_country="AAA",
        )
    with pytest.raises(ParameterError, match="gap_country"):
        calibrate(
            TRUE,
            HH,
            setup=setup,
            targets=targets,
            labor=LABOR,
            home_share_gap=0.1,
            gap_country="XXX",
        )
    # grids
    for spec, field in (
        ("sigma_eps:0.3", "malformed"),
        ("sigma_eps=0.3,abc", "sigma_eps"),
        ("rho=0.3", "rho"),
        ("gamma=", "gamma"),
    ):
        with pytest.raises(ParameterError, match=field):
            parse_grid([spec])
    with pytest.raises(ParameterError, match="sigma_eps"):
        grid_points(["sigma_eps=0.3,-0.1"], HH)
    assert [n for n, _ in grid_points(["gamma=1,2", "sigma_eps=0.3"], HH)] == [
        "gamma-1.0_sigma_eps-0.3",
        "gamma-2.0_sigma_eps-0.3",
    ]
    with pytest.raises(ParameterError, match="psi_slope"):
        calibration_grid(
            ["psi_slope=0.1,0.2"],
            TRUE,
            HH,
            tmp_path / "x",
            setup=setup,
            home_share_gap=0.05,
            gap_country="AAA",
            executor="serial",
        )
    # micro-targets files
    good = {"params": ["gamma"], "target": [{"name": "elasticity_gap", "value": -0.5}]}
    assert parse_micro_targets(good)["targets"][0].country == "USA"
    for raw, field in (
        ({**good, "options": {"speed": 1}}, "speed"),
        ({**good, "target": [{"name": "mpc_gap", "value": 0.1}]}, "mpc_gap"),
        ({**good, "start": {"gamma": -1.0}}, "gamma"),
        ({**good, "params": ["phi"]}, "phi"),
        ({**good, "target": [{"name": "elasticity", "value": "x"}]}, "value"),
    ):
        with pytest.raises(ParameterError, match=field):
            parse_micro_targets(raw, source="m.toml")
    # the command line checks before solving: exit 2, one message naming the field
    res = CliRunner().invoke(
        app, ["calibrate", "--grid", "sigma_eps=0.3,abc", "--out", str(tmp_path / "cli")]
    )
    assert res.exit_code == 2 and "sigma_eps" in res.output
    bad = tmp_path / "m.toml"
    bad.write_text(
        'params = ["sigma_eps"]\n[[target]]\nname = "elasticity"\nvalue = -4.2\ncountry = "XYZ"\n'
    )
    res = CliRunner().invoke(
        app, ["calibrate", "--micro-targets", str(bad), "--out", str(tmp_path / "cli2")]
    )
    assert res.exit_code == 2 and "XYZ" in res.output
