"""``hatrade efficient``: the efficient allocation (Proposition 4) against the market's."""

from __future__ import annotations

import datetime as _dt
import enum
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ._common import (
    calibration_option,
    config_option,
    console,
    err_console,
    handle_errors,
    load_world_config,
    out_option,
    print_table,
    progress,
)
from .solve import CalibrationName

__all__ = ["register", "efficient_command", "EFFICIENT_FILES", "WeightsKind"]

log = logging.getLogger(__name__)

#: The files of an efficient-allocation folder.
EFFICIENT_FILES: tuple[str, ...] = ("efficient_trade.csv", "summary.json", "efficient_trade.png")

_KIND = "efficient"


class WeightsKind(str, enum.Enum):
    equal = "equal"
    matched = "matched"


def register(app: typer.Typer) -> None:
    """Add ``efficient`` to ``app``."""
    app.command("efficient")(efficient_command)


@handle_errors
def efficient_command(
    calibration: Optional[CalibrationName] = calibration_option(
        "A shipped calibration of the 19-country world (default: baseline, when --config "
        "is not given); the decentralized equilibrium is evaluated at its published prices."
    ),
    config: Optional[Path] = config_option(
        "A TOML file describing a world (as for hatrade solve); its decentralized "
        "equilibrium is solved first."
    ),
    weights: WeightsKind = typer.Option(
        WeightsKind.matched,
        "--weights",
        "-w",
        case_sensitive=False,
        help="Planner weights: 'matched' (each country's spending equals its decentralized "
        "spending: same resources, efficient use) or 'equal' (one per person).",
    ),
    out: Optional[Path] = out_option(
        "Output folder (default results/efficient-<name>-<weights>). A previous "
        "'hatrade efficient' folder there is replaced; a folder with other files is refused."
    ),
    elasticities: bool = typer.Option(
        True,
        "--elasticities/--no-elasticities",
        help="Compute the decentralized Proposition 1 elasticities (exact AD) for the "
        "side-by-side comparison (under a minute for 19 countries).",
    ),
) -> None:
    """Efficient allocation (Proposition 4) vs the decentralized equilibrium; write efficient_trade.csv, summary.json, efficient_trade.png."""
    from hatrade.analysis.efficient import efficient_report, solve_planner
    from hatrade.io.folders import prepare_output

    cfg = load_world_config(calibration, config)
    out = (
        Path(out) if out is not None else Path("results") / f"efficient-{cfg.name}-{weights.value}"
    )
    folder = prepare_output(out, _KIND)
    err_console.print(
        f"[bold]{cfg.name}[/bold]: {cfg.world.M} countries, planner weights '{weights.value}'."
    )

    with progress() as prog:
        eq, source = _decentralized(cfg, prog)
        task = prog.add_task("Planner's problem...", total=None)
        planner = solve_planner(cfg.world, cfg.household, weights.value, eq=eq, income=cfg.income)
        prog.finish(
            task,
            description=f"Planner solved: {planner.iterations} Newton iterations, "
            f"max resource error {planner.resource_error:.1e}",
        )
        task = prog.add_task(
            "Elasticities, gravity, welfare"
            + (" (decentralized elasticities by AD)..." if elasticities else "..."),
            total=None,
        )
        table, summary = efficient_report(planner, eq, decentralized_theta=elasticities)
        prog.finish(task, description="Elasticities, gravity and welfare done")
        summary = _summary(cfg, source, summary)
        _write_folder(folder, table, summary, cfg.name, weights.value)
        log.info("wrote %s (%s)", out, ", ".join(EFFICIENT_FILES))
    _print(summary, out)


def _decentralized(cfg, prog):
    """(the decentralized equilibrium, its source): households at the published prices
    (a shipped calibration) or the solved equilibrium (``--config``)."""
    from hatrade import evaluate, solve_equilibrium

    if cfg.calibration is not None:
        task = prog.add_task(
            "Decentralized equilibrium: households at the published "
            "prices (the first call compiles)...",
            total=None,
        )
        eq = evaluate(
            cfg.world,
            cfg.household,
            cfg.wages,
            R=cfg.R,
            beta=cfg.calibration["published_beta"],
            income=cfg.income,
        )
        source = "published prices (households solved, markets not re-cleared)"
    else:
        task = prog.add_task("Decentralized equilibrium: solving...", total=None)
        eq = solve_equilibrium(cfg.world, cfg.household, **cfg.solve_kwargs())
        source = f"solved ({eq.iterations} Newton iterations, max excess demand {eq.residual:.1e})"
    prog.finish(task, description=f"Decentralized equilibrium: {source}")
    return eq, source


