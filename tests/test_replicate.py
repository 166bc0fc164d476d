"""``hatrade replicate`` (issue 6) on a tiny setup.

The tiny setup is a ``--quick`` run (coarse grid: 20 asset points, a 3-state income
process) of a 7-country subset of the paper's world that keeps the gravity regression
identified (Table 1). The full 19-country replication is not run here (see
benchmarks/bench_replicate.py).

The cold run (empty results cache) is run end to end and its report rendered in headless
Chromium in the default suite (mostly JAX compilation). The
tests marked ``slow`` also run it warm (same cache: nothing may be solved; the solvers are
replaced by functions that fail), with one changed parameter (only what depends on it is
re-solved), with a failing stage, and through the command line.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hatrade.io.cache import Cache
from hatrade.replicate import STAGE_NAMES, ReplicateError, check_output_dir, paper_setup, replicate

COUNTRIES = ("AUT", "FIN", "FRA", "JPN", "ESP", "GBR", "USA")

#: Every figure the report must show (element ids).
FIGURES = (
    "trade-fit-baseline",
    "trade-fit-log",
    "elasticities-baseline",
    "elasticities-log",
    "micro-table-baseline",
    "micro-table-log",
    "micro-assets-baseline",
    "micro-assets-two-country",
    "unilateral-quintiles",
    "unilateral-income",
    "unilateral-heatmap-baseline",
    "global-quintiles",
    "global-income",
    "global-heatmap-baseline",
    "efficient-baseline",
    "efficient-log",
)

#: Every table the report must show (element ids).
TABLES = (
    "reproduction",
    "tab-equilibrium",
    "tab-wages",
    "tab-table1",
    "tab-trade-fit",
    "tab-elasticity-summary",
    "tab-elasticity-partners",
    "tab-micro-baseline",
    "tab-micro-log",
    "tab-unilateral-welfare",
    "tab-global-welfare",
    "tab-global-wages",
    "tab-efficient-summary",
    "tab-efficient-import-shares",
    "tab-parameters-household",
    "tab-parameters-run",
    "tab-parameters-countries",
    "tab-timings-table",
    "tab-work",
    "tab-run-info",
)


def tiny_setup(**options):
    return paper_setup(
        quick=True,
        n_a=20,
        countries=COUNTRIES,
        household={"n_perm": 3, "n_iid": 1},
        ev_nodes=4,
        **options,
    )


def _boom(name):
    def f(*a, **k):
        raise AssertionError(f"{name} was called in a run that should load everything")

    return f


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """The tiny setup, run end to end from an empty results cache."""
    base = tmp_path_factory.mktemp("replicate")
    cache_dir = base / "cache"
    setup = tiny_setup()
    run = replicate(base / "cold", setup=setup, cache=Cache(cache_dir))
    return SimpleNamespace(base=base, cache_dir=cache_dir, setup=setup, run=run)


@pytest.fixture(scope="module")
def runs(cold):
    base, cache_dir, setup = cold.base, cold.cache_dir, cold.setup
    # warm: the same inputs; every solver is replaced by a function that fails
    with pytest.MonkeyPatch.context() as mp:
        import hatrade.analysis.counterfactual
        import hatrade.analysis.cross_section
        import hatrade.analysis.efficient
        import hatrade.analysis.elasticity
        import hatrade.solve.equilibrium
        import hatrade.welfare.summary

        for mod, name in (
            (hatrade.solve.equilibrium, "solve_equilibrium"),
            (hatrade.analysis.counterfactual, "run_counterfactual"),
            (hatrade.welfare.summary, "country_welfare"),
            (hatrade.analysis.elasticity, "longrun_elasticities"),
            (hatrade.analysis.cross_section, "cross_section"),
            (hatrade.analysis.efficient, "solve_planner"),
        ):
            mp.setattr(mod, name, _boom(name))
        warm = replicate(base / "warm", setup=setup, cache=Cache(cache_dir))
    # a changed parameter of the log model: only what depends on it is re-solved
    log_spec = setup.model("log")
    changed_log = dataclasses.replace(
        log_spec, household=log_spec.household.replace(sigma_eps=0.26)
    )
    setup3 = dataclasses.replace(setup, models=(setup.models[0], changed_log))
    changed = replicate(
        base / "changed",
        setup=setup3,
        cache=Cache(cache_dir),
        stages=["equilibrium", "elasticities", "unilateral"],
    )
    return SimpleNamespace(
        base=base, cache_dir=cache_dir, setup=setup, cold=cold.run, warm=warm, changed=changed
    )


# ----------------------------------------------------------------------------- fast checks


def test_output_dir_must_be_new_empty_or_previous(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ReplicateError, match="holds other files"):
        check_output_dir(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReplicateError, match="not a folder"):
        check_output_dir(tmp_path / "file")
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "replicate.json").write_text(json.dumps({"kind": "replicate"}))
    assert check_output_dir(prev) == prev


def test_interrupted_run_folder_is_accepted_and_cleaned(tmp_path):
    """A run stopped before writing replicate.json (Ctrl-C) left its manifest, finished stage
    folders and temporary folders: the folder is accepted for a rerun, and the temporary
    folders of stages are removed (other hidden folders are not); a file the user put where
    a run writes is refused, and one elsewhere is kept."""
    from hatrade.io.folders import MANIFEST
    from hatrade.replicate.folders import open_output_dir, prepare_output_dir
    from hatrade.replicate.stages import STAGE_NAMES

    out = tmp_path / "run"
    folder = open_output_dir(out)
    with folder.session():
        prepare_output_dir(folder, STAGE_NAMES)
    assert json.loads((out / MANIFEST).read_text())["kind"] == "replicate"
    (out / "equilibrium").mkdir()
    (out / ".unilateral.abc123.tmp").mkdir()
    (out / ".micro.x9.old").mkdir()
    (out / ".mine.tmp").mkdir()
    (out / "notes.txt").write_text("mine")
    assert check_output_dir(out) == out
    folder = open_output_dir(out)
    with folder.session():
        prepare_output_dir(folder, STAGE_NAMES)
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        ".mine.tmp",
        "equilibrium",
        "notes.txt",
    ]
    (out / "report.html").write_text("the user's own report")
    (out / MANIFEST).unlink()  # a folder hatrade does not know: refused before any work
    with pytest.raises(ReplicateError, match="holds other files"):
        check_output_dir(out)


def test_setup_validation_and_quick_grid():
    s = paper_setup(quick=True)
    assert s.quick and s.n_a == 30 and s.paper and [m.name for m in s.models] == ["baseline", "log"]
    assert paper_setup().n_a == 100 and not paper_setup().quick
    assert not tiny_setup().paper
    from hatrade import ParameterError

    with pytest.raises(ParameterError, match="XYZ"):
        paper_setup(home="XYZ")
    with pytest.raises(ParameterError, match="trade_cost_change"):
        paper_setup(trade_cost_change=0.0)


def test_published_numbers_are_consistent_with_the_data_and_the_table():
    """hatrade.data.published: unique keys; Table 1 in the gravity module's order; the
    discount factors equal the shipped price files; the log model's elasticity is
    -1/sigma_eps of its calibration; the reproduction table's published column and
    tolerances are the records'."""
    from hatrade.analysis.gravity import COEFFICIENT_NAMES
    from hatrade.data import CALIBRATIONS, load_calibration
    from hatrade.data.published import (
        PUBLISHED_NUMBERS,
        TABLE1_COEFFICIENTS,
        published,
        table1_values,
    )
    from hatrade.replicate import reproduction_table

    keys = [r.key for r in PUBLISHED_NUMBERS]
    assert len(keys) == len(set(keys))
    assert TABLE1_COEFFICIENTS == tuple(COEFFICIENT_NAMES) == tuple(table1_values())
    for name in ("baseline", "log"):
        assert published(f"beta.{name}").value == load_calibration(name).beta
    assert published("theta.log").value == -1.0 / CALIBRATIONS["log"][2]
    for r in PUBLISHED_NUMBERS:
        if r.decimals is not None and r.tolerance:
            assert r.tolerance >= 0.5 * 10**-r.decimals, r.key
    with pytest.raises(KeyError, match="known"):
        published("nope")
    setup = paper_setup(quick=True)
    rep = reproduction_table(setup, {}).set_index("quantity")
    assert (rep["ours"] == "not computed").all()
    row = rep.loc["USA mean welfare gain (%), unilateral, baseline"]
    p = published("welfare.unilateral.baseline.mean")
    assert (row["published"], row["tolerance"]) == (p.value, p.tolerance)
    row = rep.loc["Table 1 model fit: EFTA (baseline)"]
    assert (row["published"], row["tolerance"]) == (table1_values()["efta"], 0.005)


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ReplicateError, match="unknown stage"):
        replicate(tmp_path / "out", setup=tiny_setup(), cache=False, stages=["nope"])


