"""``hatrade replicate``: compute everything the paper reports and write an HTML report.

Exit codes: 0 when every stage succeeded; 1 when some stage failed (the report is still
written and shows the error); 2 for bad input (see :mod:`hatrade.cli`); 130 after Ctrl-C
(within seconds: the stages stop, their temporary folders are removed, finished stages and
cached results stay, so rerunning the same command resumes).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ._common import console, err_console, fail, handle_errors, out_option

__all__ = ["register", "replicate_command", "RichProgress"]

log = logging.getLogger(__name__)

REPLICATE_HELP = (
    "Compute from the shipped data everything the paper reports, for the baseline and the "
    "log model (equilibria, Table 1, model-vs-data trade, US elasticities, the micro table, "
    "unilateral and global welfare counterfactuals, efficient vs. decentralized trade), and "
    "write OUT/report.html (self-contained) with every result file. Solved equilibria and "
    "household results are cached: a rerun loads them."
)

_STATUS_STYLE = {"ok": "green", "partial": "yellow", "failed": "red", "skipped": "dim"}


def register(app: typer.Typer) -> None:
    """Add ``replicate`` to ``app``."""
    app.command("replicate", help=REPLICATE_HELP)(replicate_command)


class RichProgress:
    """One rich progress display across all stages (a bar over the stages, the current step
    as its description), with a line per finished stage."""

    def __init__(self, console_=None):
        from hatrade.replicate import ProgressSink

        self._base = ProgressSink()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console_ or err_console,
            transient=False,
        )
        self.task = None
        self._stage = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def run_start(self, stages) -> None:
        self.task = self.progress.add_task("starting", total=len(stages), stage="")

    def stage_start(self, index: int, name: str, title: str) -> None:
        self._stage = name
        self.progress.update(self.task, stage=name, description=escape(title))

    def step(self, text: str) -> None:
        self.progress.update(self.task, description=escape(text))

    def stage_end(self, index: int, result) -> None:
        style = _STATUS_STYLE.get(result.status, "")
        cache = result.cache or {}
        extra = ""
        if cache.get("hit") or cache.get("miss"):
            extra = (
                f" [dim]({cache.get('miss', 0)} computed, {cache.get('hit', 0)} from cache)[/dim]"
            )
        self.progress.console.print(
            f"[{style}]{result.status.upper():>7}[/{style}] {escape(result.title)}: "
            f"{result.seconds:.1f} s{extra}"
        )
        if result.error:
            first = result.error.strip().splitlines()[0]
            self.progress.console.print(f"         [red]{escape(first[:300])}[/red]")
        self.progress.advance(self.task)


def _transitions_option():
    return typer.Option(
        False,
        "--transitions",
        help="Also run the stage beyond the paper: the two experiments' transitions "
        "(T = 300) with welfare at t = 0 beside the steady-state numbers, for the baseline "
        "model (two more 19-country equilibria, two transitions and four EV solves).",
    )


@handle_errors
def replicate_command(
    out: Optional[Path] = out_option(
        "Output folder (default results/replicate, or results/replicate-quick with "
        "--quick). A previous replicate folder there is updated stage by stage; a "
        "folder with other files is refused."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Coarse asset grid (30 points instead of 100), beta and wages re-solved on it: "
        "a complete report in about a minute on two cores, clearly labeled approximate.",
    ),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        help="Recompute everything instead of loading cached results (the fresh results "
        "replace the cached ones).",
    ),
    cache_dir: Optional[Path] = typer.Option(
        None,
        "--cache-dir",
        file_okay=False,
        help="Cache folder (default: $HATRADE_CACHE, else ~/.cache/hatrade).",
    ),
    compile_cache: bool = typer.Option(
        True,
        "--compile-cache/--no-compile-cache",
        help="Keep JAX's compiled functions in CACHE/jax (JAX's persistent compilation "
        "cache, for this command only): later runs skip most compilation, about half "
        "of a cold --quick run. Results do not depend on it.",
    ),
    transitions: bool = _transitions_option(),
    readme: Optional[Path] = typer.Option(
        None,
        "--readme",
        dir_okay=False,
        help="Also rewrite the generated 'Reproducing the paper' section of this README "
        "(between its hatrade-replicate markers), copying the main figures to "
        "docs/figures/ next to it.",
    ),
) -> None:
    """Compute everything the paper reports and write an HTML report (see REPLICATE_HELP)."""
    import hatrade.replicate as rep
    from hatrade.io.cache import Cache

    setup = rep.paper_setup(quick=quick)
    if out is None:
        out = Path("results") / ("replicate-quick" if quick else "replicate")
    try:
        rep.check_output_dir(out)
    except rep.ReplicateError as err:
        fail(str(err))
    if readme is not None:
        _check_readme(readme)
    cache = Cache(cache_dir, read=not no_cache)
    compile_cache = cache.check() and compile_cache  # unusable folder: one warning, no cache
    n = setup.models[0].world.M
    err_console.print(
        "[bold]hatrade replicate[/bold]"
        f"{' [yellow](--quick: approximate)[/yellow]' if quick else ''}: "
        f"{n} countries, {', '.join(escape(m.title) for m in setup.models)}; "
        f"{setup.n_a} asset points; cache {escape(str(cache.root))}"
        f"{' (not read: --no-cache)' if no_cache else ''}"
        f"{' (not usable: results are not stored)' if cache.unusable else ''}"
        f"{'; compiled functions cached' if compile_cache else ''}."
    )
    jit_cache = (
        rep.jax_compilation_cache(cache.root / "jax") if compile_cache else contextlib.nullcontext()
    )
    with jit_cache, RichProgress() as prog:
        stages = _stages(transitions)
        result = rep.replicate(out, setup=setup, cache=cache, progress=prog, stages=stages)
    _print_summary(result)
    if readme is not None and result.report.is_file():
        path = _write_readme(readme, result)
        console.print(f"Updated {escape(str(path))}.")
    if not all(s.status == "ok" for s in result.stages):
        raise typer.Exit(1)


def _stages(transitions: bool) -> list[str]:
    """The stages to run: the default ones, and the optional ``transitions`` stage."""
    from hatrade.replicate.stages import STAGE_NAMES

    return list(STAGE_NAMES) + (["transitions"] if transitions else [])


def _check_readme(readme: Path) -> None:
    from hatrade.replicate.readme import README_BEGIN, README_END

    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as err:
        fail(f"--readme {readme}: cannot read it ({err}).")
    if README_BEGIN not in text or README_END not in text:
        fail(
            f"--readme {readme}: it lacks the markers of the generated section; add the two "
            f"lines\n{README_BEGIN}\n{README_END}\nwhere the 'Reproducing the paper' table "
            "belongs."
        )


#: Figures shown in the README (stage figure ids), in order.
README_FIGURES = (
    ("trade-fit-baseline", "Bilateral trade: model vs. data (baseline)"),
    ("elasticities-baseline", "US trade elasticities by partner (baseline)"),
    ("micro-assets-two-country", "Trade elasticities by household state"),
    (
        "unilateral-quintiles",
        "US welfare gains by expenditure quintile, "
        "baseline vs. log model (10% cut of US import "
        "costs)",
    ),
    ("efficient-baseline", "Efficient vs. decentralized trade (baseline)"),
)

#: Width (pixels) of the README's copies of the figures (wide figures: the second).
README_FIGURE_WIDTH = (720, 960)


def _small_png(src: Path, dst: Path, width: tuple[int, int] = README_FIGURE_WIDTH) -> None:
    """Copy a PNG figure, downsampled to ``width[0]`` pixels (``width[1]`` for figures more
    than 1.6 times as wide as high) and reduced to a 256-color palette (a few tens of kB,
    for the repository), atomically."""
    import io

    from PIL import Image

    from hatrade.io.atomic import write_bytes

    with Image.open(src) as im:
        im = im.convert("RGB")
        w = width[1] if im.width > 1.6 * im.height else width[0]
        if im.width > w:
            im = im.resize((w, round(im.height * w / im.width)), Image.LANCZOS)
        im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    write_bytes(dst, buf.getvalue())


def _write_readme(readme: Path, result) -> Path:
    import datetime as _dt

    from hatrade import __version__
    from hatrade.replicate.readme import readme_section, update_readme

    figdir = readme.parent / "docs" / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    shown = []
    for fid, title in README_FIGURES:
        src = result.out / "figures" / f"{fid}.png"
        if src.is_file():
            _small_png(src, figdir / f"{fid}.png")
            shown.append((title, f"docs/figures/{fid}.png"))
    section = readme_section(
        result.reproduction,
        figures=shown,
        run={
            "version": __version__,
            "date": _dt.date.today().isoformat(),
            "quick": result.quick,
            "seconds": result.seconds,
            "stages": [(s.name, s.seconds) for s in result.stages],
        },
    )
    return update_readme(readme, section)


def _print_summary(result) -> None:
    tab = Table(title="hatrade replicate", title_justify="left")
    tab.add_column("stage")
    tab.add_column("status")
    tab.add_column("seconds", justify="right")
    tab.add_column("computed", justify="right")
    tab.add_column("from cache", justify="right")
    for s in result.stages:
        style = _STATUS_STYLE.get(s.status, "")
        c = s.cache or {}
        tab.add_row(
            escape(s.title),
            f"[{style}]{s.status}[/{style}]",
            f"{s.seconds:.1f}",
            str(c.get("miss", 0)),
            str(c.get("hit", 0)),
        )
    tab.add_row("[bold]total[/bold]", "", f"[bold]{result.seconds:.1f}[/bold]", "", "")
    console.print(tab)
    rep = result.reproduction
    if len(rep):
        agree = int((rep["agrees"] == "yes").sum())
        judged = int(rep["agrees"].isin(["yes", "no"]).sum())
        console.print(
            f"Reproducing the paper: {agree} of {judged} published numbers agree "
            "within their tolerance (table in the report)."
        )
    console.print(f"Report: {escape(str(result.report))}")
    failed = [s.name for s in result.stages if s.status != "ok"]
    if failed:
        err_console.print(
            f"[red]Stages not ok: {', '.join(failed)} (errors in the report and "
            f"in OUT/<stage>/error.txt).[/red]"
        )
