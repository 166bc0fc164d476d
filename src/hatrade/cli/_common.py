"""Shared pieces of the command line: consoles, logging, clean error reporting."""

from __future__ import annotations

import functools
import logging

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from ..config import ConfigError
from ..data import DataFileError
from ..gravity import TradeTableError
from ..params import ParameterError
from ..results import ResultsError
from ..world import EquilibriumError

__all__ = ["console", "err_console", "USER_ERRORS", "EXIT_USER_ERROR", "handle_errors",
           "fail", "setup_logging"]

#: Results and tables (stdout).
console = Console(highlight=False)
#: Progress, log records and errors (stderr), so that stdout stays clean.
err_console = Console(stderr=True, highlight=False)

#: Exit code for bad input and failed solves (the same code click uses for usage errors).
EXIT_USER_ERROR = 2

#: Errors that are reported as one red line (no traceback). ConfigError is a ParameterError.
USER_ERRORS = (ParameterError, ConfigError, EquilibriumError, DataFileError, TradeTableError,
               ResultsError, OSError)

log = logging.getLogger("hatrade.cli")


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with :data:`EXIT_USER_ERROR`."""
    err_console.print(f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def handle_errors(fn):
    """Decorator for commands: known errors become one clear message and exit code 2.

    With ``-vv`` the traceback is logged at DEBUG level too.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            log.debug("error details", exc_info=True)
            fail(str(err))
        except KeyboardInterrupt:
            err_console.print("[red]Interrupted.[/red]")
            raise typer.Exit(130) from None

    return wrapper


def setup_logging(verbosity: int) -> None:
    """Log level of the ``hatrade`` loggers: WARNING, INFO (-v) or DEBUG (-vv), to stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("hatrade")
    logger.setLevel(level)
    if not any(getattr(h, "_hatrade_cli", False) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_path=False, markup=False,
                              rich_tracebacks=False)
        handler._hatrade_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
