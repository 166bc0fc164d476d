"""Tests for the command line (hatrade.cli), the results folder and the trade-fit figure."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import hatrade
from hatrade.cli import app
from hatrade.data import COUNTRIES, load_calibration, load_trade_data
from hatrade.io.atomic import atomic_dir
from hatrade.io.folders import MANIFEST, OutputFolderError, prepare_output, read_manifest
from hatrade.io.results import (
    SOLVE_FILES,
    TRADE_COLUMNS,
    ResultsError,
    load_summary,
    load_trade,
    trade_fit,
    trade_table_with_data,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_country.toml"
runner = CliRunner()


def small_config(tmp_path: Path, n_a: int = 30) -> Path:
    """The example world with a small asset grid."""
    text = EXAMPLE.read_text().replace("[household]\n", f"[household]\nn_a = {n_a}\n", 1)
    assert f"n_a = {n_a}" in text
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """One real solve of the two-country example (n_a = 30) through the CLI."""
    tmp = tmp_path_factory.mktemp("solve")
    out = tmp / "out"
    result = runner.invoke(app, ["solve", "--config", str(small_config(tmp)), "--out", str(out)])
    return result, out


# ----------------------------------------------------------------------------- solve


def test_solve_writes_the_four_files(solved):
    result, out = solved
    assert result.exit_code == 0, result.output
    assert sorted(SOLVE_FILES + (MANIFEST,)) == leftovers(out)
    manifest = read_manifest(out)  # what hatrade wrote, and may replace
    assert manifest["kind"] == "solve" and manifest["files"] == sorted(SOLVE_FILES)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders


def test_solve_summary_json(solved):
    result, out = solved
    s = json.loads((out / "summary.json").read_text())
    for key in (
        "beta",
        "R",
        "wages",
        "import_share",
        "fit",
        "parameters",
        "hatrade_version",
        "created",
        "convergence",
    ):
        assert key in s, key
    assert s["hatrade_version"] == hatrade.__version__
    assert s["beta"] == 0.93  # given
    assert isinstance(s["R"], float) and 0.9 < s["R"] < 1 / 0.93
    assert set(s["wages"]) == {"H", "F"} == set(s["import_share"])
    np.testing.assert_allclose(np.mean(list(s["wages"].values())), 1.0)
    # symmetric world: equal wages and import shares, strictly between 0 and 1/2
    np.testing.assert_allclose(s["wages"]["H"], s["wages"]["F"], rtol=1e-8)
    assert 0 < s["import_share"]["H"] < 0.5
    assert s["fit"] is None  # no data for H, F
    assert s["parameters"]["household"]["n_a"] == 30
    assert s["parameters"]["household"]["gamma"] == 2.0
    assert s["parameters"]["world"]["trade_costs"] == [[1.0, 1.5], [1.5, 1.0]]
    assert s["parameters"]["solve"]["solve_for"] == "R"
    assert s["convergence"]["converged"] is True
    assert s["convergence"]["max_excess_demand"] < 1e-9
    assert load_summary(out)["name"] == "small"


def test_solve_trade_csv(solved):
    _, out = solved
    df = pd.read_csv(out / "trade.csv")
    assert tuple(df.columns) == TRADE_COLUMNS
    assert len(df) == 4
    s = df.pivot(index="importer", columns="exporter", values="share")
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    hf = df[(df.importer == "H") & (df.exporter == "F")].iloc[0]
    np.testing.assert_allclose(hf.log_normalized_model, np.log(s.loc["H", "F"] / s.loc["H", "H"]))
    assert df["log_normalized_data"].isna().all()
    summary = json.loads((out / "summary.json").read_text())
    np.testing.assert_allclose(1 - s.loc["H", "H"], summary["import_share"]["H"])
    assert len(load_trade(out)) == 4


def test_solve_households_nc(solved):
    _, out = solved
    with xr.open_dataset(out / "households.nc", engine="h5netcdf") as ds:
        assert list(ds["country"].values) == ["H", "F"]
        assert ds["choice_prob"].dims == ("country", "a_index", "z_index", "variety")
        assert ds.sizes["a_index"] == 30
        for var in ("consumption", "assets_next", "value", "distribution"):
            assert var in ds
        np.testing.assert_allclose(ds["distribution"].sum(("a_index", "z_index")), 1.0)
        np.testing.assert_allclose(ds["choice_prob"].sum("variety"), 1.0)


def test_solve_png_and_printed_summary(solved):
    result, out = solved
    assert (out / "trade_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    text = result.stdout
    assert "beta" in text and "0.930000" in text
    assert f"{summary['R']:.6f}" in text
    assert "import share" in text and "H" in text and "F" in text
    assert "no trade data" in text


def test_bad_config_exits_2_and_names_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("tfp = [1.0, 1.0]", "tfp = [1.0, 1.0, 1.0]"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["solve", "--config", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "[world] tfp" in result.stderr and "countries has 2" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()
    assert leftovers(tmp_path) == ["bad.toml"]


def test_unknown_key_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("gamma", "gama"))
    result = runner.invoke(app, ["solve", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "'gama'" in result.stderr and "allowed keys" in result.stderr
    result = runner.invoke(app, ["solve", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = runner.invoke(app, ["solve", "--calibration", "nope"])
    assert result.exit_code == 2 and "baseline" in result.output
    result = runner.invoke(app, ["solve", "--calibration", "log", "--config", str(bad)])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(app, ["solve", "--config", str(bad), "--from-initial"])
    assert result.exit_code == 2 and "--from-initial" in result.stderr
    assert leftovers(tmp_path) == ["bad.toml"]


def test_solve_failure_is_clean(tmp_path, monkeypatch):
    """A solver failure: one red message, exit code 2, no traceback, no output folder."""

    def broken(*args, **kwargs):
        kwargs["progress"](0, 0.5)
        raise hatrade.EquilibriumError("world equilibrium did not converge (test)")

    monkeypatch.setattr(hatrade, "solve_equilibrium", broken)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["solve", "--config", str(small_config(tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "did not converge (test)" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == ["small.toml"]


def test_out_folder_with_other_files_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(
        app, ["solve", "--config", str(small_config(tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 2 and "other files" in result.stderr
    assert leftovers(out) == ["notes.txt"]
    with pytest.raises(OutputFolderError, match="not a folder"):
        prepare_output(out / "notes.txt", "solve")


def test_atomic_dir_replaces_and_cleans_up(tmp_path):
    out = tmp_path / "res"
    with atomic_dir(out) as tmp:
        (tmp / "summary.json").write_text(json.dumps({"kind": "solve", "n": 1}))
    assert json.loads((out / "summary.json").read_text())["n"] == 1
    prepare_output(out, "solve")  # a previous solve folder (before manifests) may be replaced
    with atomic_dir(out) as tmp:
        (tmp / "summary.json").write_text(json.dumps({"kind": "solve", "n": 2}))
    assert json.loads((out / "summary.json").read_text())["n"] == 2
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "summary.json").write_text("half")
            raise RuntimeError("boom")
    assert json.loads((out / "summary.json").read_text())["n"] == 2  # untouched
    assert leftovers(tmp_path) == ["res"]  # no temp folders left
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "new") as tmp:
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == ["res"]


def test_trade_fit_statistics():
    table = pd.DataFrame(
        {
            "importer": ["A", "A", "B", "B", "A"],
            "exporter": ["A", "B", "A", "C", "C"],
            "share": [0.5, 0.3, 0.2, 0.1, 0.2],
            "log_normalized_model": [0.0, -1.0, -2.0, -3.0, -5.0],
            "log_normalized_data": [np.nan, -1.5, -2.0, -2.0, np.nan],
        }
    )
    fit = trade_fit(table)
    assert fit["n_pairs"] == 3
    np.testing.assert_allclose(fit["rmse"], np.sqrt((0.25 + 0 + 1) / 3))
    np.testing.assert_allclose(fit["corr"], np.corrcoef([-1, -2, -3], [-1.5, -2, -2])[0, 1])
    table["log_normalized_data"] = np.nan
    assert trade_fit(table) is None


class _StubEquilibrium:
    """Just enough of an Equilibrium for trade_table_with_data."""

    def __init__(self, countries, shares):
        self.countries, self.shares = countries, np.asarray(shares, float)

    def trade_table(self):
        c, s = self.countries, self.shares
        rows = [
            (c[i], c[j], s[i, j], np.log(s[i, j] / s[i, i]))
            for i in range(len(c))
            for j in range(len(c))
        ]
        return pd.DataFrame(rows, columns=list(TRADE_COLUMNS[:4]))


def test_trade_table_joins_the_data_by_pair():
    eq = _StubEquilibrium(
        ["USA", "H", "JPN"], [[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.05, 0.05, 0.9]]
    )
    table = trade_table_with_data(eq, "ek")
    assert tuple(table.columns) == TRADE_COLUMNS and len(table) == 9
    data = load_trade_data().set_index(["importer", "exporter"])["log_trade"]
    got = table.set_index(["importer", "exporter"])["log_normalized_data"]
    assert got[("USA", "JPN")] == data[("USA", "JPN")]
    assert got[("JPN", "USA")] == data[("JPN", "USA")]
    assert got.drop([("USA", "JPN"), ("JPN", "USA")]).isna().all()  # H, diagonal: no data
    fit = trade_fit(table)
    assert fit["n_pairs"] == 2
    own = pd.DataFrame({"importer": ["H"], "exporter": ["USA"], "log_trade": [-1.0]})
    table = trade_table_with_data(eq, own)
    assert table["log_normalized_data"].notna().sum() == 1
    assert trade_table_with_data(eq, None)["log_normalized_data"].isna().all()
    with pytest.raises(ResultsError, match="log_trade"):
        trade_table_with_data(eq, own.drop(columns="log_trade"))


def test_print_summary_under_autarky(capsys):
    from hatrade.cli.solve import print_summary

    summary = {
        "name": "aut",
        "beta": 0.93,
        "R": {"H": 1.011, "F": 0.987},
        "wages": {"H": 1.1, "F": 0.9},
        "import_share": {"H": 0.2, "F": 0.3},
        "fit": {"corr": 0.5, "rmse": 0.25, "n_pairs": 2},
        "convergence": {"max_excess_demand": 1e-11, "newton_iterations": 3},
    }
    print_summary(summary, Path("out"))
    text = capsys.readouterr().out
    assert "1.011000" in text and "0.987000" in text and "0.5000" in text and "0.2500" in text


# ----------------------------------------------------------------------------- table1

TABLE1_MOMENTS = [-3.10, -3.67, -4.03, -4.22, -6.06, -6.56, 0.30, 0.51, 0.04, 0.54]


def test_table1_on_the_data(tmp_path):
    result = runner.invoke(app, ["table1", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "t" / "table1.csv")
    assert list(df.columns) == ["coefficient", "barrier", "moment"]
    np.testing.assert_allclose(df["moment"], TABLE1_MOMENTS, atol=0.005)
    assert df["barrier"].iloc[-2:].tolist() == ["European Community", "EFTA"]
    assert "-3.10" in result.stdout and "Shared border" in result.stdout


def _fake_solve_folder(folder: Path, params) -> None:
    """A solve folder whose model trade equals the data exactly (log s_ij/s_ii = y_ij)."""
    data = load_trade_data()
    y = {
        (i, j): v for i, j, v in data[["importer", "exporter", "log_trade"]].itertuples(index=False)
    }
    rows = []
    for i in COUNTRIES:
        rel = {j: (0.0 if j == i else y[(i, j)]) for j in COUNTRIES}
        s_ii = 1.0 / sum(np.exp(v) for v in rel.values())
        for j in COUNTRIES:
            rows.append((i, j, s_ii * np.exp(rel[j]), rel[j], np.nan if i == j else rel[j]))
    folder.mkdir()
    pd.DataFrame(rows, columns=list(TRADE_COLUMNS)).to_csv(folder / "trade.csv", index=False)
    summary = {
        "kind": "solve",
        "name": "fake",
        "beta": 0.93,
        "R": 1.01,
        "wages": {},
        "import_share": {},
        "parameters": {"calibration": {"vector": list(params)}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def test_table1_from_solve(tmp_path):
    params = load_calibration("baseline").params
    _fake_solve_folder(tmp_path / "solve", params)
    out = tmp_path / "t"
    result = runner.invoke(
        app, ["table1", "--from-solve", str(tmp_path / "solve"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "table1.csv")
    assert list(df.columns) == ["coefficient", "barrier", "moment", "model_fit", "parameter"]
    # model trade = data trade, so the regression on the model gives the data's moments
    np.testing.assert_allclose(df["model_fit"], df["moment"], atol=1e-9)
    np.testing.assert_allclose(df["parameter"], np.exp(-np.asarray(params[-10:]) / 4.0))
    assert (df["parameter"].iloc[:6] > 1).all()  # distance makes trade costlier


def test_table1_rejects_bad_solve_folders(tmp_path, solved):
    _, out = solved
    t = str(tmp_path / "t")
    result = runner.invoke(app, ["table1", "--from-solve", str(out), "--out", t])
    assert result.exit_code == 2 and "19 Eaton-Kortum countries" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["table1", "--from-solve", str(empty), "--out", t])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    broken = tmp_path / "broken"
    _fake_solve_folder(broken, load_calibration("baseline").params)
    df = pd.read_csv(broken / "trade.csv").drop(columns="share")
    df.to_csv(broken / "trade.csv", index=False)
    result = runner.invoke(app, ["table1", "--from-solve", str(broken), "--out", t])
    assert result.exit_code == 2 and "'share'" in result.stderr
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- app


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"hatrade {hatrade.__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "solve" in result.stdout and "table1" in result.stdout


def test_verbose_sets_log_level(tmp_path):
    logger = logging.getLogger("hatrade")
    old = logger.level
    try:
        runner.invoke(app, ["-vv", "table1", "--out", str(tmp_path / "a")])
        assert logger.level == logging.DEBUG
        runner.invoke(app, ["-v", "table1", "--out", str(tmp_path / "b")])
        assert logger.level == logging.INFO
        runner.invoke(app, ["table1", "--out", str(tmp_path / "c")])
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(old)


# ----------------------------------------------------------------------------- 19 countries


@pytest.mark.slow
def test_solve_baseline_calibration(tmp_path):
    """The published baseline re-solved from its own prices: beta and wages barely move and
    model trade fits the data."""
    out = tmp_path / "baseline"
    result = runner.invoke(app, ["solve", "--calibration", "baseline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    s = load_summary(out)
    cal = load_calibration("baseline")
    np.testing.assert_allclose(s["beta"], cal.beta, rtol=1e-4)
    np.testing.assert_allclose(list(s["wages"].values()), cal.wages.to_numpy(), rtol=1e-3)
    assert s["R"] == pytest.approx(1.01)
    assert s["fit"]["n_pairs"] == 342 and s["fit"]["corr"] > 0.9
    assert s["parameters"]["calibration"]["vector"] == list(cal.params)
    trade = load_trade(out)
    assert trade["log_normalized_data"].notna().sum() == 342


def test_calibrate_output_folder_policy(tmp_path, monkeypatch):
    """hatrade calibrate refuses a folder of other files, and a calibration that fails
    before writing anything leaves no folder behind."""
    from hatrade.calibration import calibrate as cal_mod

    def fails(*args, **kwargs):
        raise cal_mod.CalibrationError("calibration did not converge")

    monkeypatch.setattr(cal_mod, "calibrate", fails)
    out = tmp_path / "cal"
    result = runner.invoke(app, ["calibrate", "--out", str(out)])
    assert result.exit_code == 2 and "did not converge" in result.stderr
    assert not out.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["calibrate", "--out", str(other)])
    assert result.exit_code == 2 and "other files" in result.stderr
    assert leftovers(other) == ["notes.txt"]


# ----------------------------------------------------------------------------- issue 16


def snapshot(root: Path) -> dict:
    """Every file under ``root`` (relative path -> bytes) and every folder (-> None)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_solve_refuses_a_previous_solve_folder_with_user_files(tmp_path, solved, monkeypatch):
    """Class 3: 'hatrade solve --out D' on a previous solve folder holding a file the user
    added refuses before solving and deletes nothing."""
    import shutil

    _, out = solved
    mine = tmp_path / "prev"
    shutil.copytree(out, mine)
    (mine / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)

    def no_solve(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("solved despite the refusal")

    monkeypatch.setattr(hatrade, "solve_equilibrium", no_solve)
    result = runner.invoke(
        app, ["solve", "--config", str(small_config(tmp_path / "prev")), "--out", str(mine)]
    )
    assert result.exit_code == 2
    assert "notes.txt" in result.stderr and "did not write" in result.stderr
    after = snapshot(tmp_path)
    after.pop("prev/small.toml")
    assert after == before


def test_table1_keeps_user_files(tmp_path):
    """Class 3: table1 refuses to overwrite a table1.csv it did not write; it replaces its
    own, and leaves the user's other files alone."""
    out = tmp_path / "t"
    out.mkdir()
    (out / "table1.csv").write_text("my table")
    result = runner.invoke(app, ["table1", "--out", str(out)])
    assert result.exit_code == 2 and "other files" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "table1.csv").read_text() == "my table" and leftovers(out) == ["table1.csv"]
    new = tmp_path / "new"
    assert runner.invoke(app, ["table1", "--out", str(new)]).exit_code == 0
    first = (new / "table1.csv").read_bytes()
    (new / "notes.txt").write_text("mine")
    assert runner.invoke(app, ["table1", "--out", str(new)]).exit_code == 0  # its own file
    assert (new / "table1.csv").read_bytes() == first and (new / "notes.txt").read_text() == "mine"
    assert read_manifest(new)["files"] == ["table1.csv"]