_SCOPED_CACHE_SCRIPT = """
import sys
from pathlib import Path
import jax
import jax.numpy as jnp
from hatrade.replicate import jax_compilation_cache

root = Path(sys.argv[1])
before = (jax.config.jax_compilation_cache_dir,
          jax.config.jax_persistent_cache_min_compile_time_secs)
with jax_compilation_cache(root / "jax", min_compile_seconds=0.0) as d:
    assert jax.config.jax_compilation_cache_dir == str(d)
    jax.jit(lambda x: jnp.sin(x) * 3.0 + x ** 2)(jnp.arange(7.0)).block_until_ready()
assert any((root / "jax").iterdir()), "the compiled function was not stored"
after = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
assert after == before, (before, after)  # a caller's settings are restored
"""


def test_jax_compilation_cache_is_scoped(tmp_path):
    # In a separate process: JAX's persistent cache is process-global state, and turning it
    # on inside the test process crashed later XLA compilations of other tests.
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _SCOPED_CACHE_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]


def test_start_jacobian_turns_the_beta_column_into_an_R_column():
    from hatrade.replicate.stages.counterfactuals import start_jacobian

    J = np.arange(1.0, 10.0).reshape(3, 3)
    world = SimpleNamespace(M=3, financial="globalization", tariffs=None, has_tariffs=False)
    eq = SimpleNamespace(
        jacobian=J, world=world, beta=0.9, prices=SimpleNamespace(R=np.full(3, 1.01))
    )
    J0 = start_jacobian(eq)
    np.testing.assert_array_equal(J0[:, :2], J[:, :2])
    np.testing.assert_allclose(J0[:, 2], J[:, 2] * 0.9 / 1.01)
    assert J[0, 2] == 3.0  # the baseline's Jacobian is not modified
    for bad in (
        SimpleNamespace(**{**vars(eq), "jacobian": None}),
        SimpleNamespace(
            **{
                **vars(eq),
                "world": SimpleNamespace(M=3, financial="autarky", tariffs=None, has_tariffs=False),
            }
        ),
        SimpleNamespace(**{**vars(eq), "jacobian": np.ones((2, 2))}),
    ):
        assert start_jacobian(bad) is None


