"""The ``hatrade`` command line (entry point ``hatrade = "hatrade.cli:app"``).

Each command lives in a module of this package that defines ``register(app)``; to add a
command, write such a module and add it to ``_COMMAND_MODULES`` below.

Exit codes: 0 success; 1 some part of a run failed while the rest went on (a replicate
stage, a batch run; each reported); 2 bad input (usage errors, invalid parameters or files)
or a solve that failed, reported as one red line on stderr without a traceback (add
``-vv`` to log it); 130 interrupted (Ctrl-C; rerun the same command to resume).
"""

from __future__ import annotations

import typer

from . import (
    batch,
    calibrate,
    counterfactual,
    data,
    efficient,
    elasticity,
    gravity,
    policy,
    replicate,
    solve,
    transition,
)
from ._common import HatradeCommand, HatradeGroup, setup_logging

__all__ = ["app"]

app = typer.Typer(
    name="hatrade",
    cls=HatradeGroup,
    help="Solve and analyse the Heterogeneous Agent Trade model (Waugh 2023).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from hatrade import __version__

        typer.echo(f"hatrade {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        help="Show the version and exit.",
        callback=_version_callback,
        is_eager=True,
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output on stderr: -v info, -vv debug."
    ),
) -> None:
    """Solve and analyse the Heterogeneous Agent Trade model (Waugh 2023)."""
    setup_logging(verbose)


_COMMAND_MODULES = (
    solve,
    gravity,
    calibrate,
    efficient,
    elasticity,
    counterfactual,
    transition,
    batch,
    replicate,
    data,
    policy,
)
for _module in _COMMAND_MODULES:
    _module.register(app)
for _info in app.registered_commands:  # flags show no <bool> in the help
    if _info.cls in (None, typer.core.TyperCommand):
        _info.cls = HatradeCommand
