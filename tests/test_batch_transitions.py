"""Transitions as batch runs (issue 17, item 4): ``kind = "transition"`` entries checked
when the file is read, and a batch of one transition run on a two-country world (T = 40)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hatrade.analysis.transition import PATHS_COLUMNS
from hatrade.io.batch import BatchError, load_batch, run_batch

T = 40

WORLD = """
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

ONE = f"""
name = "trans"
config = "world.toml"

[options]
welfare = "none"

[[runs]]
name = "AAA-cut"
kind = "transition"
importer = "AAA"
trade_cost_change = -0.10
periods = {T}
"""


def _write(tmp_path, text: str, path_csv: str | None = None):
    (tmp_path / "world.toml").write_text(WORLD)
    if path_csv is not None:
        (tmp_path / "shock.csv").write_text(path_csv)
    p = tmp_path / "batch.toml"
    p.write_text(text)
    return p


def test_batch_of_one_transition_run(tmp_path):
    spec = load_batch(_write(tmp_path, ONE))
    (run,) = spec.runs
    assert run.kind == "transition" and run.transition["periods"] == T
    out = tmp_path / "out"
    summary = run_batch(spec, out, executor="serial")
    assert summary["runs_ok"] == 1, summary["runs"]
    folder = out / "runs" / "AAA-cut"
    s = json.loads((folder / "summary.json").read_text())
    assert s["kind"] == "batch-run" and s["status"] == "ok" and s["periods"] == T
    assert s["convergence"]["converged"] and s["convergence"]["residual"] < 1e-8
    assert s["transition"]["periods"] == T and s["scenario"]["importer"] == "AAA"
    paths = pd.read_csv(folder / "paths.csv")
    assert list(paths.columns) == list(PATHS_COLUMNS) and len(paths) == 2 * T
    last = paths[paths["period"] == T - 1].set_index("country")
    assert last.loc["AAA", "wage"] == pytest.approx(s["steady_state"]["wages_new"]["AAA"], abs=1e-8)
    row = summary["runs"][0]
    assert row["newton_iterations"] == s["convergence"]["iterations"]
    assert row["R_change_percent"] == pytest.approx(
        100 * (s["R_new"]["AAA"] / s["R_old"]["AAA"] - 1)
    )
    # a second call resumes: the finished transition run is not re-run
    again = run_batch(spec, out, executor="serial")
    assert again["runs"][0].get("resumed") and again["runs_ok"] == 1


BAD_CASES = [
    ('kind = "transit"', "kind = 'transit' is not allowed"),
    ("periods = 1", "periods = 1"),
    ("periods = 20.5", "periods = 20.5"),
    ("news_date = 40", "news_date = 40: must be below periods = 40"),
    ('linear = "yes"', "linear = 'yes'"),
    ("tfp_change = {AAA = -1.5}", "it must stay positive"),
    ('financial = "autarky"', "financial regime stays the baseline's"),
    ('path = "shock.csv"', "path and the scenario key(s)"),
    ("news_date = 3\nlabor_tax = {AAA = 0.1}", "news_date = 3 is not allowed with a change"),
    ('rebate = "everyone"', "rebate"),
]


@pytest.mark.parametrize("line, piece", BAD_CASES)
def test_bad_transition_entries_rejected_when_read(tmp_path, line, piece):
    key = line.split("=")[0].strip()
    lines = ONE.splitlines()
    same = [k for k, x in enumerate(lines) if x.startswith(f"{key} =")]
    if same:
        lines[same[0]] = line
    else:
        lines.append(line)
    text = "\n".join(lines) + "\n"
    with pytest.raises(BatchError) as err:
        load_batch(
            _write(tmp_path, text, "period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.1\n")
        )
    msg = " ".join(str(err.value).split())
    assert "runs[0] (AAA-cut)" in msg and piece in msg, msg


