"""Batch runs: validation before any solve, failures recorded, resume, Dask execution."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hatrade.io import batch as batch_mod
from hatrade.io.batch import BatchError, load_batch, loads_batch, run_batch
from smallworld import small_toml

WORLD_TOML = small_toml(d=[[1.0, 1.06, 1.8], [1.6, 1.0, 1.7], [1.8, 1.7, 1.0]])


def _write(tmp_path, batch_text: str):
    (tmp_path / "world.toml").write_text(WORLD_TOML)
    p = tmp_path / "batch.toml"
    p.write_text(batch_text)
    return p


GOOD = """
name = "cuts"
config = "world.toml"

[options]
n_nodes = 6

[defaults]
trade_cost_change = -0.05

[[sweep]]
over = "importer"
values = ["F", "G"]

[[runs]]
name = "H-global"
all_pairs = true
allow_d_below_one = true
"""


def test_batch_file_parsed_with_sweeps_and_defaults(tmp_path):
    spec = load_batch(_write(tmp_path, GOOD))
    assert [r.name for r in spec.runs] == ["H-global", "F", "G"]
    assert all(r.scenario.trade_cost_change == -0.05 for r in spec.runs)
    assert spec.runs[1].scenario.importer == "F" and spec.runs[1].welfare == ("F",)
    assert spec.runs[0].welfare == ("H", "F", "G")  # a global change reports everyone


def test_batch_errors_rejected_before_any_solve_naming_entries(tmp_path, monkeypatch):
    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("a solve was started")

    monkeypatch.setattr(batch_mod, "_solve_baseline", boom)
    bad = """
