"""Property-based tests of the command line (issue 16): for generated options, a command
either gets past every check or exits 2 with one line on stderr; it writes nothing outside
its ``--out`` folder and leaves every file that was there byte-identical.

No equilibrium is solved: the step after the checks (the solve, the calibration) is
replaced by one that raises :class:`Reached`, which counts as "the input was accepted".
``hatrade table1`` (a regression on the shipped data, fast) runs for real.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import hatrade
from hatrade.cli import app
from smallworld import small_toml

runner = CliRunner()

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


class Reached(Exception):
    """The command got past its checks to the expensive step."""


def _reached(*args, **kwargs):
    raise Reached


@contextmanager
def no_work():
    """Replace every expensive step behind the commands' checks by :func:`_reached`."""
    import hatrade.calibration.calibrate as cal_mod
    import hatrade.calibration.micro as micro_mod
    import hatrade.cli.counterfactual as cli_cf
    import hatrade.cli.elasticity as cli_el

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_cf, "_solve", _reached)
        mp.setattr(cli_el, "_equilibrium", _reached)
        mp.setattr(hatrade, "solve_equilibrium", _reached)
        mp.setattr(cal_mod, "calibrate", _reached)
        mp.setattr(micro_mod, "calibrate_micro", _reached)
        yield


# ----------------------------------------------------------------------------- a workspace

#: Where ``--out`` points, relative to the workspace (see :func:`workspace`).
OUT_CHOICES = (
    "in/new",
    "in/new/deeper",
    "in/empty",
    "in/user",  # a folder of the user's files
    "in/user/notes.txt",  # a file
    "in",  # the folder holding the config
    "sibling",
)


def workspace(root: Path) -> Path:
    """A workspace: ``in/small.toml`` (a 3-country world), ``in/bad.toml`` (malformed),
    ``in/user/`` (the user's files, among them a table1.csv and a summary.json),
    ``in/empty/``, ``in/cf/summary.json`` (a malformed counterfactual summary)."""
    inner = root / "in"
    (inner / "user").mkdir(parents=True)
    (inner / "empty").mkdir()
    (inner / "cf").mkdir()
    (inner / "small.toml").write_text(small_toml())
    (inner / "bad.toml").write_text("[household]\nn_a = 20.7\ngamma = 'x'\n")
    (inner / "user" / "notes.txt").write_text("mine")
    (inner / "user" / "table1.csv").write_text("my table")
    (inner / "user" / "summary.json").write_text('{"kind": "counterfactual"}')
    (inner / "cf" / "summary.json").write_text('{"kind": "counterfactual", "by_country": 1}')
    return inner


