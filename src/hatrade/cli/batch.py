"""``hatrade batch``: many counterfactuals from a TOML file on a Dask cluster, resumably
(:mod:`hatrade.io.batch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn
from rich.table import Table

from ._common import (
    console,
    err_console,
    fail,
    handle_errors,
    out_option,
    print_table,
    progress,
)

__all__ = ["register", "batch_command"]


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app``."""
    app.command("batch")(batch_command)


@handle_errors
def batch_command(
    file: Path = typer.Argument(..., exists=False, dir_okay=False, help="A batch TOML file."),
    out: Optional[Path] = out_option(
        "Batch folder (default results/batch-<name>); an interrupted batch there resumes."
    ),
    scheduler: Optional[str] = typer.Option(
        None,
        "--scheduler",
        help="Address of a Dask scheduler (tcp://host:8786); default: a local cluster.",
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Worker processes of the local cluster."
    ),
    serial: bool = typer.Option(False, "--serial", help="Run in this process, without Dask."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Re-run runs recorded as failed."
    ),
) -> None:
    """Run many counterfactuals (a batch file) on a Dask cluster, resumably."""
    from hatrade.io.batch import load_batch, run_batch

    if serial and scheduler:
        fail("give either --serial or --scheduler, not both.")
    spec = load_batch(file)  # every entry checked before any solve
    out = Path(out) if out is not None else Path("results") / f"batch-{spec.name}"
    err_console.print(
        f"[bold]{escape(spec.name)}[/bold]: {len(spec.runs)} runs -> "
        f"{escape(str(out))} ({'serial' if serial else scheduler or 'local Dask cluster'})"
    )
    with progress(BarColumn(), MofNCompleteColumn()) as prog:
        task = prog.add_task("runs", total=len(spec.runs))

        def report(done: int, total: int, row: dict) -> None:
            status = row.get("status")
            extra = " (resumed)" if row.get("resumed") else ""
            prog.update(
                task, completed=done, description=f"last: {row.get('name')} {status}{extra}"
            )
            if status != "ok" and not row.get("resumed"):
                err_console.print(
                    f"[red]run {escape(str(row.get('name')))} failed:[/red] "
                    f"{escape(str(row.get('error')))}"
                )

        summary = run_batch(
            spec,
            out,
            scheduler=scheduler,
            workers=workers,
            executor="serial" if serial else "dask",
            retry_failed=retry_failed,
            progress=report,
        )
    tab = Table(
        title=f"Batch {escape(spec.name)}: {summary['runs_ok']} ok, "
        f"{summary['runs_failed']} failed",
        title_justify="left",
    )
    for col in ("run", "status", "country", "mean gain %", "ACR %", "R change %"):
        tab.add_column(col)
    for r in summary["runs"]:
        gains = r.get("mean_gain_percent") or {}
        acr = r.get("acr_percent") or {}
        Rc = r.get("R_change_percent")
        if gains:
            for c, g in gains.items():
                tab.add_row(
                    r["name"],
                    r["status"],
                    c,
                    f"{g:.3f}",
                    f"{acr.get(c, float('nan')):.3f}",
                    "" if Rc is None else f"{Rc:+.4f}",
                )
        else:
            tab.add_row(r["name"], r["status"], "", "", "", "" if Rc is None else f"{Rc:+.4f}")
    print_table(tab)
    console.print(f"Wrote {escape(str(out))}/batch_summary.json")
    if summary["runs_failed"]:
        raise typer.Exit(1)
