"""``hatrade transition`` (issue 17, item 4): the folder it writes, and bad input refused
before any solve with nothing written.

One end-to-end run on a two-country world (n_a = 20, 2 x 2 income states, T = 40) is shared
at module scope; the input checks never reach a solve.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hatrade.analysis.transition import PATHS_COLUMNS
from hatrade.cli import app
from hatrade.welfare.transition import TRANSITION_WELFARE_COLUMNS

T = 40

TINY_TOML = """
[household]
beta = 0.93
n_a = 20

[world]
countries = ["AAA", "BBB"]
tfp = [1.0, 0.8]
labor = [1.0, 0.5]
trade_costs = [[1.0, 1.3], [1.2, 1.0]]

[income]
n_perm = 2
n_iid = 2

[solve]
R_guess = 1.02
"""


def _config(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The CLI's run, with the engine's transition and welfare captured."""
    import hatrade.welfare.transition as wt

    base = tmp_path_factory.mktemp("transition-cli")
    cfg = _config(base)
    out = base / "out"
    seen = {}
    real = wt.transition_welfare

    def capture(tr, country, **kw):
        seen["transition"], seen["welfare"] = tr, real(tr, country, **kw)
        return seen["welfare"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wt, "transition_welfare", capture)
        res = CliRunner().invoke(
            app,
            ["transition", "--config", str(cfg), "--importer", "AAA", "-d", "-0.10"]
            + ["--periods", str(T), "--out", str(out)],
        )
    return SimpleNamespace(res=res, out=out, cfg=cfg, base=base, **seen)


def test_cli_writes_the_transition_folder(run):
    assert run.res.exit_code == 0, run.res.output
    names = sorted(p.name for p in run.out.iterdir())
    assert names == sorted(
        [
            ".hatrade-manifest.json",
            "summary.json",
            "paths.csv",
            "welfare.csv",
            "paths.png",
            "gains_by_quintile_AAA.png",
        ]
    )
    manifest = json.loads((run.out / ".hatrade-manifest.json").read_text())
    assert manifest["kind"] == "transition"
    s = json.loads((run.out / "summary.json").read_text())
    assert s["kind"] == "transition" and s["periods"] == T and s["news_date"] == 0
    assert s["scenario"]["importer"] == "AAA" and s["scenario"]["trade_cost_change"] == -0.1
    conv = s["convergence"]
    assert conv["converged"] and conv["residual"] < 1e-8 and conv["iterations"] >= 1
    assert s["hatrade_version"] and s["created"] and "household" in s["parameters"]
    assert set(s["welfare"]) == {"AAA"}
    # paths: the documented columns, every period and country, ending at the new steady state
    paths = pd.read_csv(run.out / "paths.csv")
    assert list(paths.columns) == list(PATHS_COLUMNS)
    assert len(paths) == 2 * T and sorted(set(paths["period"])) == list(range(T))
    last = paths[paths["period"] == T - 1].set_index("country")
    for c in ("AAA", "BBB"):
        assert last.loc[c, "wage"] == pytest.approx(s["steady_state"]["wages_new"][c], abs=1e-8)
        assert last.loc[c, "R"] == pytest.approx(s["R_new"][c], abs=1e-8)
    first = paths[paths["period"] == 0].set_index("country")
    assert first.loc["AAA", "R"] == pytest.approx(s["R_old"]["AAA"], abs=1e-15)
    np.testing.assert_allclose(paths.to_numpy()[:, 2:].astype(float), run.transition.paths.to_numpy()[:, 2:].astype(float), rtol=0, atol=0)  # fmt: skip


