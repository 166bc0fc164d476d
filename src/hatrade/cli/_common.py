"""Shared pieces of the command line: consoles, logging, clean error reporting."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading

import typer
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand, TyperGroup, TyperOption

from hatrade.analysis.gravity import TradeTableError
from hatrade.core.errors import EquilibriumError
from hatrade.core.params import ParameterError
from hatrade.data import DataFileError
from hatrade.io.config import ConfigError
from hatrade.io.folders import OutputFolderError
from hatrade.io.results import ResultsError

__all__ = [
    "console",
    "err_console",
    "USER_ERRORS",
    "EXIT_USER_ERROR",
    "EXIT_INTERRUPTED",
    "handle_errors",
    "interrupted",
    "fail",
    "setup_logging",
    "progress",
    "StepProgress",
    "print_table",
    "HatradeCommand",
    "HatradeGroup",
    "calibration_option",
    "config_option",
    "out_option",
    "load_world_config",
]

#: Results and tables (stdout).
console = Console(highlight=False)
#: Progress, log records and errors (stderr), so that stdout stays clean.
err_console = Console(stderr=True, highlight=False)

#: Exit code for bad input and failed solves (the same code click uses for usage errors).
EXIT_USER_ERROR = 2
#: Exit code after Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130

#: Errors that are reported as one red line (no traceback). ConfigError and
#: OutputFolderError are ParameterErrors.
USER_ERRORS = (
    ParameterError,
    ConfigError,
    OutputFolderError,
    EquilibriumError,
    DataFileError,
    TradeTableError,
    ResultsError,
    OSError,
)

log = logging.getLogger("hatrade.cli")


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with :data:`EXIT_USER_ERROR`."""
    err_console.print(f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def handle_errors(fn):
    """Decorator for commands: known errors become one clear message and exit code 2;
    Ctrl-C one line and exit code 130 (:func:`interrupted`). The command runs in a worker
    thread (:func:`run_interruptibly`), so that Ctrl-C is handled at once.

    With ``-vv`` the traceback is logged at DEBUG level too.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return run_interruptibly(fn, *args, **kwargs)
        except USER_ERRORS as err:
            log.debug("error details", exc_info=True)
            fail(str(err))
        except KeyboardInterrupt as err:
            interrupted(str(err))

    return wrapper


def run_interruptibly(fn, *args, grace: float = 5.0, **kwargs):
    """``fn(*args, **kwargs)`` in a worker thread while this thread waits in short joins.

    A compiled JAX call holds off Python's signal handling in the thread that makes it
    until it returns (tens of seconds in a large solve), so the main thread only waits: on
    Ctrl-C it raises :class:`KeyboardInterrupt` in the worker, which sees it at its next
    Python step (at once, or when its current compiled call returns) and unwinds (atomic
    writes remove their temporary files), and waits ``grace`` seconds at most for it before
    re-raising here. The worker's result is returned, its exception re-raised.
    """
    box: dict = {}
    done = threading.Event()  # not Thread.join: an interrupted join may leave is_alive wrong

    def main():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=main, daemon=True, name="hatrade-command")
    worker.start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt as err:
        _raise_in(worker, KeyboardInterrupt)
        if not done.wait(grace) or not isinstance(box.get("error"), KeyboardInterrupt):
            raise err from None
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _raise_in(thread: threading.Thread, exc: type) -> None:
    """Raise ``exc`` in ``thread`` at its next Python step (CPython's async exceptions)."""
    import ctypes

    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exc)
        )


def interrupted(message: str = "") -> None:
    """After Ctrl-C: print one line (``message``, default ``interrupted``) and exit with
    :data:`EXIT_INTERRUPTED`.

    Every file is written atomically, so nothing half-written is left. A worker thread
    still inside a compiled JAX call (it stops at its next step, which may be seconds
    away) must not meet the interpreter's shutdown, which would wait for it or abort in
    C++; then the process ends here at once, after flushing its output.
    """
    err_console.print(f"[red]{escape(message or 'interrupted')}[/red]", soft_wrap=True)
    workers = [t for t in threading.enumerate() if t.name.startswith("hatrade-") and t.is_alive()]
    if workers:
        log.debug("ending with %d worker thread(s) still running", len(workers))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_INTERRUPTED)