# ----------------------------------------------------------------------------- tiny runs


def test_cold_run_is_complete(cold):
    r = cold.run
    assert [s.name for s in r.stages] == list(STAGE_NAMES) + ["report"]
    bad = {s.name: s.error for s in r.stages if s.status != "ok"}
    assert not bad, bad
    assert r.report.is_file() and r.quick
    out = r.out
    for f in (
        "replicate.json",
        "reproduction.csv",
        "reproduction.md",
        "equilibrium/baseline/summary.json",
        "equilibrium/log/households.nc",
        "table1/table1.csv",
        "table1/moments.csv",
        "trade_fit/trade_fit_baseline.png",
        "elasticities/elasticities_baseline.csv",
        "micro/micro_table_baseline.csv",
        "unilateral/baseline/welfare.csv",
        "unilateral/log/summary.json",
        "global/baseline/changes.csv",
        "efficient/baseline/efficient_trade.csv",
    ):
        assert (out / f).is_file(), f
    for s in r.stages:  # every listed result file exists
        for f in s.files:
            assert (out / f).is_file(), f
    summary = json.loads((out / "replicate.json").read_text())
    assert summary["kind"] == "replicate" and summary["quick"] is True
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in summary["stages"])
    # everything was computed (cold cache)
    assert r.solves() == 7  # 2 baselines, 4 counterfactuals, the two-country world
    assert all(s.cache.get("hit", 0) == 0 for s in r.stages)


def test_serial_run_matches_the_parallel_one(cold, tmp_path):
    """``parallel=False`` (one stage at a time) computes the same numbers, and each stage
    is charged the same cached results, as the default run with stages in threads and the
    two-country world in the background."""
    names = ["equilibrium", "elasticities", "micro", "unilateral"]
    r = replicate(
        tmp_path / "serial",
        setup=cold.setup,
        cache=Cache(tmp_path / "cache"),
        parallel=False,
        stages=names,
    )
    assert all(s.status == "ok" for s in r.stages), [(s.name, s.error) for s in r.stages]
    par = {s.name: s.cache for s in cold.run.stages}
    for s in r.stages[:-1]:
        assert s.cache == par[s.name], s.name
    assert par["micro"]["miss"] == 4  # two cross-sections, the two-country world and its
    #                                   elasticities (computed in the background)
    for key in ("beta", "theta", "micro"):
        assert r.numbers[key] == cold.run.numbers[key], key
    assert r.numbers["welfare"]["unilateral"] == cold.run.numbers["welfare"]["unilateral"]


