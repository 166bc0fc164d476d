"""``hatrade table1``: the paper's Table 1 (gravity regression on data and model)."""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from ._common import console, fail, handle_errors, print_table, progress
from .solve import CalibrationName
from .world import data_option, estimator_option, formula_option

__all__ = ["register", "table1_command", "TABLE1_FILE"]

log = logging.getLogger(__name__)

#: Name of the file written by ``hatrade table1``.
TABLE1_FILE = "table1.csv"


class Method(str, enum.Enum):
    fast = "fast"
    statsmodels = "statsmodels"


TABLE1_HELP = (
    "The paper's Table 1: trade barriers of the gravity regression in the data "
    "(moment), in the model (model_fit), and the trade-cost parameters "
    "d = exp(-x/4) (parameter)."
)


def register(app: typer.Typer) -> None:
    """Add ``table1`` to ``app``."""
    app.command("table1", help=TABLE1_HELP)(table1_command)


def _model_shares_from_solve(folder: Path):
    """Trade shares (19 x 19, COUNTRIES order) and calibration vector of a solve folder."""
    from hatrade.data import COUNTRIES
    from hatrade.io.results import load_summary, load_trade, shares_matrix

    summary = load_summary(folder)
    trade = load_trade(folder)
    have = list(dict.fromkeys(trade["importer"]))
    if sorted(have) != sorted(COUNTRIES):
        fail(
            f"{folder}: Table 1 needs a solve of the 19 Eaton-Kortum countries "
            f"({', '.join(COUNTRIES)}); this solve has {', '.join(have)}."
        )
    shares, _ = shares_matrix(trade, COUNTRIES)
    params = ((summary.get("parameters") or {}).get("calibration") or {}).get("vector")
    return shares, (None if params is None else np.asarray(params, float))


def _model_shares_from_calibration(name: str):
    """Trade shares at the published equilibrium prices of a shipped calibration."""
    from hatrade import evaluate
    from hatrade.core.worlds import ek_world, published_household
    from hatrade.data import load_calibration
    from hatrade.io.config import DEFAULT_R

    cal = load_calibration(name)
    with progress() as prog:
        task = prog.add_task(
            f"Solving households at the published {name} prices (19 countries)...", total=None
        )
        eq = evaluate(
            ek_world(name),
            published_household(name),
            wages=cal.wages.to_numpy(),
            R=DEFAULT_R,
            beta=cal.beta,
        )
        prog.finish(task, description=f"Households solved at the published {name} prices")
    return eq.trade_shares, np.asarray(cal.params, float)


@handle_errors
def table1_command(
    out: Path = typer.Option(
        Path("results/table1"),
        "--out",
        "-o",
        file_okay=False,
        help=f"Folder for {TABLE1_FILE} (created when needed). A {TABLE1_FILE} there that a "
        "previous 'hatrade table1' wrote is replaced; other files are left alone, and an "
        f"existing {TABLE1_FILE} that hatrade did not write is refused.",
    ),
    from_solve: Optional[Path] = typer.Option(
        None,
        "--from-solve",
        file_okay=False,
        help="A 19-country solve folder (hatrade solve): adds the model_fit column from its "
        "trade.csv and the parameter column from its calibration vector.",
    ),
    calibration: Optional[CalibrationName] = typer.Option(
        None,
        "--calibration",
        "-c",
        case_sensitive=False,
        help="A shipped calibration: adds model_fit from trade at its published equilibrium "
        "prices (households solved, prices not re-solved) and its parameters.",
    ),
    method: Method = typer.Option(
        Method.fast, "--method", help="Least squares: fast (numpy) or statsmodels."
    ),
    data: Optional[Path] = data_option("the gravity table of --formula on it"),
    formula: Optional[str] = formula_option(),
    estimator: str = estimator_option(),
) -> None:
    """Write and print Table 1 (see TABLE1_HELP)."""
    from hatrade.analysis.gravity import gravity_regression, model_trade_table, table1
    from hatrade.data import load_trade_data
    from hatrade.io.folders import prepare_output

    if data is not None or formula is not None:
        return _own_data_table(data, formula, estimator, out)

    if from_solve is not None and calibration is not None:
        fail("give either --from-solve or --calibration, not both.")
    out = Path(out)
    # a previous table1 folder (its manifest lists table1.csv) is updated in place; a
    # table1.csv that hatrade did not write is refused here, before any work
    folder = prepare_output(out, "table1", update=True)
    folder.check_paths(TABLE1_FILE)

    data_res = gravity_regression(load_trade_data(), method=method.value)
    model_res, params = None, None
    if from_solve is not None:
        shares, params = _model_shares_from_solve(from_solve)
    elif calibration is not None:
        shares, params = _model_shares_from_calibration(calibration.value)
    if from_solve is not None or calibration is not None:
        model_res = gravity_regression(model_trade_table(shares), method=method.value)
    tab = table1(data_res, model_res, params)

    path = out / TABLE1_FILE
    with folder.session():
        folder.write_text(TABLE1_FILE, tab.reset_index().to_csv(index=False, float_format="%.17g"))
    log.info("wrote %s", path)
    _print_table1(tab, model_res, from_solve, calibration, path)


def _print_table1(tab, model_res, from_solve, calibration, path) -> None:
    source = (
        "data"
        if model_res is None
        else f"data and model ({from_solve if from_solve is not None else calibration.value})"
    )
    t = Table(title=f"Table 1: trade barriers, {escape(str(source))}", title_justify="left")
    t.add_column("barrier")
    t.add_column("moment", justify="right")
    if "model_fit" in tab:
        t.add_column("model fit", justify="right")
    if "parameter" in tab:
        t.add_column("parameter d = exp(-x/4)", justify="right")
    for _, row in tab.iterrows():
        cells = [row["barrier"], f"{row['moment']:.2f}"]
        if "model_fit" in tab:
            cells.append(f"{row['model_fit']:.2f}")
        if "parameter" in tab:
            cells.append(f"{row['parameter']:.2f}")
        t.add_row(*cells)
    print_table(t)
    console.print(f"Wrote {escape(str(path))}")


def _own_data_table(data, formula, estimator, out) -> None:
    """``table1 --data FILE --formula ...``: the gravity coefficients of any specification."""
    from hatrade.io.folders import prepare_output

    from .data import trade_data_options
    from .world import gravity_table

    if data is None or formula is None:
        fail("--data and --formula go together: give both.")
    folder = prepare_output(Path(out), "table1", update=True)
    folder.check_paths(TABLE1_FILE)
    tab = gravity_table(
        trade_data_options(data, None, "exporter", "importer", "trade", None), formula, estimator
    )
    with folder.session():
        folder.write_text(TABLE1_FILE, tab.to_csv(index=False, float_format="%.17g"))
    t = Table(title=f"Gravity ({estimator}): {escape(formula)} on {escape(str(data))}")
    for col in tab.columns:
        t.add_column(col, justify="left" if col == "regressor" else "right")
    for row in tab.itertuples(index=False):
        t.add_row(*(str(v) if isinstance(v, str) else f"{v:.4f}" for v in row))
    print_table(t)
