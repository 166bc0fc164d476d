"""``hatrade data check``: validate and summarize a bilateral trade data set (docs/own-data.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ._common import EXIT_USER_ERROR, console, err_console, handle_errors, print_table

__all__ = ["register", "check_command", "trade_data_options"]

log = logging.getLogger(__name__)

HELP = "Trade data sets: validate and summarize your own bilateral trade data."

CHECK_HELP = (
    "Validate and summarize a trade table (CSV or Parquet: exporter, importer, trade value "
    "with domestic sales, pair covariates) and an optional country table (country, labor or "
    "population). Problems are listed with their rows; exit code 2 when any is an error."
)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group (``data check``) to ``app``."""
    sub = typer.Typer(help=HELP, no_args_is_help=True)
    sub.command("check", help=CHECK_HELP)(check_command)
    app.add_typer(sub, name="data")


def trade_data_options(
    file: Path,
    countries: Optional[Path],
    exporter: str,
    importer: str,
    value: str,
    year: Optional[str],
):
    """The :class:`~hatrade.data.tidy.TradeData` of the command-line options."""
    from hatrade.data.tidy import TradeColumns, read_trade_data

    cols = TradeColumns(exporter=exporter, importer=importer, value=value)
    return read_trade_data(file, countries, columns=cols, year=year)


def _summary_table(summary: dict) -> Table:
    tab = Table(title=f"Trade data {escape(summary['source'])}")
    tab.add_column("item")
    tab.add_column("value", justify="right")
    for key in ("countries", "rows", "total_trade", "domestic_share", "zero_flows"):
        v = summary[key]
        tab.add_row(key, f"{v:.4g}" if isinstance(v, float) else str(v))
    tab.add_row("labor from", escape(summary["labor_source"]))
    for name, s in summary["covariates"].items():
        tab.add_row(
            f"covariate {escape(name)}", f"{s['min']:.4g} / {s['mean']:.4g} / {s['max']:.4g}"
        )
    return tab


@handle_errors
def check_command(
    file: Path = typer.Argument(..., dir_okay=False, help="Trade table (.csv, .parquet)."),
    countries: Optional[Path] = typer.Option(
        None,
        "--countries",
        dir_okay=False,
        help="Country table (country, labor or population; optional output, expenditure). "
        "Without it, labor is taken proportional to the trade table's output column Y.",
    ),
    exporter: str = typer.Option("exporter", "--exporter", help="Exporter column."),
    importer: str = typer.Option("importer", "--importer", help="Importer column."),
    value: str = typer.Option("trade", "--value", help="Trade value column."),
    year: Optional[str] = typer.Option(None, "--year", help="Year, when the table has several."),
    formula: Optional[str] = typer.Option(
        None,
        "--formula",
        help="Also check a specification, e.g. 'lndist + contiguity + common_language + pta'.",
    ),
) -> None:
    """Validate and summarize a trade data set (see CHECK_HELP)."""
    from hatrade.data.tidy import check_trade_data

    data = trade_data_options(file, countries, exporter, importer, value, year)
    report = check_trade_data(data)
    print_table(_summary_table(report.summary))
    for p in report.problems:
        colour = "red" if p.severity == "error" else "yellow"
        err_console.print(f"[{colour}]{escape(p.text())}[/{colour}]", soft_wrap=True)
    if not report.ok:
        err_console.print(
            f"[bold red]Error:[/bold red] [red]{len(report.errors)} problem(s) rule the data "
            "out (listed above).[/red]"
        )
        raise typer.Exit(EXIT_USER_ERROR)
    if formula is not None:
        from hatrade.data.specification import build_specification

        spec = build_specification(data, formula)
        console.print(
            f"formula ok: regressors {', '.join(spec.names)} on {len(spec.importer)} pairs."
        )
    console.print("data ok" + (" (with warnings)" if report.problems else "") + ".")