def test_report_in_headless_chromium_has_every_figure_and_table(cold):
    from hatrade.replicate.browser import browser_check, find_chromium

    assert find_chromium(), (
        "Chromium is required for this test: apt-get install -y chromium (or set $CHROMIUM)"
    )
    info = browser_check(cold.run.report, screenshot=cold.base / "report.png")
    images = {i["id"]: i for i in info["images"]}
    missing = [f for f in FIGURES if f"fig-{f}" not in images]
    assert not missing, missing
    for fid, i in images.items():
        assert i["complete"] and i["width"] > 300 and i["height"] > 200, (fid, i)
        assert i["shownWidth"] > 200, (fid, i)
    tables = {t["id"]: t for t in info["tables"]}
    missing = [t for t in TABLES if t not in tables]
    assert not missing, missing
    for t in TABLES:
        assert tables[t]["rows"] >= 1, t
    assert tables["tab-wages"]["rows"] == len(COUNTRIES)
    sections = {s["id"]: s["status"] for s in info["sections"]}
    for name in STAGE_NAMES:
        assert sections[f"stage-{name}"] == "ok", name
    assert info["banner"] and "APPROXIMATE" in info["banner"]
    assert (cold.base / "report.png").read_bytes().startswith(b"\x89PNG")


def test_numbers_come_from_the_run(cold):
    from hatrade.analysis.gravity import BARRIER_LABELS, gravity_regression, model_trade_table
    from hatrade.io.results import load_trade, shares_matrix

    r = cold.run
    out = r.out
    html = r.report.read_text()
    repro = pd.read_csv(out / "reproduction.csv")
    ours = dict(zip(repro["quantity"], repro["ours"]))
    for name in ("baseline", "log"):
        solve = json.loads((out / "equilibrium" / name / "summary.json").read_text())
        assert float(ours[f"β, {name} (R = 1.01)"]) == pytest.approx(solve["beta"], rel=1e-9)
        assert r.numbers["beta"][name] == solve["beta"]
        assert f"{solve['beta']:.6f}" in html
    # Table 1 model fit, recomputed here from the model's trade shares
    shares, countries = shares_matrix(load_trade(out / "equilibrium" / "baseline"), COUNTRIES)
    g = gravity_regression(model_trade_table(shares, countries), countries=countries)
    t1 = pd.read_csv(out / "table1" / "table1.csv")
    np.testing.assert_allclose(t1["model fit (baseline)"], g.coefficients.to_numpy(), rtol=1e-9)
    for key, label in BARRIER_LABELS.items():
        q = f"Table 1 model fit: {label} (baseline)"
        assert float(ours[q]) == pytest.approx(g.coefficients[key], rel=1e-9)
    # elasticities: the log model satisfies Proposition 3 exactly; the numbers are the run's
    el = json.loads((out / "elasticities" / "summary.json").read_text())
    sigma = cold.setup.model("log").household.sigma_eps
    assert el["log"]["impact"] == pytest.approx(-1.0 / sigma, abs=1e-8)
    assert float(ours["USA trade elasticity, impact (baseline)"]) == pytest.approx(
        el["baseline"]["impact"], rel=1e-9
    )
    # welfare table in the report = the counterfactual folder's summary
    w = json.loads((out / "unilateral" / "baseline" / "summary.json").read_text())
    ws = pd.read_csv(out / "unilateral" / "welfare_summary.csv")
    assert ws.loc[0, "mean"] == pytest.approx(w["by_country"]["USA"]["mean_gain_percent"])
    # the reproduction table's welfare rows are the run's (published numbers beside them)
    for name in ("baseline", "log"):
        q = f"USA mean welfare gain (%), unilateral, {name}"
        mean = json.loads((out / "unilateral" / name / "summary.json").read_text())
        assert float(ours[q]) == pytest.approx(
            mean["by_country"]["USA"]["mean_gain_percent"], rel=1e-9
        )