def snapshot(root: Path) -> dict:
    """Every path under ``root``: bytes for files, None for folders."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def check_run(args: list[str], root: Path, out: Path | None):
    """Run ``hatrade ARGS`` and check the properties; returns the result."""
    before = snapshot(root)
    with no_work():
        result = runner.invoke(app, args)
    after = snapshot(root)
    # every file that was there is still there, byte-identical
    for path, data in before.items():
        assert path in after, f"{args}: {path} was removed"
        assert after[path] == data, f"{args}: {path} was changed"
    # anything new lies inside --out
    new = [p for p in after if p not in before]
    if new:
        assert out is not None, f"{args} wrote {new} without --out"
        target = out.resolve()
        bad = [
            p
            for p in new
            if not p.resolve().is_relative_to(target)
            and not (after[p] is None and target.is_relative_to(p.resolve()))  # its parents
        ]
        assert not bad, f"{args} wrote outside --out: {bad}"
    if isinstance(result.exception, Reached):
        assert not new, f"{args} wrote {new} before its work"  # checks write nothing
        return result
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output, result.exception)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:"), (args, lines)
    return result


# ----------------------------------------------------------------------------- strategies

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-3, 40).map(str),
    st.sampled_from(["nan", "-inf", "1e999", "abc", "", "1,5", "0x10", "-0", "true"]),
)
codes = st.sampled_from(["H", "F", "G", "ZZZ", "h", "", " ", "H/../../x", "..", "H,F"])
country_lists = st.lists(codes, max_size=3).map(",".join)
names = st.sampled_from(["run", "../x", "a/b", ".hidden", "", "ok-1", "x\\y"])
outs = st.sampled_from(OUT_CHOICES)


def _out_args(root: Path, inner: Path, choice: str) -> tuple[list[str], Path]:
    out = root / choice
    return ["--out", str(out)], out


@SETTINGS
@given(
    importer=codes,
    change=numbers,
    n_nodes=numbers,
    countries=st.none() | country_lists,
    name=st.none() | names,
    out=outs,
    compare=st.sampled_from([None, "in/cf", "in/missing", "in/user"]),
    forbid=st.booleans(),
)
def test_counterfactual_options(importer, change, n_nodes, countries, name, out, compare, forbid):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inner = workspace(root)
        args = ["counterfactual", "--config", str(inner / "small.toml"), "--importer", importer]
        args += ["--trade-cost-change", change, "--n-nodes", n_nodes]
        if countries is not None:
            args += ["--countries", countries]
        if name is not None:
            args += ["--name", name]
        if compare is not None:
            args += ["--compare", str(root / compare)]
        if forbid:
            args.append("--forbid-d-below-one")
        extra, out_path = _out_args(root, inner, out)
        check_run(args + extra, root, out_path)


@SETTINGS
@given(
    config=st.sampled_from(["in/small.toml", "in/bad.toml", "in/missing.toml", "in/user"]),
    out=st.none() | outs,
    from_initial=st.booleans(),
)
def test_solve_options(config, out, from_initial):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inner = workspace(root)
        args = ["solve", "--config", str(root / config)]
        if from_initial:
            args.append("--from-initial")
        out_path = None
        if out is not None:
            extra, out_path = _out_args(root, inner, out)
            args += extra
        else:  # the default folder results/solve-<name> is relative: not taken here
            args += ["--out", str(root / "in" / "new")]
            out_path = root / "in" / "new"
        check_run(args, root, out_path)


@SETTINGS
@given(
    tol=numbers,
    max_iter=numbers,
    psi=st.none() | numbers,
    out=outs,
    resume=st.booleans(),
    micro=st.booleans(),
)
def test_calibrate_options(tol, max_iter, psi, out, resume, micro):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inner = workspace(root)
        args = ["calibrate", "--tol", tol, "--max-iter", max_iter]
        if psi is not None:
            args += ["--psi-target", psi]
        if resume:
            args.append("--resume")
        if micro:
            args += ["--micro-targets", str(inner / "small.toml")]
        extra, out_path = _out_args(root, inner, out)
        check_run(args + extra, root, out_path)


@SETTINGS
@given(
    out=outs,
    from_solve=st.sampled_from([None, "in/user", "in/missing", "in/empty"]),
    method=st.sampled_from(["fast", "slow"]),
)
def test_table1_options(out, from_solve, method):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inner = workspace(root)
        args = ["table1", "--method", method]
        if from_solve is not None:
            args += ["--from-solve", str(root / from_solve)]
        extra, out_path = _out_args(root, inner, out)
        result = check_run(args + extra, root, out_path)
        if result.exit_code == 0:
            assert (out_path / "table1.csv").is_file()


@SETTINGS
@given(
    command=st.sampled_from(["elasticities", "households"]),
    country=codes,
    transfer=numbers,
    simulate=numbers,
    out=outs,
)
def test_elasticities_and_households_options(command, country, transfer, simulate, out):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inner = workspace(root)
        args = [command, "--config", str(inner / "small.toml"), "--country", country]
        if command == "households":
            args += ["--transfer", transfer, "--simulate", simulate]
        extra, out_path = _out_args(root, inner, out)
        check_run(args + extra, root, out_path)