def test_cli_welfare_matches_the_engine(run):
    assert run.res.exit_code == 0, run.res.output
    wf = pd.read_csv(run.out / "welfare.csv")
    assert list(wf.columns) == list(TRANSITION_WELFARE_COLUMNS)
    eng = run.welfare.table
    assert len(wf) == len(eng) == 20 * 4
    for col in ("lambda_transition", "lambda_steady_state", "mass", "a", "z"):
        np.testing.assert_array_equal(wf[col].to_numpy(), eng[col].to_numpy())
    np.testing.assert_allclose(wf["gain_transition_percent"], 100 * (wf["lambda_transition"] - 1))
    s = json.loads((run.out / "summary.json").read_text())["welfare"]["AAA"]
    ok = wf["defined_transition"]
    mean = (wf["mass"][ok] * wf["gain_transition_percent"][ok]).sum() / wf["mass"][ok].sum()
    assert s["transition"]["mean_gain_percent"] == pytest.approx(mean, rel=1e-12)
    assert s == json.loads(json.dumps(run.welfare.summary))
    assert set(s["transition"]["quintile_gain_percent"]) == {"Q1", "Q2", "Q3", "Q4", "Q5"}
    assert "Who gains at t = 0" in run.res.stdout


# ----------------------------------------------------------------------------- bad input


def _no_solve(monkeypatch):
    import hatrade.cli.transition as cli_tr

    def no_solve(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("solved despite bad input")

    monkeypatch.setattr(cli_tr, "_solve", no_solve)


GOOD_PATH = "period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.05\n1,AAA,BBB,-0.1\n"
#: A complete table up to period 60, beyond a 40-period horizon.
BEYOND = "period,importer,exporter,trade_cost_change\n" + "".join(
    f"{t},AAA,BBB,-0.05\n" for t in range(61)
)


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.05\n2,AAA,BBB,-0.1\n",
         ["periods [1] are missing"]),
        ("period,importer,exporter,trade_cost_change\n0,AAA,USA,-0.05\n",
         ["exporter", "'USA'", "rows [2]"]),
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.05\n1,AAA,BBB,inf\n",
         ["trade_cost_change", "rows [3]", "finite"]),
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,nan\n",
         ["trade_cost_change", "rows [2]", "finite"]),
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,x\n",
         ["trade_cost_change", "rows [2]"]),
        ("period,importer,exporter,cost\n0,AAA,BBB,-0.05\n", ["unknown column", "'cost'"]),
        ("period,importer,exporter,trade_cost_change\n0.5,AAA,BBB,-0.05\n",
         ["period must be an integer", "rows [2]"]),
        ("period,importer,trade_cost_change\n0,AAA,-0.05\n", ["pair row", "importer and exporter"]),
        (GOOD_PATH.replace("-0.1", "-1.5"), ["period 1", "d <= 0"]),
        (BEYOND, ["period 60 is beyond the horizon", "--periods 80"]),
    ],
)  # fmt: skip
def test_cli_bad_path_file_exits_2_with_nothing_written(tmp_path, monkeypatch, text, pieces):
    _no_solve(monkeypatch)
    cfg = _config(tmp_path)
    f = tmp_path / "shock.csv"
    f.write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["transition", "--config", str(cfg), "--path", str(f), "-T", str(T), "--out", str(out)]
    )
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    for p in pieces:
        assert p in msg, msg
    assert len(res.output.strip().splitlines()) <= 3  # one message (wrapped)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, piece",
    [
        (["--importer", "AAA", "-d", "-0.1", "--path", "shock.csv"], "either --path or"),
        (["--path", "shock.csv", "--news-date", "3"], "--news-date is not allowed with --path"),
        (["--importer", "AAA", "-d", "-0.1", "--periods", "1"], "--periods 1"),
        (["--importer", "AAA", "-d", "-0.1", "--news-date", "40"], "--news-date 40"),
        (["--tfp", "AAA=-1.5"], "it must stay positive"),
        (["--importer", "AAA", "-d", "-0.1", "--financial", "autarky"], "financial regime"),
        (["--importer", "USA", "-d", "-0.1"], "unknown country code 'USA'"),
        (["--importer", "AAA", "-d", "-0.1", "--country", "XYZ"], "'XYZ'"),
        (["--importer", "AAA", "-d", "-0.1", "--n-nodes", "1"], "--n-nodes"),
        (["--path", "missing.csv"], "cannot read"),
        (["--path", "shock.csv", "--rebate", "labor-income"], "either --path or"),
        (["--importer", "AAA", "-d", "-0.1", "--labor-tax", "AAA=0.1", "--news-date", "3"],
         "--news-date 3 is not allowed with a change of rebate or labor_tax"),
        (["--importer", "AAA", "--rebate", "everyone"], "rebate"),
        (["--importer", "AAA", "--labor-tax", "AAA=1.5"], "labor_tax[AAA]"),
    ],
)  # fmt: skip
def test_cli_bad_options_exit_2_before_solving(tmp_path, monkeypatch, extra, piece):
    _no_solve(monkeypatch)
    cfg = _config(tmp_path)
    (tmp_path / "shock.csv").write_text(GOOD_PATH)
    extra = [str(tmp_path / e) if e.endswith(".csv") else e for e in extra]
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["transition", "--config", str(cfg), "-T", str(T), "--out", str(out), *extra]
    )
    assert res.exit_code == 2, res.output
    assert piece in " ".join(res.output.split())
    assert not out.exists()