config = "world.toml"
[[runs]]
name = "ok"
importer = "F"
trade_cost_change = -0.05
[[runs]]
name = "unknown-country"
importer = "USA"
trade_cost_change = -0.1
[[runs]]
name = "below-one"
importer = "H"
trade_cost_change = -0.1
allow_d_below_one = false
[[runs]]
name = "tfp"
tfp_change = {G = -1.2}
[[runs]]
name = "typo"
importr = "H"
[[runs]]
name = "hh"
importer = "F"
trade_cost_change = -0.1
household = {gamma = -1}
[[runs]]
name = "ok"
importer = "G"
trade_cost_change = -0.1
"""
    with pytest.raises(BatchError) as err:
        run_batch(load_batch(_write(tmp_path, bad)), tmp_path / "out", executor="serial")
    msg = str(err.value)
    assert "6 error(s)" in msg and "no run was started" in msg
    for piece in (
        "runs[1] (unknown-country)",
        "unknown country code 'USA'",
        "runs[2] (below-one)",
        "H,F",
        "runs[3] (tfp)",
        "tfp_change[G]",
        "runs[4] (typo)",
        "importr",
        "runs[5] (hh)",
        "gamma",
        "duplicate run name 'ok'",
    ):
        assert piece in msg, piece
    assert not (tmp_path / "out").exists()
    with pytest.raises(BatchError, match="unknown top-level key"):
        loads_batch('calibratoin = "baseline"')
    with pytest.raises(BatchError, match=r"calibration = 'nope'"):
        loads_batch('calibration = "nope"\n[[runs]]\nimporter="USA"\ntrade_cost_change=-0.1')
    with pytest.raises(BatchError, match="not valid TOML"):
        loads_batch("[[runs]\n")


def test_batch_without_dask_degrades_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_mod, "dask_available", lambda: False)
    spec = load_batch(_write(tmp_path, GOOD))
    with pytest.raises(BatchError, match=r"pip install 'dask\[distributed\]'.*serial"):
        run_batch(spec, tmp_path / "out")


def test_serial_batch_failures_recorded_and_resume(tmp_path, monkeypatch):
    from hatrade.analysis.counterfactual import run_counterfactual
    from hatrade.core.errors import EquilibriumError

    def flaky(baseline, scenario, **kw):
        if scenario.importer == "G":
            raise EquilibriumError(
                "world equilibrium did not converge: max excess demand "
                "1.0e-03 after 30 Newton iterations"
            )
        return run_counterfactual(baseline, scenario, **kw)

    monkeypatch.setattr("hatrade.analysis.counterfactual.run_counterfactual", flaky)
    spec = load_batch(_write(tmp_path, GOOD))
    out = tmp_path / "out"
    seen = []

    class Stop(Exception):
        pass

    def interrupt_after_first(done, total, row):
        seen.append(row["name"])
        if len(seen) == 1:
            raise Stop  # an interruption after the first run finished

    with pytest.raises(Stop):
        run_batch(spec, out, executor="serial", progress=interrupt_after_first)
    first = seen[0]
    assert (out / "runs" / first / "summary.json").exists()
    partial = json.loads((out / "batch_summary.json").read_text())
    assert partial["runs_done"] == 1 and len(partial["pending"]) == 2

    calls = []
    real = batch_mod.execute_run

    def counting(run, *a, **k):
        calls.append(run.name)
        return real(run, *a, **k)

    monkeypatch.setattr(batch_mod, "execute_run", counting)
    summary = run_batch(spec, out, executor="serial")
    assert first not in calls and len(calls) == 2  # resumed: the finished run is not re-run
    assert summary["runs_ok"] == 2 and summary["runs_failed"] == 1
    failed = [r for r in summary["runs"] if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["G"] and "did not converge" in failed[0]["error"]
    ok = json.loads((out / "runs" / "F" / "summary.json").read_text())
    assert ok["status"] == "ok" and "F" in ok["by_country"]
    wf = pd.read_csv(out / "runs" / "F" / "welfare.csv")
    assert len(wf) == 40 and set(wf["country"]) == {"F"}
    table = pd.read_csv(out / "batch_summary.csv")
    assert set(table["name"]) == {"H-global", "F", "G"}
    # a third call has nothing left to do
    calls.clear()
    run_batch(spec, out, executor="serial")
    assert calls == []
    # the folder's manifest lists what hatrade wrote; a run computed by other code (another
    # code revision) is not taken as finished
    from hatrade.io.folders import read_manifest

    manifest = read_manifest(out)
    assert manifest["kind"] == "batch" and "runs/F/" in manifest["files"]
    assert "batch_summary.json" in manifest["files"]
    fps = {r.name: r.fingerprint(spec) for r in spec.runs}
    assert set(batch_mod._done_rows(out, spec, fps, False)) == {"F", "G", "H-global"}
    monkeypatch.setattr(batch_mod, "code_revision", lambda: "0" * 64)
    assert batch_mod._done_rows(out, spec, fps, False) == {}


@pytest.mark.slow
def test_dask_local_cluster_batch(tmp_path):
    pytest.importorskip("dask.distributed")
    text = GOOD.replace('values = ["F", "G"]', 'values = ["F"]')
    spec = load_batch(_write(tmp_path, text))
    rows = []
    summary = run_batch(
        spec, tmp_path / "out", workers=1, progress=lambda d, t, r: rows.append((d, t, r["name"]))
    )
    assert summary["runs_ok"] == 2 and summary["runs_failed"] == 0
    assert [d for d, _, _ in rows] == [1, 2] and all(t == 2 for _, t, _ in rows)
    for name in ("F", "H-global"):
        s = json.loads((tmp_path / "out" / "runs" / name / "summary.json").read_text())
        assert s["status"] == "ok" and s["convergence"]["max_excess_demand"] < 1e-10


def test_cli_batch_serial_and_bad_file(tmp_path):
    import typer
    from typer.testing import CliRunner

    from hatrade.cli.batch import register

    app = typer.Typer()

    @app.callback()
    def main():  # pragma: no cover
        pass

    register(app)
    text = GOOD.replace('values = ["F", "G"]', 'values = ["F"]').replace(
        '[[runs]]\nname = "H-global"\nall_pairs = true\nallow_d_below_one = true\n', ""
    )
    p = _write(tmp_path, text)
    res = CliRunner().invoke(app, ["batch", str(p), "--serial", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "b" / "batch_summary.json").read_text())
    assert s["runs_ok"] == 1 and s["runs"][0]["name"] == "F"
    bad = _write(tmp_path, text.replace('values = ["F"]', 'values = ["F", "XYZ"]'))
    res = CliRunner().invoke(app, ["batch", str(bad), "--serial", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "XYZ" in res.output and "no run was started" in res.output
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "line, piece",
    [
        ("household = {n_a = 20.7}", "n_a = 20.7: must be an integer >= 3"),  # was 20
        ('household = {gamma = "2"}', "gamma = '2': must be a finite number"),  # was 2
        ("household = {gamma = true}", "gamma = True: must be a finite number"),
        ("household = {gamma = -1}", "gamma = -1 is not allowed"),  # Household's own range
        ('name = "../x"', "name = '../x' is not allowed"),
    ],
)
def test_batch_parse_refuses_wrong_types_in_one_line(tmp_path, line, piece):
    text = f'config = "world.toml"\n[[runs]]\nimporter = "F"\ntrade_cost_change = -0.05\n{line}\n'
    with pytest.raises(BatchError) as err:
        load_batch(_write(tmp_path, text))
    assert piece in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "option, piece",
    [
        ("n_nodes = 0", "n_nodes = 0: must be an integer >= 3"),
        ("tol = 1e6", "tol = 1000000.0: must be a finite number in (0, 0.1]"),
        ("tol = nan", "tol = nan"),
        ('max_iter = "30"', "max_iter = '30': must be an integer >= 1"),
        ("workers = 2.5", "workers = 2.5"),
    ],
)
def test_batch_parse_options_use_the_api_ranges(tmp_path, option, piece):
    with pytest.raises(BatchError) as err:
        load_batch(_write(tmp_path, GOOD.replace("n_nodes = 6", option)))
    assert piece in str(err.value)
