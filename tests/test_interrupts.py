"""Ctrl-C: every command exits with 130 and one line, leaves no temporary files in its
output folder, and stops its worker threads without a C++ ``terminate`` (issue 16, class 6).

The commands run in a subprocess that gets SIGINT once it is busy: ``hatrade replicate``'s
runner with stub stages (one lane spinning in a long compiled JAX loop, one stepping in
Python, in threads: ``parallel=True``) and ``hatrade solve`` on examples/two_country.toml.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hatrade.cli._common import run_interruptibly

ROOT = Path(__file__).resolve().parents[1]
RESUME = "interrupted; rerun the same command to resume"

REPLICATE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import jax, jax.numpy as jnp
    import typer
    from hatrade.cli._common import handle_errors
    from hatrade.io.cache import Cache
    from hatrade.replicate import paper_setup, replicate
    from hatrade.replicate.report import StageResult
    from hatrade.replicate.stages import STAGES

    started = set()

    def mark(name):
        started.add(name)
        if {"table1", "unilateral"} <= started:
            print("READY", flush=True)

    def equilibrium(ctx):
        ctx.write_text("x", "eq.txt")
        return StageResult("equilibrium", "eq")

    def python_steps(ctx):
        ctx.write_text("partial", "partial.txt")
        mark(ctx.stage)
        for k in range(10**6):
            ctx.step(f"step {k}")
            time.sleep(0.05)

    @jax.jit
    def spin(n):
        body = lambda c: (c[0] + 1, jnp.sin(c[1]) + 1.0)
        return jax.lax.while_loop(lambda c: c[0] < n, body, (0, 0.0))[1]

    def compiled_loop(ctx):
        ctx.write_text("partial", "partial.txt")
        spin(10).block_until_ready()
        mark(ctx.stage)
        spin(10**12).block_until_ready()

    STAGES["equilibrium"] = equilibrium
    STAGES["table1"] = python_steps
    STAGES["unilateral"] = STAGES["global"] = compiled_loop
    setup = paper_setup(quick=True, n_a=20, countries=("AUT", "FIN", "USA"),
                        household={"n_perm": 3, "n_iid": 1}, ev_nodes=4)

    @handle_errors
    def main():
        replicate(Path(sys.argv[1]), setup=setup, cache=Cache(Path(sys.argv[2])),
                  parallel=True, stages=["equilibrium", "table1", "unilateral", "global"])

    try:
        main()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    """
)


def _start(args, cwd=ROOT, *, compile_cache: bool = True) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="200")
    if not compile_cache:
        # the test suite's persistent JAX cache (tests/conftest.py) would let a warm run
        # finish before the interrupt arrives
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt(proc: subprocess.Popen, limit: float = 20.0):
    """SIGINT; returns (exit code, stdout, stderr, seconds to exit)."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=limit)
    return proc.returncode, out, err, time.perf_counter() - t0


def _wait_for(stream, text: str, limit: float = 120.0) -> None:
    t0 = time.perf_counter()
    for line in stream:
        if text in line:
            return
        assert time.perf_counter() - t0 < limit, f"no {text!r} after {limit} s"
    raise AssertionError(f"stream ended before {text!r}")


def _check_clean(rc, err, out_dir: Path, message: str):
    assert rc == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].strip() == message
    assert sum(message in line for line in lines) == 1
    assert "Traceback" not in err and "terminate called" not in err
    if out_dir.exists():
        left = [p.name for p in out_dir.rglob("*") if p.name.endswith((".tmp", ".old"))]
        assert left == [], left


def test_replicate_threads_interrupted(tmp_path):
    """Lanes in threads, one inside a compiled loop that would run for hours: exit 130
    within seconds, the stages' temporary folders removed, finished stages kept."""
    script = tmp_path / "run.py"
    script.write_text(REPLICATE_SCRIPT)
    out = tmp_path / "out"
    proc = _start([str(script), str(out), str(tmp_path / "cache")])
    _wait_for(proc.stdout, "READY")
    time.sleep(0.5)
    rc, _, err, seconds = _interrupt(proc)
    _check_clean(rc, err, out, RESUME)
    assert seconds < 10
    assert (out / "equilibrium" / "eq.txt").is_file()
    assert not (out / "table1").exists() and not (out / "unilateral").exists()


def test_solve_command_interrupted(tmp_path):
    """``hatrade solve``: Ctrl-C while the first household solve compiles and runs."""
    out = tmp_path / "solve"
    proc = _start(
        [
            "-c",
            "from hatrade.cli import app; app()",
            "solve",
            "--config",
            str(ROOT / "examples" / "two_country.toml"),
            "--out",
            str(out),
        ],
        compile_cache=False,
    )
    _wait_for(proc.stderr, "asset points")
    time.sleep(1.0)
    rc, _, err, seconds = _interrupt(proc)
    _check_clean(rc, err, out, "interrupted")
    assert seconds < 10
    assert not out.exists() or not any(out.iterdir())


def test_run_interruptibly_passes_results_and_errors():
    assert run_interruptibly(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ValueError, match="boom"):
        run_interruptibly(lambda: (_ for _ in ()).throw(ValueError("boom")))