def setup_logging(verbosity: int) -> None:
    """Log level of the ``hatrade`` loggers: WARNING, INFO (-v) or DEBUG (-vv), to stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("hatrade")
    logger.setLevel(level)
    if not any(getattr(h, "_hatrade_cli", False) for h in logger.handlers):
        handler = RichHandler(
            console=err_console, show_path=False, markup=False, rich_tracebacks=False
        )
        handler._hatrade_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


class StepProgress(Progress):
    """A rich :class:`~rich.progress.Progress` whose rows can be finished.

    :meth:`finish` marks a row done: its spinner stops and its elapsed time is frozen at the
    time the step took (a row left running would keep counting until the whole display
    ends). Rows still running when the display closes (the command ends) are finished then.
    """

    def finish(self, task: TaskID, description: str | None = None) -> None:
        """Mark row ``task`` done (optionally with a last ``description``)."""
        kw = {} if description is None else {"description": description}
        self.update(task, total=1, completed=1, **kw)
        self.stop_task(task)

    def stop(self) -> None:
        for task in self.tasks:
            if not task.finished:
                self.finish(task.id)
        super().stop()


def progress(*columns) -> StepProgress:
    """Progress rows on stderr (kept when done): a spinner, the description, ``columns``
    (e.g. a bar) and the elapsed time of each row (frozen when the row is finished with
    :meth:`StepProgress.finish` or completes its total)."""
    return StepProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        *columns,
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def print_table(table: Table, out: Console | None = None) -> None:
    """Print ``table`` at its natural width, so that no cell is ever truncated (``1.3...``).

    Rich shrinks a table to the console width (80 columns when the output is not a
    terminal, e.g. piped to a file) and cuts numbers to fit. Here a table too wide for the
    console is drawn in a compact layout (no vertical lines, less padding), and when even
    that is too wide it is printed whole (a terminal wraps its long lines, a file keeps
    them).
    """
    out = out or console
    for col in table.columns:
        col.no_wrap = True
        col.overflow = "ignore"

    def natural_width() -> int:
        return Measurement.get(out, out.options.update(width=10_000), table).maximum

    width = natural_width()
    if width > out.width:  # a compact layout first: no vertical lines, less padding
        table.box, table.show_edge, table.pad_edge = box.SIMPLE_HEAD, False, False
        table.collapse_padding = True
        width = natural_width()
    if width > out.width:
        table.padding = (0, 0)
        width = natural_width()
    if width <= out.width:
        out.print(table)
        return
    old = out.width
    out.width = width  # rich renders no wider than the console
    try:
        out.print(table, crop=False)
    finally:
        out.width = old


# ----------------------------------------------------------------------------- help
# Plain flags (``--serial``), counters (``-v``) and ``--help`` take no value; typer's rich
# help shows their type as ``<bool>``/``<int>`` unless they have a (here empty) metavar.


def _flags_without_metavar(params: list) -> list:
    for p in params:
        if isinstance(p, TyperOption) and (p.is_flag or p.count) and p.metavar is None:
            p.metavar = ""
    return params


class HatradeCommand(TyperCommand):
    """A typer command whose help shows no value placeholder after flags."""

    def get_params(self, ctx):
        return _flags_without_metavar(super().get_params(ctx))


class HatradeGroup(TyperGroup):
    """The ``hatrade`` group: as :class:`HatradeCommand` for its own options, and usage
    errors (a bad option value, an unknown option, a missing argument) reported as one
    line on stderr with exit code 2, like every other input error."""

    def get_params(self, ctx):
        return _flags_without_metavar(super().get_params(ctx))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err_console.print("[red]Aborted.[/red]")
            sys.exit(1)
        except typer.TyperException as err:  # click's errors (typer vendors click)
            if type(err).__name__ == "NoArgsIsHelpError":  # the help was printed
                sys.exit(err.exit_code)
            if getattr(err, "exit_code", None) != EXIT_USER_ERROR:  # e.g. a file error
                err.show()
                sys.exit(getattr(err, "exit_code", 1))
            ctx, hint = getattr(err, "ctx", None), ""
            if ctx is not None:
                hint = f" (see '{ctx.command_path} {ctx.help_option_names[0]}')"
            err_console.print(
                f"[bold red]Error:[/bold red] [red]{escape(err.format_message())}{hint}[/red]",
                soft_wrap=True,
            )
            sys.exit(err.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


# ----------------------------------------------------------------------------- options
# Each call returns a new typer option (typer.Option objects are not shared between commands).


def calibration_option(help: str):
    """``--calibration/-c NAME`` (a shipped calibration, case-insensitive; default None)."""
    return typer.Option(None, "--calibration", "-c", case_sensitive=False, help=help)


def config_option(help: str):
    """``--config/-f FILE`` (a world TOML file) or ``--world DIR`` (a world folder of
    ``hatrade calibrate --data``, read as its ``world.toml``); default None."""
    return typer.Option(
        None,
        "--config",
        "-f",
        "--world",
        help=help + " --world DIR: a world folder (hatrade calibrate --data), its world.toml.",
    )


def out_option(help: str):
    """``--out/-o FOLDER`` (default None: the command names a folder under results/)."""
    return typer.Option(None, "--out", "-o", file_okay=False, help=help)


def load_world_config(calibration, config, **calibration_kwargs):
    """The :class:`~hatrade.io.config.SolveConfig` of ``--calibration`` or ``--config``.

    Both given, or a true ``calibration_kwargs`` flag (e.g. ``from_initial``, reported as
    ``--from-initial``) with ``--config``, is a usage error (:func:`fail`). Neither given:
    the ``baseline`` calibration.
    """
    from hatrade.io.config import calibration_config, load_config

    if calibration is not None and config is not None:
        fail("give either --calibration or --config, not both.")
    if config is not None:
        used = ["--" + k.replace("_", "-") for k, v in calibration_kwargs.items() if v]
        if used:
            fail(f"{', '.join(used)} only applies to --calibration, not to --config.")
        return load_config(config)
    return calibration_config(
        calibration.value if calibration is not None else "baseline", **calibration_kwargs
    )