def test_transition_keys_need_the_transition_kind(tmp_path):
    text = ONE.replace('kind = "transition"\n', "")
    with pytest.raises(BatchError, match=r'periods only apply to kind = "transition"'):
        load_batch(_write(tmp_path, text))


@pytest.mark.parametrize(
    "csv, piece",
    [
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.1\n2,AAA,BBB,0\n",
         "periods [1] are missing"),
        ("period,importer,exporter,trade_cost_change\n0,AAA,XYZ,-0.1\n", "'XYZ'"),
        ("period,importer,exporter,trade_cost_change\n0,AAA,BBB,nan\n", "not a finite number"),
    ],
)  # fmt: skip
def test_path_table_of_a_run_checked_when_read(tmp_path, csv, piece):
    text = ONE.replace('importer = "AAA"\ntrade_cost_change = -0.10\n', 'path = "shock.csv"\n')
    with pytest.raises(BatchError) as err:
        load_batch(_write(tmp_path, text, csv))
    assert piece in str(err.value)


def test_path_table_run_parsed(tmp_path):
    text = ONE.replace('importer = "AAA"\ntrade_cost_change = -0.10\n', 'path = "shock.csv"\n')
    csv = "period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.05\n1,AAA,BBB,-0.1\n"
    (run,) = load_batch(_write(tmp_path, text, csv)).runs
    assert run.transition["path"] == "shock.csv" and len(run.transition["table"]) == 2
    fp = run.fingerprint(load_batch(tmp_path / "batch.toml"))
    (tmp_path / "shock.csv").write_text(csv.replace("-0.1", "-0.2"))
    assert (
        load_batch(tmp_path / "batch.toml").runs[0].fingerprint(load_batch(tmp_path / "batch.toml"))
        != fp
    )  # a changed table re-runs the run


def test_transition_run_with_instruments_parsed(tmp_path):
    """A transition run takes the scenario's instruments (from period 0 on); with a path
    table they are refused (the table keeps the baseline's instruments)."""
    text = ONE + 'rebate = "labor-income"\nlabor_tax = {AAA = 0.1}\ntariff_change = 0.05\n'
    (run,) = load_batch(_write(tmp_path, text)).runs
    assert run.kind == "transition" and run.scenario.rebate == "labor-income"
    assert dict(run.scenario.labor_tax) == {"AAA": 0.1}
    text = ONE.replace('importer = "AAA"\ntrade_cost_change = -0.10\n', 'path = "shock.csv"\n')
    csv = "period,importer,exporter,trade_cost_change\n0,AAA,BBB,-0.05\n"
    with pytest.raises(BatchError, match=r"path and the scenario key\(s\) \['rebate'\]"):
        load_batch(_write(tmp_path, text + 'rebate = "labor-income"\n', csv))


@pytest.mark.slow
def test_transition_run_on_a_dask_cluster(tmp_path):
    pytest.importorskip("dask.distributed")
    spec = load_batch(_write(tmp_path, ONE.replace('welfare = "none"', 'welfare = "importer"')))
    summary = run_batch(spec, tmp_path / "out", workers=1)
    assert summary["runs_ok"] == 1, summary["runs"]
    s = json.loads((tmp_path / "out" / "runs" / "AAA-cut" / "summary.json").read_text())
    assert set(s["welfare"]) == {"AAA"}
    assert summary["runs"][0]["mean_gain_percent"]["AAA"] == pytest.approx(
        s["welfare"]["AAA"]["transition"]["mean_gain_percent"]
    )


def test_tfp_transition_entry_is_read(tmp_path):
    """A TFP change is a transition run like the others (checked when read, no solve)."""
    text = ONE.replace(
        'importer = "AAA"\ntrade_cost_change = -0.10\n', "tfp_change = {AAA = 0.05}\n"
    )
    (run,) = load_batch(_write(tmp_path, text)).runs
    assert run.kind == "transition" and run.scenario.tfp_change == {"AAA": 0.05}