def _summary(cfg, source: str, report: dict) -> dict:
    """summary.json: the run's header, ``report`` (of
    :func:`~hatrade.analysis.efficient.efficient_report`) and the world's parameters."""
    from hatrade import __version__
    from hatrade.io.atomic import jsonable

    return jsonable(
        {
            "kind": _KIND,
            "name": cfg.name,
            "hatrade_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "countries": list(cfg.world.countries),
            "decentralized_source": source,
            **report,
            "parameters": cfg.to_dict(),
        }
    )


def _write_folder(folder, table, summary: dict, name: str, weights: str) -> None:
    """Write the efficient-allocation folder (:data:`EFFICIENT_FILES`) in one swap."""
    from hatrade.io.atomic import write_json
    from hatrade.plots.efficient import save_efficient_trade

    with folder.replace() as tmp:
        table.to_csv(tmp / "efficient_trade.csv", index=False, na_rep="", float_format="%.17g")
        write_json(tmp / "summary.json", summary, indent=2)
        save_efficient_trade(
            table,
            tmp / "efficient_trade.png",
            title=f"Efficient ({weights} weights) vs. decentralized trade: {name}",
        )


def _print(summary: dict, out: Path) -> None:
    comp = summary["comparison"]
    head = Table(
        title=f"Efficient vs. decentralized: {summary['name']} ({summary['weights_kind']} weights)",
        show_header=False,
        title_justify="left",
    )
    head.add_column("quantity", style="bold")
    head.add_column("value")
    head.add_row(
        "pairs trading more / less (efficient)",
        f"{comp['pairs_trading_more_efficient']} / {comp['pairs_trading_less_efficient']}",
    )
    head.add_row("mean log(s_eff/s_dec), i != j", f"{comp['mean_log_ratio_offdiagonal']:.4f}")
    head.add_row("max resource error", f"{summary['planner']['max_relative_resource_error']:.1e}")
    for name, w in summary.get("welfare_prop4", {}).items():
        head.add_row(
            f"welfare, {name} (Prop. 4)",
            f"{w['gain_pct_first_order']:.3f}% of consumption (first order), "
            f"{w['gain_pct_exact']:.3f}% exact",
        )
    head.add_row("output", str(out))
    print_table(head)

    agg = comp.get("aggregate_elasticity", {})
    tab = Table(
        title="By country (elasticities: trade-weighted over partners)",
        title_justify="left",
        caption="imports: import share; eff: efficient, dec: decentralized; P4: "
        "-(1/sigma)u'(c)c; choice/ext: extensive margin; value/P1: trade in "
        "value (Proposition 1)",
        caption_justify="left",
    )
    for col in (
        "country",
        "imports eff",
        "imports dec",
        "eff P4",
        "eff choice",
        "dec ext",
        "eff value",
        "dec P1",
    ):
        tab.add_column(col, justify="left" if col == "country" else "right")
    for c, v in comp["import_share"].items():

        def g(key, c=c):
            x = agg.get(key, {}).get(c)
            return "" if x is None else f"{x:.3f}"

        tab.add_row(
            c,
            f"{v['efficient']:.4f}",
            f"{v['decentralized']:.4f}",
            g("theta_efficient_prop4"),
            g("theta_efficient_choice"),
            g("theta_decentralized_extensive"),
            g("theta_efficient_value"),
            g("theta_decentralized_prop1"),
        )
    print_table(tab)
    grav = comp.get("gravity")
    if grav:
        gt = Table(title="Gravity regression coefficients", title_justify="left")
        cols = list(grav)
        gt.add_column("coefficient")
        for c in cols:
            gt.add_column(c, justify="right")
        names = [k for k in grav["efficient"] if not k.startswith(("S_", "theta_m_"))]
        for k in names:
            gt.add_row(k, *[("" if grav[c].get(k) is None else f"{grav[c][k]:.3f}") for c in cols])
        print_table(gt)
    console.print(f"Wrote {escape(str(out))}")