def test_cli_instruments_reach_the_engine(tmp_path, monkeypatch):
    """--rebate and --labor-tax become the scenario's instruments (the solve itself:
    tests/test_transition_instruments.py)."""
    import hatrade.cli.transition as cli_tr
    from hatrade.core.errors import ParameterError

    seen = {}

    def capture(prog, cal_name, cfg, shock, *args):
        seen["shock"] = shock
        raise ParameterError("captured")

    monkeypatch.setattr(cli_tr, "_solve", capture)
    res = CliRunner().invoke(
        app,
        ["transition", "--config", str(_config(tmp_path)), "--importer", "AAA"]
        + ["--tariff-change", "0.05", "--rebate", "labor-income", "--labor-tax", "AAA=0.1"]
        + ["-T", str(T), "--out", str(tmp_path / "out")],
    )
    assert res.exit_code == 2 and "captured" in res.output, res.output
    sc = seen["shock"]
    assert sc.rebate == "labor-income" and dict(sc.labor_tax) == {"AAA": 0.1}
    assert sc.tariff_change == 0.05 and not (tmp_path / "out").exists()


def test_good_path_table_is_read_for_the_engine(tmp_path):
    """A valid table reads into what run_transition takes (blank cells: no change)."""
    from hatrade.analysis.transition import path_shocks
    from hatrade.core.params import World
    from hatrade.io.transition_results import read_path_table

    f = tmp_path / "shock.csv"
    f.write_text(
        "period,importer,exporter,trade_cost_change,country,labor_change\n"
        "0,AAA,BBB,-0.05,,\n1,,,,BBB,0.02\n2,AAA,BBB,-0.1,,\n"
    )
    world = World(
        countries=("AAA", "BBB"), tfp=[1.0, 0.8], labor=[1.0, 0.5], d=[[1.0, 1.3], [1.2, 1.0]]
    )
    table = read_path_table(f, world.countries, 10)
    shocks, final = path_shocks(world, table, 10)
    assert shocks.d.shape == (10, 2, 2)
    assert shocks.d[0, 0, 1] == pytest.approx(1.3 * 0.95) and shocks.d[1, 0, 1] == 1.3
    assert shocks.labor[1, 1] == pytest.approx(0.51) and shocks.labor[2, 1] == 0.5
    assert final.d[0, 1] == pytest.approx(1.3 * 0.9)