def test_failed_resume_leaves_nothing(tmp_path, monkeypatch):
    """Class 3: a failed --resume leaves no folder behind, and a damaged checkpoint is
    refused before any work, its folder byte-identical."""
    from hatrade.calibration import calibrate as cal_mod

    def no_calibration(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("calibrated despite the refusal")

    monkeypatch.setattr(cal_mod, "calibrate", no_calibration)
    out = tmp_path / "a" / "cal"
    result = runner.invoke(app, ["calibrate", "--resume", "--out", str(out)])
    assert result.exit_code == 2 and "no checkpoint" in result.stderr
    assert leftovers(tmp_path) == []
    damaged = tmp_path / "cal"
    damaged.mkdir()
    (damaged / "checkpoint.json").write_text('{"best": ')
    before = snapshot(tmp_path)
    for extra in ([], ["--micro-targets", str(EXAMPLE)]):
        result = runner.invoke(app, ["calibrate", "--resume", "--out", str(damaged), *extra])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("tol", ["nan", "inf", "-1", "0"])
def test_calibrate_rejects_bad_tol(tmp_path, tol):
    """Class 4 (the CLI's part): --tol nan was accepted by calibrate."""
    result = runner.invoke(app, ["calibrate", "--tol", tol, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--tol" in result.stderr
    assert leftovers(tmp_path) == []


def test_help_shows_no_bool_after_flags():
    """Class 9: plain flags, counters and --help show no '<bool>' in the help."""
    for cmd in ([], ["counterfactual"], ["solve"], ["batch"], ["calibrate"], ["elasticities"]):
        result = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout and "--help" in result.stdout
    assert "<float>" in runner.invoke(app, ["counterfactual", "--help"]).stdout


def test_usage_errors_are_one_line():
    for args, name in (
        (["counterfactual", "--n-nodes", "0"], "--n-nodes"),
        (["counterfactual", "-d", "abc"], "--trade-cost-change"),
        (["solve", "--bogus"], "--bogus"),
        (["elasticities"], "--country"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and lines[0].startswith("Error:"), lines


def test_progress_rows_stop_counting_when_done():
    """Class 9: a finished progress row keeps the time its step took."""
    import io
    import time

    from rich.console import Console

    from hatrade.cli._common import StepProgress

    prog = StepProgress(console=Console(file=io.StringIO()))
    with prog:
        done = prog.add_task("done", total=None)
        running = prog.add_task("running", total=None)
        prog.finish(done, description="finished")
        elapsed = prog.tasks[done].elapsed
        time.sleep(0.05)
        assert prog.tasks[done].elapsed == elapsed and prog.tasks[done].finished
        assert prog.tasks[done].description == "finished"
    assert prog.tasks[running].finished  # finished when the display closes
    t = prog.tasks[running].elapsed
    time.sleep(0.02)
    assert prog.tasks[running].elapsed == t


def _who_gains_summary(n: int = 3) -> dict:
    q = {f"Q{k}": 1.234567 * k for k in range(1, 6)}
    ev = {"verified": False, "max_gain_error_estimate_points": 1e-4, "max_residual_estimate": 1e-9}
    ev.update(undefined_states=0)
    codes = ["USA", "CAN", "MEX"][:n]
    return {
        "name": "USA-0.1",
        "R": {"old": 1.01, "new": 1.0123, "change_percent": 0.2277},
        "convergence": {"newton_iterations": 3, "max_excess_demand": 1e-12},
        "by_country": {
            c: {
                "mean_gain_percent": 1.345678,
                "quintile_gain_percent": q,
                "share_losers": 0.1234,
                "acr_percent": 1.2011,
                "ev": ev,
            }
            for c in codes
        },
        "R_over_w_change_percent": {c: -1.23456 for c in codes},
        "wages": {c: {"change_percent": 0.98765} for c in codes},
    }


@pytest.mark.parametrize("width", [40, 80])
def test_who_gains_table_never_truncates_numbers(monkeypatch, width):
    """Class 9: at 80 columns or piped to a file, the 'Who gains' table kept every number
    whole (it printed '1.3…')."""
    import io

    from rich.console import Console

    import hatrade.cli._common as common
    from hatrade.cli.counterfactual import _print_summary

    buf = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=buf, width=width))  # not a terminal
    monkeypatch.setattr(common, "err_console", Console(file=io.StringIO(), width=width))
    _print_summary(_who_gains_summary(), None, Path("results") / "a-long-output-folder-name")
    text = buf.getvalue()
    assert "…" not in text
    for number in ("1.346", "1.235", "6.173", "12.3%", "1.201", "-1.235", "+0.988"):
        assert number in text, number
    assert "a-long-output-folder-name" in text


def test_figures_have_ordinary_permissions(tmp_path):
    """Class 9: figures were written 0600 while CSVs were 0644."""
    import os

    from hatrade.plots.style import new_figure, save_figure

    old = os.umask(0o022)
    try:
        fig = new_figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        path = save_figure(fig, tmp_path / "f.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert leftovers(tmp_path) == ["f.png"]


@pytest.mark.parametrize("transfer", ["inf", "nan", "0", "-1"])
def test_households_rejects_bad_transfer(tmp_path, transfer):
    args = ["households", "--config", str(small_config(tmp_path)), "--country", "H"]
    result = runner.invoke(app, [*args, "--transfer", transfer, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--transfer" in result.stderr
    assert leftovers(tmp_path) == ["small.toml"]