@pytest.mark.slow
def test_second_run_solves_nothing(runs):
    w = runs.warm
    bad = {s.name: s.error for s in w.stages if s.status != "ok"}
    assert not bad, bad  # the solvers raise if called: every stage loaded its results
    assert w.solves() == 0
    assert sum(s.cache.get("miss", 0) for s in w.stages) == 0
    assert sum(s.cache.get("hit", 0) for s in w.stages) == sum(
        s.cache.get("miss", 0) for s in runs.cold.stages
    )
    assert w.numbers["beta"] == runs.cold.numbers["beta"]
    assert w.numbers["welfare"] == runs.cold.numbers["welfare"]
    pd.testing.assert_frame_equal(w.reproduction, runs.cold.reproduction)


@pytest.mark.slow
def test_changed_parameter_resolves_only_what_depends_on_it(runs):
    # a changed input changes the reported numbers (nothing is a stored constant)
    b3 = runs.changed.numbers["beta"]
    assert b3["baseline"] == runs.cold.numbers["beta"]["baseline"]
    assert b3["log"] != runs.cold.numbers["beta"]["log"]
    assert runs.changed.numbers["theta"]["log"]["impact"] == pytest.approx(-1 / 0.26, abs=1e-8)
    c = {s.name: s.cache for s in runs.changed.stages}
    assert all(s.status == "ok" for s in runs.changed.stages), [
        (s.name, s.error) for s in runs.changed.stages
    ]
    # baseline model: loaded; log model (sigma_eps changed): computed
    assert c["equilibrium"] == {"hit": 1, "miss": 1}
    assert c["elasticities"] == {"hit": 1, "miss": 1}
    assert c["unilateral"] == {"hit": 2, "miss": 2}  # equilibrium + welfare of each model
    assert runs.changed.solves() == 2  # the log baseline and its counterfactual


@pytest.mark.slow
def test_failed_stage_is_reported_and_others_go_on(runs, monkeypatch, tmp_path):
    import hatrade.analysis.efficient

    def explode(*a, **k):
        raise RuntimeError("planner exploded")

    monkeypatch.setattr(hatrade.analysis.efficient, "solve_planner", explode)
    # other planner weights: a new cache key, so the (failing) planner is really called
    setup = tiny_setup(planner_weights="equal")
    r = replicate(
        tmp_path / "out",
        setup=setup,
        cache=Cache(runs.cache_dir),
        stages=["equilibrium", "efficient", "table1"],
    )
    st = {s.name: s for s in r.stages}
    assert st["efficient"].status == "failed" and "planner exploded" in st["efficient"].error
    assert st["equilibrium"].status == "ok" and st["table1"].status == "ok"
    assert st["report"].status == "ok" and not r.ok
    html = r.report.read_text()
    assert 'id="error-efficient"' in html and "planner exploded" in html
    assert "planner exploded" in (r.out / "efficient" / "error.txt").read_text()
    summary = json.loads((r.out / "replicate.json").read_text())
    assert {s["name"]: s["status"] for s in summary["stages"]}["efficient"] == "failed"


@pytest.mark.slow
def test_cli_replicate(runs, monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    import hatrade.replicate as rep
    from hatrade.cli import replicate as cli_rep
    from hatrade.replicate.readme import README_BEGIN, README_END

    monkeypatch.setattr(rep, "paper_setup", lambda **kw: tiny_setup())
    app = typer.Typer()

    @app.callback()
    def main():
        """test app"""

    cli_rep.register(app)
    readme = tmp_path / "README.md"
    readme.write_text(f"# hatrade\n\n{README_BEGIN}\n{README_END}\n\n## API\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "replicate",
            "--quick",
            "--no-compile-cache",
            "--out",
            str(out),
            "--cache-dir",
            str(runs.cache_dir),
            "--readme",
            str(readme),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Report:" in res.output and (out / "report.html").is_file()
    text = readme.read_text()
    assert "| quantity | source | published | ours | difference | agrees | note |" in text
    assert "QUICK, approximate" in text
    beta = json.loads((out / "replicate.json").read_text())["numbers"]["beta"]["baseline"]
    assert f"{beta:.7g}" in text
    from PIL import Image

    from hatrade.cli.replicate import README_FIGURE_WIDTH

    fig = tmp_path / "docs" / "figures" / "trade-fit-baseline.png"
    with Image.open(fig) as im:  # a small copy for the repository
        assert im.width <= README_FIGURE_WIDTH[0] and im.height > 200
    assert fig.stat().st_size < (out / "figures" / "trade-fit-baseline.png").stat().st_size
    assert "docs/figures/trade-fit-baseline.png" in text
    # a folder with other files is refused before any work
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    res = CliRunner().invoke(app, ["replicate", "--out", str(tmp_path / "busy")])
    assert res.exit_code == 2 and "holds other files" in res.output