def test_cli_too_short_horizon_suggests_more_periods(run, tmp_path, monkeypatch):
    """T too short for the path to settle: exit 2, a message asking for more periods,
    nothing written (the baseline of the shared run is reused)."""
    import hatrade.cli.transition as cli_tr

    monkeypatch.setattr(cli_tr, "baseline_equilibrium_of", lambda *a: run.transition.old)
    out = tmp_path / "short"
    res = CliRunner().invoke(
        app,
        ["transition", "--config", str(run.cfg), "--importer", "AAA", "-d", "-0.10"]
        + ["--periods", "4", "--out", str(out)],
    )
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    assert "has not settled" in msg and "--periods" in msg
    assert not out.exists()


def test_cli_tfp_change_and_tfp_path_file(run, tmp_path, monkeypatch):
    """``--tfp`` (a permanent TFP change) and a path file with a ``tfp_change`` column (a
    temporary one) run end to end (the baseline of the shared run is reused)."""
    import hatrade.cli.transition as cli_tr

    monkeypatch.setattr(cli_tr, "baseline_equilibrium_of", lambda *a: run.transition.old)
    old = run.transition.old
    f = tmp_path / "tfp.csv"
    f.write_text("period,country,tfp_change\n0,AAA,0.05\n1,AAA,0.05\n2,AAA,0\n")
    for extra, name in ((["--tfp", "AAA=0.05"], "perm"), (["--path", str(f)], "temp")):
        out = tmp_path / name
        res = CliRunner().invoke(
            app,
            ["transition", "--config", str(run.cfg), "--periods", str(T), "--out", str(out)]
            + extra,
        )
        assert res.exit_code == 0, res.output
        s = json.loads((out / "summary.json").read_text())
        assert s["convergence"]["converged"] and s["convergence"]["residual"] < 1e-8
        paths = pd.read_csv(out / "paths.csv")
        first = paths[paths["period"] == 0].set_index("country")
        last = paths[paths["period"] == T - 1].set_index("country")
        assert abs(first.loc["AAA", "wage"] - old.prices.w[0]) > 1e-3
        if name == "perm":
            assert s["scenario"]["tfp_change"] == {"AAA": 0.05}
            w_new = s["steady_state"]["wages_new"]["AAA"]
            assert last.loc["AAA", "wage"] == pytest.approx(w_new, abs=1e-8)
        else:
            assert s["scenario"] == {"path_table": True}
            assert last.loc["AAA", "wage"] == pytest.approx(old.prices.w[0], abs=1e-6)


def test_default_welfare_country():
    """--country defaults: the scenario's importer, the first importer of a path table,
    else USA when in the world, else the first country."""
    from hatrade.analysis.counterfactual import Scenario
    from hatrade.cli.transition import welfare_country
    from hatrade.core.params import World

    world = World(
        countries=("AAA", "BBB"), tfp=[1.0, 0.8], labor=[1.0, 0.5], d=[[1.0, 1.3], [1.2, 1.0]]
    )
    table = pd.DataFrame({"period": [0, 1], "importer": ["", "BBB"], "exporter": ["", "AAA"]})
    assert welfare_country(None, world, table) == "BBB"
    assert welfare_country(None, world, pd.DataFrame({"period": [0]})) == "AAA"
    assert welfare_country(None, world, Scenario(importer="BBB", trade_cost_change=-0.1)) == "BBB"
    assert welfare_country(None, world, Scenario(all_pairs=True, trade_cost_change=-0.1)) == "AAA"
    assert welfare_country("BBB", world, Scenario(all_pairs=True, trade_cost_change=-0.1)) == "BBB"


def test_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    """A failure while the folder is written (here: drawing a figure) leaves nothing."""
    import hatrade.plots.transition as pt
    from hatrade.io.folders import prepare_output
    from hatrade.io.transition_results import save_transition

    paths = pd.DataFrame({c: [0, 0] for c in PATHS_COLUMNS} | {"country": ["AAA", "BBB"]})

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pt, "save_transition_figures", broken)
    folder = prepare_output(tmp_path / "out", "transition")
    with pytest.raises(OSError, match="disk full"):
        with folder.replace() as tmp:
            save_transition(tmp, paths, None, {"kind": "transition", "welfare": {}}, figures=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
